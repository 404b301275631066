"""The data side's settings: how the synthetic corpus is made, how speakers are split, and how
audio becomes features. Plain dataclasses that import nothing heavy, so that the driver's config
loads (and rejects a bad key) in a fraction of a second."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from trainables.errors import ConfigError
from trainables.validation import positive


@dataclass(frozen=True)
class FeatureSettings:
    """The recipe of the paper: 16 kHz, Hamming 512 / hop 256, 64 Mel bands 20-8,000 Hz,
    ``log(x + 1e-8)``, 373 frames (95,744 samples). ``frames`` may be lowered for smoke runs.
    Clips shorter than ``min_seconds`` are refused (or skipped), not repeated."""

    sample_rate: int = 16_000
    n_fft: int = 512
    hop: int = 256
    n_mels: int = 64
    fmin: float = 20.0
    fmax: float = 8_000.0
    frames: int = 373
    log_offset: float = 1e-8
    # A shorter clip is a bad file (``data.on_bad_file``), not repeated to fill ``frames``: a
    # 0.01 s clip would be tiled 600 times into a buzz. 0 accepts any length.
    min_seconds: float = 0.25

    def __post_init__(self) -> None:
        positive("frames", self.frames)
        positive("min_seconds", self.min_seconds, allow_zero=True)

    @property
    def samples(self) -> int:
        """Samples that give exactly ``frames`` frames without centring."""
        return self.n_fft + (self.frames - 1) * self.hop

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SplitSpec:
    """How speakers are divided into train/dev/test.

    ``speakers_per_gender`` (e.g. ``{"f": [9, 7, 7], "m": [18, 18, 9]}``, the DEMoS split of the
    paper's authors' later work) takes precedence over ``fractions``; ``file`` (a JSON file
    ``{"train": [speakers], "dev": [...], "test": [...]}``, as every run writes) over both.
    """

    fractions: tuple[float, float, float] = (0.4, 0.35, 0.25)
    speakers_per_gender: dict[str, tuple[int, int, int]] | None = None
    file: str | None = None
    seed: int = 0
    # Redraws tried when a split lacks a class; deterministic from the seed.
    max_attempts: int = field(default=200, repr=False)

    def __post_init__(self) -> None:
        positive("seed", self.seed, allow_zero=True)
        if len(self.fractions) != 3 or min(self.fractions) <= 0:
            raise ConfigError("fractions: three positive numbers (train, dev, test)")


@dataclass(frozen=True)
class SyntheticSpec:
    """Size and difficulty of the generated corpus. Speakers alternate female and male."""

    speakers: int = 24
    utterances_per_emotion: int = 6  # per speaker
    min_seconds: float = 2.0
    max_seconds: float = 7.0
    variability: float = 1.0  # scales every per-utterance deviation: higher is harder
    seed: int = 0
    sample_rate: int = 16_000

    def __post_init__(self) -> None:
        positive("speakers", self.speakers)
        if self.speakers < 3:
            raise ConfigError("speakers: at least 3 (one per split)")
        positive("utterances_per_emotion", self.utterances_per_emotion)
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ConfigError("min_seconds/max_seconds: need 0 < min_seconds <= max_seconds")

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]
