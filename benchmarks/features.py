"""Feature extraction speed and feature-cache load time."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from trainables.data.scan import scan_corpus
from trainables.data.feature_cache import build_feature_cache, load_features, write_feature_file
from trainables.data.settings import FeatureSettings
from trainables.data.synthetic import generate
from trainables.data.settings import SyntheticSpec


def extraction(speakers: int, per_emotion: int, workers: int | None) -> dict:
    """Files per second of the feature cache build on a fresh synthetic corpus (3 s clips)."""
    with tempfile.TemporaryDirectory() as folder:
        spec = SyntheticSpec(speakers=speakers, utterances_per_emotion=per_emotion,
                             min_seconds=2.0, max_seconds=7.0)
        root = generate(Path(folder) / "corpus", spec)
        table = scan_corpus(root, "synthetic")
        start = time.perf_counter()
        build_feature_cache(table, FeatureSettings(), Path(folder) / "cache", workers=workers,
                            progress=False)
        seconds = time.perf_counter() - start
    return {"files": len(table), "files_per_s": len(table) / seconds}


def cache_load(rows: int, frames: int = 373) -> dict:
    """Load time of a cache of ``rows`` utterances (DEMoS: 9,365 x 373 x 64 float32)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "features-bench.arrow"
        features = np.random.default_rng(0).standard_normal((rows, frames, 64), dtype=np.float32)
        meta = {"settings": {}, "shape": [frames, 64], "classes": ["a"], "mean": [0.0] * 64,
                "std": [1.0] * 64, "skipped": [], "split_speakers": {}}
        columns = {"path": [f"f{i}" for i in range(rows)], "speaker": ["s"] * rows,
                   "gender": ["f"] * rows, "emotion": ["a"] * rows, "label": [0] * rows,
                   "split": ["train"] * rows}
        write_feature_file(path, columns, features, meta)
        del features
        start = time.perf_counter()
        loaded = load_features(path)
        seconds = time.perf_counter() - start
        size = loaded.features.nbytes / 2**20
    return {"rows": rows, "megabytes": size, "load_s": seconds}
