"""Reading audio files, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from trainables.errors import DataError
from trainables.data.features import check_audio


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Return ``(wave (samples, channels) float32, sample_rate)``; ``DataError`` if the file
    cannot be decoded or holds no usable signal."""
    try:
        wave, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, OSError) as error:
        raise DataError(f"{path}: cannot read audio ({error}); replace the file or set "
                        "data.on_bad_file: skip") from None
    try:
        check_audio(wave, what=str(path))
    except DataError as error:
        raise DataError(f"{error}; replace the file or set data.on_bad_file: skip") from None
    return wave, sr
