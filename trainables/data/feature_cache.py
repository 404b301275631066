"""Features computed once per (corpus files, split, feature settings), kept as one Arrow file.

The cache is an uncompressed Arrow IPC file (Arrow's on-disk format, which pyarrow memory-maps):
a DEMoS-size cache (~0.9 GB) loads in well under the 2 s goal, where Parquet would decode every
value. Its name is a hash of every input, so a changed or added audio file, another split or
other settings give another file, and nothing stale is ever read.
"""

from __future__ import annotations

import logging
import hashlib
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from trainables.checksums import damage, verify, write_verified
from trainables.data.audio_io import read_audio
from trainables.errors import DataError
from trainables.data.features import band_statistics, check_length, log_mel
from trainables.data.settings import FeatureSettings
from trainables.data.splits import missing_classes, speaker_lists

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def cache_key(df: pd.DataFrame, settings: FeatureSettings, on_bad_file: str) -> str:
    """A hash of the files (path, size, modification time), labels (the emotion's name and its
    index: classes renamed in a manifest keep their indices), split and settings."""
    digest = hashlib.sha256()
    digest.update(json.dumps([FORMAT_VERSION, settings.as_dict(), on_bad_file]).encode())
    for path, emotion, label, split in zip(df["path"], df["emotion"], df["label"], df["split"]):
        try:
            stat = os.stat(path)
            identity = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            identity = (-1, -1)  # a missing file is reported when features are computed
        digest.update(f"{path}\0{identity}\0{emotion}\0{label}\0{split}\n".encode())
    return digest.hexdigest()[:20]


def _single_threaded() -> None:
    """Worker initialiser: one BLAS thread per process, or the processes fight over the cores."""
    threadpool_limits(1)


def _extract(args: tuple[str, FeatureSettings]) -> np.ndarray | str:
    """Worker: features of one file, or the error message."""
    path, settings = args
    try:
        wave, sr = read_audio(path)
        try:
            check_length(wave, sr, settings, what=str(path))
        except DataError as error:
            raise DataError(f"{error}, or set data.on_bad_file: skip") from None
        return log_mel(wave, sr, settings)
    except DataError as error:
        return str(error)


def _compute(paths: list[str], settings: FeatureSettings, workers: int,
             progress: bool) -> list[np.ndarray | str]:
    jobs = [(p, settings) for p in paths]
    bar = dict(total=len(jobs), desc="log-Mel features", unit="file", disable=not progress,
               file=sys.stderr)
    if workers <= 1 or len(jobs) < 64:
        with threadpool_limits(1):
            return [_extract(job) for job in tqdm(jobs, **bar)]
    with ProcessPoolExecutor(max_workers=workers, initializer=_single_threaded) as pool:
        return list(tqdm(pool.map(_extract, jobs, chunksize=16), **bar))


def write_feature_file(path: str | Path, columns: dict[str, list], features: np.ndarray,
                       metadata: dict) -> Path:
    """Write a feature cache atomically: one row per utterance with ``columns`` and its
    ``features`` (``(n, T, F)`` float32, flattened per row), ``metadata`` in the schema."""
    values = pa.array(features.reshape(len(features), -1).ravel(), type=pa.float32())
    table = pa.table({**{c: pa.array(v) for c, v in columns.items()},
                      "features": pa.FixedSizeListArray.from_arrays(values, features[0].size)})
    table = table.replace_schema_metadata({"ser": json.dumps(metadata)})

    def write(tmp: Path) -> None:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)

    return write_verified(path, write)


