"""Speaker-independent, gender-stratified, deterministic train/dev/test splits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trainables.data.settings import SplitSpec
from trainables.errors import DataError

if TYPE_CHECKING:
    # Only in annotations: the config (which holds a SplitSpec) loads without pandas, so
    # `run_grid.py` answers a mistyped key in a fraction of a second.
    import pandas as pd

SPLITS = ("train", "dev", "test")


def _counts(n: int, fractions: tuple[float, float, float]) -> list[int]:
    """Speakers per split: largest-remainder rounding of ``n * fractions``, at least one each."""
    exact = np.asarray(fractions, dtype=float) / sum(fractions) * n
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    while counts.min() == 0:  # every split needs a speaker; take one from the largest
        counts[np.argmax(counts)] -= 1
        counts[np.argmin(counts)] += 1
    return counts.tolist()


def _draw(speakers_by_gender: dict[str, list[str]], spec: SplitSpec,
          rng: np.random.Generator) -> dict[str, str]:
    if spec.speakers_per_gender is not None:
        return _draw_counts(speakers_by_gender, spec.speakers_per_gender, rng)
    # Shuffle each gender, then deal the genders into one list so that every prefix holds them
    # in proportion; cutting that list by the split sizes stratifies by gender, even when a
    # gender has too few speakers to appear in every split.
    dealt = []
    for gender, speakers in sorted(speakers_by_gender.items()):
        order = rng.permutation(len(speakers))
        dealt += [((i + 0.5) / len(speakers), gender, speakers[j]) for i, j in enumerate(order)]
    dealt.sort()
    counts = _counts(len(dealt), spec.fractions)
    labels = np.repeat(SPLITS, counts)
    return {speaker: str(split) for (_, _, speaker), split in zip(dealt, labels)}


def _draw_counts(speakers_by_gender: dict[str, list[str]],
                 counts_by_gender: dict[str, tuple[int, int, int]],
                 rng: np.random.Generator) -> dict[str, str]:
    assignment: dict[str, str] = {}
    for gender, speakers in sorted(speakers_by_gender.items()):
        if gender not in counts_by_gender:
            raise DataError(f"split.speakers_per_gender has no entry for gender {gender!r}; "
                            f"genders in the corpus: {', '.join(sorted(speakers_by_gender))}")
        counts = list(counts_by_gender[gender])
        if sum(counts) != len(speakers):
            raise DataError(f"split.speakers_per_gender.{gender} asks for {sum(counts)} "
                            f"speakers but the corpus has {len(speakers)} of gender {gender!r}")
        labels = np.repeat(SPLITS, counts)
        for i, split in zip(rng.permutation(len(speakers)), labels):
            assignment[speakers[i]] = str(split)
    return assignment


def missing_classes(df: pd.DataFrame, classes: tuple[str, ...] | None = None
                    ) -> list[tuple[str, str]]:
    """(split, class) pairs with no utterance, for the classes present in ``df`` (which has a
    ``split`` column), in ``classes`` order when given."""
    present = set(zip(df["split"], df["emotion"]))
    corpus = set(df["emotion"])
    wanted = [c for c in (classes or sorted(corpus)) if c in corpus]
    return [(s, c) for s in SPLITS for c in wanted if (s, c) not in present]


def read_split_file(path: str | Path) -> dict[str, str]:
    """Read ``{"train": [...], "dev": [...], "test": [...]}`` into speaker -> split."""
    try:
        data = json.loads(Path(path).read_text())
        return {str(spk): split for split in SPLITS for spk in data[split]}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"split file {path}: cannot read it ({error}); expected JSON with "
                        f"lists of speakers under 'train', 'dev' and 'test'") from None


def assign_splits(df: pd.DataFrame, spec: SplitSpec, classes: tuple[str, ...]) -> pd.Series:
    """Return each row's split. Speakers never cross splits; the result depends only on the
    speakers, their genders and ``spec`` (not on file order). Raises ``DataError`` if no draw
    puts every class present in the corpus into every split."""
    if spec.file is not None:
        assignment = read_split_file(spec.file)
        unknown = sorted(set(df["speaker"]) - set(assignment))
        if unknown:
            raise DataError(f"split file {spec.file} does not place speakers {unknown[:5]}")
        return df["speaker"].map(assignment).rename("split")

    speakers = df.groupby("speaker")["gender"].first()
    by_gender: dict[str, list[str]] = {}
    for speaker, gender in sorted(speakers.items()):
        by_gender.setdefault(gender, []).append(speaker)
    if len(speakers) < len(SPLITS):
        raise DataError(f"the corpus has {len(speakers)} speaker(s); a speaker-independent "
                        "train/dev/test split needs at least 3")

    rng = np.random.default_rng(spec.seed)
    missing: list[tuple[str, str]] = []
    for _ in range(spec.max_attempts):
        split = df["speaker"].map(_draw(by_gender, spec, rng)).rename("split")
        missing = missing_classes(df.assign(split=split), classes)
        if not missing:
            return split
    split, cls = missing[0]
    raise DataError(f"no speaker split puts class {cls!r} into the {split} split "
                    f"({spec.max_attempts} draws tried): add speakers of that class, change "
                    "split.fractions, or pass split.file")


def speaker_lists(df: pd.DataFrame) -> dict[str, list[str]]:
    """The split as citable speaker lists: ``{"train": [...], "dev": [...], "test": [...]}``."""
    return {s: sorted(df.loc[df["split"] == s, "speaker"].unique().tolist()) for s in SPLITS}
