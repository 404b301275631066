import numpy as np
import pytest

from trainables.errors import DataError
from trainables.data.features import band_statistics, log_mel
from trainables.data.settings import FeatureSettings


def _slaney_mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-style Mel filters written from the formulas, independently of librosa."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0

    def hz_to_mel(f):
        f = np.asarray(f, dtype=float)
        return np.where(f < min_log_hz, f / f_sp, min_log_mel + np.log(np.maximum(f, 1e-9)
                                                                       / min_log_hz) / logstep)

    def mel_to_hz(m):
        return np.where(m < min_log_mel, m * f_sp, min_log_hz * np.exp(logstep * (m - min_log_mel)))

    hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    bins = np.linspace(0, sr / 2, n_fft // 2 + 1)
    filters = np.zeros((n_mels, bins.size))
    for m in range(n_mels):
        lower = (bins - hz[m]) / (hz[m + 1] - hz[m])
        upper = (hz[m + 2] - bins) / (hz[m + 2] - hz[m + 1])
        filters[m] = np.maximum(0, np.minimum(lower, upper)) * 2.0 / (hz[m + 2] - hz[m])
    return filters


def reference_log_mel(wave: np.ndarray) -> np.ndarray:
    """The paper's recipe with numpy only: framing, periodic Hamming, |rFFT|, Mel, log."""
    window = np.hamming(513)[:-1]
    frames = np.stack([wave[i * 256:i * 256 + 512] * window for i in range(373)])
    magnitude = np.abs(np.fft.rfft(frames, axis=1))
    mel = magnitude @ _slaney_mel_filters(16_000, 512, 64, 20, 8_000).T
    return np.log(mel + 1e-8)


def test_log_mel_matches_an_independent_computation():
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(95_744)).astype(np.float32)
    ours = log_mel(wave, 16_000)
    assert ours.shape == (373, 64) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference_log_mel(wave.astype(np.float64)), atol=2e-3)


def test_short_clips_are_tiled_and_long_clips_cut():
    rng = np.random.default_rng(1)
    clip = (0.1 * rng.standard_normal(40_000)).astype(np.float32)
    np.testing.assert_allclose(log_mel(clip, 16_000),
                               reference_log_mel(np.tile(clip, 3)[:95_744]), atol=2e-3)
    long = (0.1 * rng.standard_normal(200_000)).astype(np.float32)
    np.testing.assert_allclose(log_mel(long, 16_000), log_mel(long[:95_744], 16_000))
    assert log_mel(clip[:300], 16_000).shape == (373, 64)


def test_other_rates_are_resampled_and_stereo_mixed_down():
    t = np.arange(int(6 * 44_100)) / 44_100
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    at_44k = log_mel(tone, 44_100)
    t16 = np.arange(6 * 16_000) / 16_000
    at_16k = log_mel((0.3 * np.sin(2 * np.pi * 440 * t16)).astype(np.float32), 16_000)
    assert at_44k.shape == (373, 64)
    peak = int(np.argmax(at_16k.mean(axis=0)))
    assert int(np.argmax(at_44k.mean(axis=0))) == peak
    np.testing.assert_allclose(log_mel(np.stack([tone, tone], axis=1), 44_100), at_44k, atol=1e-4)


@pytest.mark.parametrize("wave, message", [
    (np.zeros(0, np.float32), "empty"),
    (np.full(1000, np.nan, np.float32), "NaN"),
    (np.zeros(1000, np.float32), "silent"),
])
def test_unusable_audio_is_an_error(wave, message):
    with pytest.raises(DataError, match=message):
        log_mel(wave, 16_000)


def test_frames_setting_and_band_statistics():
    rng = np.random.default_rng(2)
    features = log_mel(rng.standard_normal(20_000).astype(np.float32), 16_000,
                       FeatureSettings(frames=50))
    assert features.shape == (50, 64)
    mean, std = band_statistics(np.stack([features, features + 2]))
    np.testing.assert_allclose(mean, features.mean(axis=0) + 1, atol=1e-5)
    assert std.shape == (64,) and np.all(std > 0)