def build_feature_cache(df: pd.DataFrame, settings: FeatureSettings, cache_dir: str | Path, *,
                        on_bad_file: str = "error", workers: int | None = None,
                        progress: bool = True) -> Path:
    """Compute (or find) the feature cache of the corpus table ``df`` (``scan_corpus``'s output).

    Returns the cache path. Computation runs in parallel over ``workers`` processes (default:
    every core). Unusable files raise ``DataError`` naming them, or with ``on_bad_file="skip"``
    are left out and listed in the cache's ``skipped`` metadata. The per-band mean and standard
    deviation of the training split are stored beside the features.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"features-{cache_key(df, settings, on_bad_file)}.arrow"
    if path.exists():
        reason = damage(path)
        if reason is None:
            return path
        log.warning(f"feature cache {path} cannot be trusted ({reason}): computing it again")

    results = _compute(df["path"].tolist(), settings, workers or os.cpu_count() or 1, progress)
    bad = [(p, r) for p, r in zip(df["path"], results) if isinstance(r, str)]
    if bad and on_bad_file != "skip":
        raise DataError(bad[0][1] if len(bad) == 1 else
                        f"{len(bad)} unusable audio files, first: {bad[0][1]}")
    keep = np.array([not isinstance(r, str) for r in results])
    df = df[keep].reset_index(drop=True)
    skipped = list(df.attrs.get("skipped", [])) + bad
    _check_every_class_in_every_split(df)

    features = np.stack([r for r in results if not isinstance(r, str)])
    mean, std = band_statistics(features[df["split"].to_numpy() == "train"])
    metadata = {
        "settings": settings.as_dict(), "shape": list(features.shape[1:]),
        "classes": list(df.attrs.get("classes", [])), "mean": mean.tolist(),
        "std": std.tolist(), "skipped": skipped, "split_speakers": speaker_lists(df),
    }
    return write_feature_file(path, {c: df[c].tolist() for c in df.columns}, features, metadata)


def _check_every_class_in_every_split(df: pd.DataFrame) -> None:
    classes = list(df.attrs.get("classes") or ())
    absent = [c for c in classes if c not in set(df["emotion"])]
    if absent:
        # The defences would be len(classes)-way classifiers with empty classes, and UAR an
        # average over fewer classes than Table 1 says: not comparable with any other run.
        raise DataError(f"the corpus has no usable utterance of {', '.join(absent)}; every one "
                        f"of its classes ({', '.join(classes)}) is needed")
    missing = missing_classes(df, tuple(classes) or None)
    if missing:
        split, cls = missing[0]
        raise DataError(f"the {split} split has no utterance of class {cls!r} after leaving "
                        "out bad files: fix the files or change the split")


@dataclass
class FeatureSet:
    """A whole feature cache in memory. ``features`` is ``(N, T, F)`` log-Mel before
    standardisation; ``mean``/``std`` are the training split's per-band statistics."""

    features: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    table: pd.DataFrame  # path, speaker, gender, emotion, label, split
    classes: list[str]
    mean: np.ndarray
    std: np.ndarray
    metadata: dict

    def standardised(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(x (n, 1, T, F) float32 standardised, y (n,) int64)`` of one split."""
        rows = self.split == split
        x = (self.features[rows] - self.mean) / self.std
        return x[:, None].astype(np.float32), self.labels[rows].astype(np.int64)


def load_metadata(path: str | Path) -> dict:
    """The cache's metadata (settings, classes, statistics, split, skipped files, ``rows``)
    without reading the features; ``DamagedFile`` if the file is not what was written."""
    verify(path)
    try:
        with pa.memory_map(str(path)) as source:
            reader = pa.ipc.open_file(source)
            metadata = json.loads(reader.schema.metadata[b"ser"])
            metadata["rows"] = sum(reader.get_batch(i).num_rows
                                   for i in range(reader.num_record_batches))
    except (OSError, pa.ArrowInvalid, KeyError) as error:
        raise DataError(f"feature cache {path} cannot be read ({error}); delete it to "
                        "rebuild") from None
    return metadata


def load_features(path: str | Path) -> FeatureSet:
    """Load a feature cache whole into memory; ``DamagedFile`` if the file is not what was
    written."""
    verify(path)
    try:
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()
    except (OSError, pa.ArrowInvalid) as error:
        raise DataError(f"feature cache {path} cannot be read ({error}); delete it to "
                        "rebuild") from None
    metadata = json.loads(table.schema.metadata[b"ser"])
    column = table.column("features").combine_chunks()
    features = np.array(column.values.to_numpy(zero_copy_only=True)).reshape(
        len(table), *metadata["shape"])
    frame = table.drop_columns(["features"]).to_pandas()
    return FeatureSet(features=features, labels=frame["label"].to_numpy(),
                      split=frame["split"].to_numpy(), table=frame,
                      classes=metadata["classes"], mean=np.asarray(metadata["mean"], np.float32),
                      std=np.asarray(metadata["std"], np.float32), metadata=metadata)
