"""The paper's log-Mel features (DESIGN.md, "The method") and per-band standardisation."""

from __future__ import annotations

from functools import lru_cache

import librosa
import numpy as np

from trainables.data.settings import FeatureSettings
from trainables.errors import DataError


@lru_cache(maxsize=8)
def _mel_basis(settings: FeatureSettings) -> np.ndarray:
    return librosa.filters.mel(sr=settings.sample_rate, n_fft=settings.n_fft,
                               n_mels=settings.n_mels, fmin=settings.fmin, fmax=settings.fmax)


def to_mono(wave: np.ndarray) -> np.ndarray:
    """Mix a 1-D or 2-D signal down to mono. For 2-D input the shorter axis is the channel axis,
    so both soundfile's (samples, channels) and librosa's (channels, samples) work."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 1:
        return wave
    if wave.ndim == 2:
        return wave.mean(axis=int(np.argmin(wave.shape)))
    raise DataError(f"audio must be 1-D or 2-D (channels), got shape {wave.shape}")


def check_audio(wave: np.ndarray, what: str = "audio") -> None:
    """Raise ``DataError`` for audio no feature can be computed from."""
    if wave.size == 0:
        raise DataError(f"{what} is empty (zero samples)")
    if not np.all(np.isfinite(wave)):
        raise DataError(f"{what} contains NaN or infinite samples")
    if not np.any(wave):
        raise DataError(f"{what} is silent (every sample is zero)")


def check_length(wave: np.ndarray, sr: int, settings: FeatureSettings,
                 what: str = "audio") -> None:
    """Raise ``DataError`` for a clip shorter than ``settings.min_seconds``, saying how often it
    would have been repeated to fill the input."""
    seconds = len(wave) / sr
    if seconds < settings.min_seconds:
        repeats = -(-settings.samples * sr // (settings.sample_rate * max(len(wave), 1)))
        raise DataError(f"{what} is {seconds:.3g} s long, shorter than "
                        f"data.features.min_seconds ({settings.min_seconds:g} s): it would be "
                        f"repeated {repeats} times to fill {settings.frames} frames; lower the "
                        "setting to accept it")


def log_mel(wave: np.ndarray, sr: int, settings: FeatureSettings = FeatureSettings()) -> np.ndarray:
    """Log-Mel spectrogram ``(frames, n_mels)`` = ``(373, 64)`` by default, float32, before
    standardisation.

    Resamples to 16 kHz and mixes down to mono. The waveform is tiled (repeated) up to the
    samples that give ``frames`` frames and cut there, so short clips repeat and long ones are
    cut, as in the paper; cutting the waveform first gives the same frames as cutting the
    spectrogram and spares the work on the rest of a long clip.
    """
    wave = to_mono(wave)
    check_audio(wave)
    if sr != settings.sample_rate:
        wave = librosa.resample(wave, orig_sr=sr, target_sr=settings.sample_rate)
    repeats = -(-settings.samples // wave.size)
    wave = np.tile(wave, repeats)[: settings.samples]
    spectrum = np.abs(librosa.stft(wave, n_fft=settings.n_fft, hop_length=settings.hop,
                                   window="hamming", center=False))
    mel = _mel_basis(settings) @ spectrum
    return np.log(mel + settings.log_offset).T.astype(np.float32)


def band_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation over every frame of ``features`` ``(N, T, F)``."""
    flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)
