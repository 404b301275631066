"""Listening to an attack: test utterances and their adversarial versions as WAV files.

Our inputs are log-Mel spectrograms, so a waveform must be estimated from them: the per-band
standardisation is undone, the Mel magnitudes are mapped back to a linear spectrogram
(librosa's non-negative least squares) and a phase is estimated by Griffin-Lim. The clean and
the adversarial spectrogram go through the same inversion, from the same initial phase, so the
pair differs only by the attack; the inversion, not the attack, limits how natural both sound.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile
import torch
from torch import nn

from trainables.data.settings import FeatureSettings
from trainables.evaluation import perturbation_of
from trainables.trial_folder import SNR_FILE

# In a finished attack trial's folder: the WAV pairs and their SNRs (copied into the results).


@dataclass(frozen=True)
class Example:
    """One exported pair: its name, its clean and adversarial waveforms and the perturbation's
    SNR in the feature domain (standardised log-Mel, as ``evaluation`` reports it) and in the
    waveform domain (the adversarial waveform minus the clean one)."""

    name: str
    clean: np.ndarray
    adversarial: np.ndarray
    snr_db_features: float
    snr_db_waveform: float

    def scaled(self) -> tuple[np.ndarray, np.ndarray]:
        """(clean, adversarial) with one gain for both, peak 0.9: no clipping, and the
        difference between the two kept as it is."""
        peak = max(float(np.abs(self.clean).max()), float(np.abs(self.adversarial).max()))
        gain = 0.9 / peak if peak > 0 else 1.0
        return self.clean * gain, self.adversarial * gain


def snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """``10 log10(sum signal^2 / sum noise^2)``."""
    return float(10 * np.log10(np.sum(np.square(signal, dtype=np.float64))
                               / max(np.sum(np.square(noise, dtype=np.float64)), 1e-30)))


def to_waveform(log_mel: np.ndarray, features: FeatureSettings, iterations: int,
                seed: int = 0) -> np.ndarray:
    """A waveform whose log-Mel spectrogram approximates ``log_mel`` ``(frames, n_mels)`` (as
    ``trainables.data.features.log_mel`` computes it), by Griffin-Lim from a seeded phase."""
    mel = np.maximum(np.exp(log_mel.astype(np.float64)) - features.log_offset, 0.0).T
    magnitude = librosa.feature.inverse.mel_to_stft(
        mel, sr=features.sample_rate, n_fft=features.n_fft, power=1.0, fmin=features.fmin,
        fmax=features.fmax)
    wave = librosa.griffinlim(magnitude, n_iter=iterations, hop_length=features.hop,
                              n_fft=features.n_fft, window="hamming", center=False,
                              length=features.samples, random_state=seed)
    return wave.astype(np.float32)


@torch.no_grad()
def adversarial_examples(attacker: nn.Module, x: torch.Tensor, names: list[str],
                         mean: np.ndarray, std: np.ndarray, features: FeatureSettings,
                         iterations: int, amp: bool = False,
                         labels: torch.Tensor | None = None) -> list[Example]:
    """The clean and adversarial waveforms of the standardised inputs ``x`` ``(n, 1, T, F)``.
    ``mean``/``std``: the per-band statistics the inputs were standardised with; ``labels``:
    the inputs' classes, for a per-example attack (``evaluation.perturbation_of``)."""
    was_training = attacker.training
    attacker.eval()
    try:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            eta = perturbation_of(attacker, x, labels)
    finally:
        attacker.train(was_training)
    clean = x.float().cpu().numpy()[:, 0]
    perturbation = eta.cpu().numpy()[:, 0]
    examples = []
    for i, name in enumerate(names):
        waves = [to_waveform(z * std + mean, features, iterations, seed=i)
                 for z in (clean[i], clean[i] + perturbation[i])]
        examples.append(Example(name, *waves, snr_db(clean[i], perturbation[i]),
                                snr_db(waves[0], waves[1] - waves[0])))
    return examples


def write_examples(examples: list[Example], folder: Path, sample_rate: int) -> None:
    """``<name>_clean.wav`` and ``<name>_adversarial.wav`` for each example (16-bit PCM) and
    their SNRs in ``snr.json``, into a new ``folder`` (publish it whole: see
    ``tune_io.publish``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for example in examples:
        for kind, wave in zip(("clean", "adversarial"), example.scaled()):
            soundfile.write(str(folder / f"{example.name}_{kind}.wav"), wave, sample_rate,
                            format="WAV", subtype="PCM_16")
    rows = [{"utterance": e.name, "snr_db_features": round(e.snr_db_features, 3),
             "snr_db_waveform": round(e.snr_db_waveform, 3)} for e in examples]
    (folder / SNR_FILE).write_text(json.dumps(rows, indent=2) + "\n")


def log_examples(writer, examples: list[Example], step: int, sample_rate: int) -> None:
    """Each example's clean and adversarial waveform as TensorBoard audio (``writer``: a
    ``SummaryWriter``), under ``audio/<utterance>/clean`` and ``.../adversarial``."""
    for example in examples:
        for kind, wave in zip(("clean", "adversarial"), example.scaled()):
            writer.add_audio(f"audio/{example.name}/{kind}", torch.from_numpy(wave), step,
                             sample_rate=sample_rate)
