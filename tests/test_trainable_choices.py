"""The choices a trainable makes for its trial, tested on the objects it builds (without Ray; a
Tune trial costs tens of seconds here): the split a defence is selected on.

The splits differ from each other on purpose, so that taking the wrong one changes a number.
"""

from __future__ import annotations

import pytest
import torch

from trainables.device import Runtime
from trainables.metrics import uar
from trainables.evaluation import predict
from trainables.models import build
from trainables.settings import DefenceTrainingSettings
from trainables.tune_defence import build_defence_trainer

CPU = Runtime(device=torch.device("cpu"), amp=False, channels_last=False)
CLASSES = 3


def separable(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs whose class shows as a brighter quarter of the spectrogram, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    x = torch.randn(n, 1, 16, 16, generator=generator)
    for c in range(CLASSES):
        x[y == c, :, 4 * c: 4 * c + 4, :] += 1.5
    return x, y


def test_a_defence_is_selected_on_the_dev_split_never_on_test():
    """Test holds the dev inputs with every label moved to the next class: the better a model
    is on dev, the worse on test. What the trainer scores and keeps must be dev's UAR."""
    train, dev = separable(48, 1), separable(24, 2)
    splits = {"train": train, "dev": dev, "test": (dev[0], (dev[1] + 1) % CLASSES)}
    torch.manual_seed(0)
    model = build("cnn4", num_classes=CLASSES, width=0.0625)
    trainer = build_defence_trainer(model, splits,
                                    DefenceTrainingSettings(iterations=20, batch_size=16,
                                                            lr=3e-3, eval_every=4), 0, CPU)
    seen: list[tuple[float, float, float]] = []  # (what the trainer scored, dev UAR, test UAR)

    def score(metrics: dict, current) -> None:
        current.model.eval()  # as the trainer scores it: batch norm on its running statistics
        scores = [uar(y.numpy(), predict(current.model, x)) for x, y in (dev, splits["test"])]
        current.model.train()
        seen.append((metrics["dev_uar"], *scores))

    kept = trainer.run(score)
    assert len(seen) == 5
    assert all(on_dev - on_test > 0.5 for _, on_dev, on_test in seen)  # it learnt the classes
    for scored, on_dev, _ in seen:
        assert scored == pytest.approx(on_dev)
    best = max(on_dev for _, on_dev, _ in seen)
    assert trainer.best_uar == pytest.approx(best)
    assert uar(dev[1].numpy(), predict(kept, dev[0])) == pytest.approx(best)
