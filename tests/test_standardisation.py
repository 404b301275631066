"""Every split is standardised with the training split's per-band statistics.

Standardising dev or test with their own statistics leaks them into the features and hides any
shift between the splits: the test speakers here are recorded 4 times louder, which a
train-statistics standardisation must show and a per-split one would erase.
"""

from __future__ import annotations


import numpy as np
import pytest
import soundfile

from tests.helpers import demos_folder
from trainables.data.scan import scan_corpus
from trainables.data.feature_cache import FeatureSet, build_feature_cache, load_features
from trainables.data.settings import FeatureSettings

SMALL = FeatureSettings(frames=40)
GAIN = 4.0  # test speakers' recordings are this much louder
SHIFT = float(np.log(GAIN))  # what that adds to every log-Mel value (magnitude spectrogram)


@pytest.fixture(scope="module")
def louder_test_split(tmp_path_factory) -> FeatureSet:
    """A real feature cache of a DEMoS-named folder whose test-split files were made ``GAIN``
    times louder before the features were computed."""
    root = tmp_path_factory.mktemp("standardisation")
    table = scan_corpus(demos_folder(root / "data", speakers=6), "demos")
    for path in table.loc[table["split"] == "test", "path"]:
        wave, sr = soundfile.read(path, dtype="float32")
        soundfile.write(path, wave * GAIN, sr, subtype="FLOAT")  # FLOAT: no clipping
    return load_features(build_feature_cache(table, SMALL, root / "cache", workers=1,
                                             progress=False))


def _train_statistics(features: FeatureSet) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation of the training split, computed here directly."""
    train = features.features[features.split == "train"].reshape(-1, 64).astype(np.float64)
    return train.mean(axis=0), train.std(axis=0)


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_each_split_is_standardised_with_the_training_statistics(louder_test_split, split):
    features = louder_test_split
    mean, std = _train_statistics(features)
    x, y = features.standardised(split)
    raw = features.features[features.split == split]
    assert x.shape == (len(raw), 1, 40, 64) and len(y) == len(raw)
    np.testing.assert_allclose(x[:, 0], (raw - mean) / std, rtol=1e-4, atol=1e-4)


def test_a_louder_test_split_stays_louder_after_standardisation(louder_test_split):
    """Against the same clips unshifted: the standardised test features are shifted by
    ``SHIFT / std`` in every band, as a model trained on the training split sees them."""
    features = louder_test_split
    _, std = _train_statistics(features)
    x, _ = features.standardised("test")
    quiet = FeatureSet(**{**vars(features), "features": features.features.copy()})
    # The same features with the gain taken off (exactly SHIFT lower): the reference for the shift.
    quiet.features[features.split == "test"] -= SHIFT
    x_quiet, _ = quiet.standardised("test")
    shift = (x - x_quiet).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(shift, SHIFT / std, rtol=1e-3)
    # Per-split statistics would centre the test split on 0 in every band; it is not.
    assert np.abs(x.mean(axis=(0, 1, 2))).max() > 0.5
