"""A defence's training batches: class-balanced draws and the training noise
(``defence_training.noise_rms``), on tensors small enough to count by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables.defence_training import DefenceTrainer
from trainables.errors import ConfigError
from trainables.settings import DefenceTrainingSettings


def trainer(**settings) -> DefenceTrainer:
    x = torch.linspace(-2, 2, 40 * 6).reshape(40, 1, 2, 3)
    y = torch.arange(40) % 4
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.LogSoftmax(dim=1))
    return DefenceTrainer(model, (x, y), (x, y),
                          DefenceTrainingSettings(batch_size=4000, **settings), seed=3)


def test_without_noise_a_batch_holds_the_training_inputs_themselves():
    plain = trainer()
    x, _ = plain._batch()
    rows = {tuple(r.flatten().tolist()) for r in plain.x}
    assert all(tuple(r.flatten().tolist()) in rows for r in x)


@pytest.mark.parametrize("rms, probability", [(0.3, 0.5), (1.0, 0.2)])
def test_the_noise_is_non_negative_within_its_scale_on_the_share_of_inputs_asked(rms,
                                                                                 probability):
    noisy = trainer(noise_rms=rms, noise_probability=probability)
    generator_state = noisy.generator.get_state()
    x, y = noisy._batch()
    noisy.generator.set_state(generator_state)  # the same draw of inputs, without the noise
    index = torch.multinomial(noisy.weights, 4000, replacement=True, generator=noisy.generator)
    noise = x - noisy.x[index]
    assert (noise >= -1e-6).all() and torch.equal(y, noisy.y[index])
    touched = (noise.flatten(1) > 0).any(dim=1).float()
    assert touched.mean().item() == pytest.approx(probability, abs=0.03)
    # s * |N(0, 1)| with s uniform in [0, rms]: mean s * sqrt(2 / pi), s's mean rms / 2
    per_input = noise.flatten(1).mean(dim=1)[touched.bool()]
    assert per_input.mean().item() == pytest.approx(rms / 2 * (2 / torch.pi) ** 0.5, rel=0.1)


def test_the_noise_is_drawn_from_the_trainers_seed():
    first, second = trainer(noise_rms=0.5)._batch()[0], trainer(noise_rms=0.5)._batch()[0]
    assert torch.equal(first, second)


@pytest.mark.parametrize("key, value", [("noise_rms", -0.1), ("noise_probability", 1.5)])
def test_bad_noise_settings_name_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        DefenceTrainingSettings(**{key: value})
