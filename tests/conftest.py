"""Shared fixtures: a private cache, a tiny synthetic corpus, helpers that write audio files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from trainables.synthetic import SyntheticSpec, ensure_corpus

TINY_SPEC = SyntheticSpec(speakers=6, utterances_per_emotion=2, min_seconds=0.6, max_seconds=1.2)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Every test, and every fixture of any scope, caches under this session's temporary folder,
    never in the user's home (a stale cache there would hide changes to the code)."""
    previous = os.environ.get("SER_CACHE_DIR")
    os.environ["SER_CACHE_DIR"] = str(tmp_path_factory.getbasetemp() / "cache")
    yield
    if previous is None:
        os.environ.pop("SER_CACHE_DIR", None)
    else:
        os.environ["SER_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """6 speakers x 7 emotions x 2 utterances of about one second, DEMoS names."""
    return ensure_corpus(tmp_path_factory.mktemp("corpus"), TINY_SPEC)


def write_wav(path: Path, seconds: float = 0.5, sr: int = 16_000, channels: int = 1,
              seed: int = 0) -> Path:
    """A short noise-and-tone WAV file."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
    if channels > 1:
        wave = np.stack([wave] * channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), wave.astype(np.float32), sr)
    return path


def demos_folder(root: Path, speakers: int = 6, per_class: int = 1) -> Path:
    """A DEMoS-named folder of tiny WAVs: alternating genders, every class per speaker."""
    codes = ["rab", "dis", "pau", "col", "gio", "tri", "sor"]
    for s in range(speakers):
        gender = "f" if s % 2 == 0 else "m"
        for c, code in enumerate(codes):
            for i in range(per_class):
                write_wav(root / f"PR_{gender}_{s + 1:02d}_{code}{i:02d}a.wav",
                          seed=s * 100 + c * 10 + i)
    return root


def demos_with_neutral(root: Path) -> list[Path]:
    """A DEMoS-named tree and its neutral recordings as DEMoS ships them (a NEU folder, no
    ``PR_``/``NP_`` prefix) and as a prefixed copy might name them; returns the neutral files."""
    demos_folder(root)
    return [write_wav(root / "NEU" / "f_01_neu01a.wav"),
            write_wav(root / "NEU" / "m_02_neu02b.wav"), write_wav(root / "PR_f_03_neu03a.wav")]
