"""The feature cache's name follows the labels: a manifest corpus relabelled in its CSV (the
same audio files, other emotions) is another cache, never the old one found again. Its name is
what ``data.json`` records and ``--resume`` compares, so a cache found again under the old name
would let one table mix two labellings."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tests.helpers import write_wav
from trainables.data.feature_cache import build_feature_cache, load_features
from trainables.data.scan import scan_corpus
from trainables.data.settings import FeatureSettings

SMALL = FeatureSettings(frames=8)
EMOTIONS = ("anger", "happiness", "sadness")
SPLIT = ("train", "train", "dev", "dev", "test", "test")  # by speaker, fixed in the CSV


def audio(root: Path) -> list[dict]:
    """Six speakers x three short files, each with its speaker's fixed split."""
    rows = []
    for speaker, split in enumerate(SPLIT):
        for item in range(3):
            path = write_wav(root / f"s{speaker}_{item}.wav", seconds=0.25,
                             seed=10 * speaker + item)
            rows.append({"path": str(path), "speaker": f"s{speaker}",
                         "gender": "fm"[speaker % 2], "split": split, "item": item})
    return rows


def manifest(path: Path, rows: list[dict], emotion_of) -> Path:
    """A CSV of ``rows`` whose emotion is ``emotion_of(row)``."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "speaker", "gender", "split",
                                                    "emotion"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in ("path", "speaker", "gender", "split")}
                            | {"emotion": emotion_of(row)})
    return path


def cache_of(csv_path: Path, cache: Path):
    table = scan_corpus(csv_path, "manifest")
    path = build_feature_cache(table, SMALL, cache, workers=1, progress=False)
    return table, path, load_features(path)


def test_a_relabelled_manifest_gets_another_cache(tmp_path):
    rows = audio(tmp_path / "audio")
    original, first, _ = cache_of(
        manifest(tmp_path / "a.csv", rows, lambda r: EMOTIONS[r["item"]]), tmp_path / "cache")
    again, same, _ = cache_of(
        manifest(tmp_path / "again.csv", rows, lambda r: EMOTIONS[r["item"]]), tmp_path / "cache")
    assert same == first  # the same files and labels find the same cache
    # The same files, the same classes, each file another emotion.
    relabelled, other, loaded = cache_of(
        manifest(tmp_path / "b.csv", rows, lambda r: EMOTIONS[(r["item"] + 1) % 3]),
        tmp_path / "cache")
    assert list(relabelled["path"]) == list(original["path"])
    assert list(relabelled["split"]) == list(original["split"])
    assert relabelled.attrs["classes"] == original.attrs["classes"]
    assert other != first
    np.testing.assert_array_equal(loaded.labels, relabelled["label"].to_numpy())
    assert list(loaded.table["emotion"]) == list(relabelled["emotion"])


def test_renamed_classes_get_another_cache(tmp_path):
    """Classes renamed in the CSV keep their alphabetical order, so every file keeps its label
    index; the cache must still be another one, whose classes carry the new names."""
    rows = audio(tmp_path / "audio")
    _, first, _ = cache_of(
        manifest(tmp_path / "a.csv", rows, lambda r: EMOTIONS[r["item"]]), tmp_path / "cache")
    renamed = ("angry", "happy", "sad")
    table, other, loaded = cache_of(
        manifest(tmp_path / "b.csv", rows, lambda r: renamed[r["item"]]), tmp_path / "cache")
    assert table.attrs["classes"] == list(renamed)
    assert other != first
    assert loaded.classes == list(renamed)
    assert list(loaded.table["emotion"]) == list(table["emotion"])
