import json

import numpy as np
import pandas as pd
import pytest

from trainables.errors import DataError
from trainables.data.splits import assign_splits, speaker_lists
from trainables.data.settings import SplitSpec

CLASSES = ("a", "b", "c")


def corpus(female: int, male: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(female + male):
        gender = "f" if s < female else "m"
        for emotion in CLASSES:
            for _ in range(rng.integers(1, 4)):
                rows.append({"speaker": f"{gender}{s:02d}", "gender": gender, "emotion": emotion})
    return pd.DataFrame(rows)


def test_split_is_speaker_independent_deterministic_and_complete():
    df = corpus(23, 45)
    first = assign_splits(df, SplitSpec(seed=3), CLASSES)
    again = assign_splits(df.sample(frac=1, random_state=1).sort_index(), SplitSpec(seed=3), CLASSES)
    assert first.equals(again)
    assert (df.assign(split=first).groupby("speaker")["split"].nunique() == 1).all()
    assert {(s, c) for s, c in zip(first, df["emotion"])} == {
        (s, c) for s in ("train", "dev", "test") for c in CLASSES}
    other = assign_splits(df, SplitSpec(seed=4), CLASSES)
    assert not first.equals(other)


SEEDS = range(6)  # one seed's unstratified draw may balance the genders by chance (seed 0 did)


def per_gender(df: pd.DataFrame, split: pd.Series) -> dict[str, dict[str, int]]:
    """Speakers of each gender in each split: ``{gender: {split: count}}``."""
    counts = df.assign(split=split).groupby(["gender", "split"])["speaker"].nunique()
    return {g: {s: int(counts.get((g, s), 0)) for s in ("train", "dev", "test")}
            for g in sorted(set(df["gender"]))}


@pytest.mark.parametrize("seed", SEEDS)
def test_split_is_stratified_by_gender_with_demos_counts(seed):
    df = corpus(23, 45)
    spec = SplitSpec(speakers_per_gender={"f": (9, 7, 7), "m": (18, 18, 9)}, seed=seed)
    split = assign_splits(df, spec, CLASSES)
    per = df.assign(split=split).groupby(["split", "gender"])["speaker"].nunique()
    assert per["train"].tolist() == [9, 18] and per["dev"].tolist() == [7, 18]
    assert per["test"].tolist() == [7, 9]
    lists = speaker_lists(df.assign(split=split))
    assert sum(len(v) for v in lists.values()) == 68


@pytest.mark.parametrize("seed", SEEDS)
def test_fraction_split_balances_each_gender(seed):
    df = corpus(10, 10)
    split = assign_splits(df, SplitSpec(fractions=(0.4, 0.3, 0.3), seed=seed), CLASSES)
    assert per_gender(df, split) == {"f": {"train": 4, "dev": 3, "test": 3},
                                     "m": {"train": 4, "dev": 3, "test": 3}}


@pytest.mark.parametrize("seed", SEEDS)
def test_fraction_split_gives_each_gender_its_share_of_every_split(seed):
    """Genders of unequal size (23 f, 45 m): each split holds each gender in proportion, to
    within one speaker, whatever the seed."""
    df = corpus(23, 45)
    fractions = (0.4, 0.35, 0.25)
    split = assign_splits(df, SplitSpec(fractions=fractions, seed=seed), CLASSES)
    for gender, counts in per_gender(df, split).items():
        size = sum(counts.values())
        for name, fraction in zip(("train", "dev", "test"), fractions):
            assert abs(counts[name] - size * fraction) < 1, (gender, counts)


def test_split_file_is_used_and_checked(tmp_path):
    df = corpus(2, 2)
    lists = {"train": ["f00", "m02"], "dev": ["f01"], "test": ["m03"]}
    (tmp_path / "split.json").write_text(json.dumps(lists))
    split = assign_splits(df, SplitSpec(file=str(tmp_path / "split.json")), CLASSES)
    assert speaker_lists(df.assign(split=split)) == {k: sorted(v) for k, v in lists.items()}
    (tmp_path / "short.json").write_text(json.dumps({"train": ["f00"], "dev": [], "test": []}))
    with pytest.raises(DataError, match="does not place speakers"):
        assign_splits(df, SplitSpec(file=str(tmp_path / "short.json")), CLASSES)


def test_a_class_that_cannot_reach_every_split_is_an_error():
    df = corpus(3, 3)
    df = df[~((df["emotion"] == "c") & (df["speaker"] != "f00"))]  # one speaker has class c
    with pytest.raises(DataError, match="class 'c'"):
        assign_splits(df, SplitSpec(), CLASSES)
