import os
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import demos_folder, write_wav
from trainables.data.scan import scan_corpus
from trainables.errors import DataError
from trainables.data.feature_cache import build_feature_cache, load_features
from trainables.data.features import log_mel
from trainables.data.settings import FeatureSettings

SMALL = FeatureSettings(frames=40)


def test_cache_round_trip_with_training_statistics(tmp_path):
    table = scan_corpus(demos_folder(tmp_path / "data"), "demos")
    path = build_feature_cache(table, SMALL, tmp_path / "cache", workers=1, progress=False)
    loaded = load_features(path)
    assert loaded.features.shape == (len(table), 40, 64)
    assert list(loaded.table["path"]) == list(table["path"])
    import soundfile
    wave, sr = soundfile.read(table["path"][0], dtype="float32")
    np.testing.assert_allclose(loaded.features[0], log_mel(wave, sr, SMALL), rtol=1e-5)
    train = loaded.features[loaded.split == "train"]
    np.testing.assert_allclose(loaded.mean, train.reshape(-1, 64).mean(axis=0), rtol=1e-4,
                               atol=1e-4)
    x, y = loaded.standardised("train")
    assert x.shape == (len(train), 1, 40, 64) and y.dtype == np.int64
    np.testing.assert_allclose(x.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    assert loaded.metadata["split_speakers"]["train"]
    # The same inputs find the same file; a changed audio file gives a new cache.
    assert build_feature_cache(table, SMALL, tmp_path / "cache", progress=False) == path
    write_wav(Path(table["path"][0]), seconds=0.7, seed=99)
    os.utime(table["path"][0], ns=(1, 1))
    assert build_feature_cache(table, SMALL, tmp_path / "cache", progress=False) != path


def test_parallel_extraction_gives_the_same_features(tmp_path):
    table = scan_corpus(demos_folder(tmp_path / "data", speakers=6, per_class=2), "demos")
    one = load_features(build_feature_cache(table, SMALL, tmp_path / "a", workers=1,
                                            progress=False))
    two = load_features(build_feature_cache(table, SMALL, tmp_path / "b", workers=2,
                                            progress=False))
    np.testing.assert_array_equal(one.features, two.features)


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b""), "cannot read audio"),
    (lambda p: p.write_bytes(b"RIFF\x00\x00garbage" * 10), "cannot read audio"),
    (lambda p: write_wav(p, seconds=0.0), "empty"),
])
def test_a_bad_file_is_named_and_nothing_is_cached(tmp_path, damage, message):
    table = scan_corpus(demos_folder(tmp_path / "data"), "demos")
    bad = Path(table["path"][3])
    damage(bad)
    with pytest.raises(DataError, match=message) as error:
        build_feature_cache(table, SMALL, tmp_path / "cache", workers=1, progress=False)
    assert bad.name in str(error.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_skip_leaves_bad_files_out_and_lists_them(tmp_path):
    table = scan_corpus(demos_folder(tmp_path / "data", per_class=2), "demos")
    bad = Path(table["path"][3])
    bad.write_bytes(b"")
    loaded = load_features(build_feature_cache(table, SMALL, tmp_path / "cache",
                                               on_bad_file="skip", progress=False))
    assert len(loaded.table) == len(table) - 1
    assert [p for p, _ in loaded.metadata["skipped"]] == [str(bad)]


def test_nan_and_silent_files_are_errors(tmp_path):
    import soundfile
    table = scan_corpus(demos_folder(tmp_path / "data"), "demos")
    soundfile.write(table["path"][0], np.full(800, np.nan, np.float32), 16_000, subtype="FLOAT")
    with pytest.raises(DataError, match="NaN"):
        build_feature_cache(table, SMALL, tmp_path / "c1", progress=False)
    soundfile.write(table["path"][0], np.zeros(800, np.float32), 16_000)
    with pytest.raises(DataError, match="silent"):
        build_feature_cache(table, SMALL, tmp_path / "c2", progress=False)
