"""Listening to an attack: WAV pairs that differ only by the perturbation."""

from __future__ import annotations

import json

import numpy as np
import soundfile
import torch

from trainables.trial_folder import SNR_FILE
from trainables.audio_export import (adversarial_examples, snr_db, to_waveform,
                                     write_examples)
from trainables.data.features import log_mel
from trainables.data.settings import FeatureSettings

SETTINGS = FeatureSettings(frames=40)


def tone(seconds: float = 0.7) -> np.ndarray:
    t = np.arange(int(seconds * SETTINGS.sample_rate)) / SETTINGS.sample_rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 660 * t)) \
        .astype(np.float32)


def test_the_inversion_gives_back_a_waveform_with_about_the_same_log_mel():
    features = log_mel(tone(), SETTINGS.sample_rate, SETTINGS)
    wave = to_waveform(features, SETTINGS, iterations=32)
    assert wave.shape == (SETTINGS.samples,) and wave.dtype == np.float32
    again = log_mel(wave, SETTINGS.sample_rate, SETTINGS)
    # Griffin-Lim's phase is an estimate, so the round trip is close, not exact (0.91 here);
    # unrelated audio scores near 0.
    assert np.corrcoef(features.ravel(), again.ravel())[0, 1] > 0.85
    np.testing.assert_array_equal(wave, to_waveform(features, SETTINGS, iterations=32))


class Attacker(torch.nn.Module):
    """A fixed, small perturbation in (0, 1) that depends on the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x - 4.0)


def test_wav_pairs_are_written_readable_at_the_corpus_rate_with_their_snr(tmp_path):
    features = np.stack([log_mel(tone(s), SETTINGS.sample_rate, SETTINGS) for s in (0.6, 0.9)])
    mean, std = features.mean(axis=(0, 1)), features.std(axis=(0, 1)) + 1e-3
    x = torch.from_numpy((features - mean) / std)[:, None].float()
    examples = adversarial_examples(Attacker(), x, ["a", "b"], mean, std, SETTINGS, 16)
    write_examples(examples, tmp_path, SETTINGS.sample_rate)
    for name in ("a", "b"):
        clean, rate = soundfile.read(tmp_path / f"{name}_clean.wav")
        adversarial, rate_adv = soundfile.read(tmp_path / f"{name}_adversarial.wav")
        assert rate == rate_adv == SETTINGS.sample_rate
        assert clean.shape == adversarial.shape == (SETTINGS.samples,)
        assert np.abs(clean).max() <= 0.91 and not np.array_equal(clean, adversarial)
    rows = json.loads((tmp_path / SNR_FILE).read_text())
    assert [r["utterance"] for r in rows] == ["a", "b"]
    eta = torch.sigmoid(x - 4.0)
    assert rows[0]["snr_db_features"] == round(snr_db(x[0].numpy(), eta[0].numpy()), 3)
    assert all(np.isfinite(r["snr_db_waveform"]) for r in rows)


class Zero(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def test_a_zero_perturbation_gives_identical_waveforms():
    """The pair goes through the same inversion from the same phase: without an attack the two
    files are the same, so any difference a listener hears is the attack's."""
    features = log_mel(tone(), SETTINGS.sample_rate, SETTINGS)[None]
    x = torch.from_numpy(features)[:, None]
    example = adversarial_examples(Zero(), x, ["z"], np.zeros(64), np.ones(64), SETTINGS, 8)[0]
    np.testing.assert_array_equal(example.clean, example.adversarial)


def test_files_of_one_name_in_two_folders_get_examples_of_their_own():
    from orchestrator.run import example_names

    paths = ["/c/a/PR_f_01_rab00a.wav", "/c/b/PR_f_01_rab00a.wav", "/c/PR_f_01_rab00a~2.wav",
             "/c/m.flac", "/c/a/PR_f_01_rab00a.flac"]
    assert example_names(paths) == ["PR_f_01_rab00a", "PR_f_01_rab00a~2", "PR_f_01_rab00a~2~2",
                                    "m", "PR_f_01_rab00a~3"]
