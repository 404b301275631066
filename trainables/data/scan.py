"""Scanning a corpus folder into a table of utterances with a speaker-independent split."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from trainables.data.corpora import (AUDIO_SUFFIXES, CORPORA, CORPUS_KINDS, CremaDCorpus,
                                CorpusAdapter, DemosCorpus, Excluded)
from trainables.errors import DataError
from trainables.data.splits import assign_splits
from trainables.data.settings import SplitSpec

COLUMNS = ["path", "speaker", "gender", "emotion", "label", "split"]


def _adapter(corpus: str, root: Path) -> CorpusAdapter:
    if corpus == "synthetic":
        return DemosCorpus()
    if corpus == "crema-d":
        return CremaDCorpus(_crema_genders(root))
    if corpus not in CORPORA:
        raise DataError(f"unknown corpus {corpus!r}; allowed: {', '.join(CORPUS_KINDS)}")
    return CORPORA[corpus]()


def _crema_genders(root: Path) -> dict[str, str]:
    for folder in (root, *root.parents[:2]):
        table = folder / "VideoDemographics.csv"
        if table.is_file():
            frame = pd.read_csv(table)
            return {str(a): ("m" if str(s).lower().startswith("m") else "f")
                    for a, s in zip(frame["ActorID"], frame["Sex"])}
    return {}


def _check_root(root: Path) -> None:
    if not root.exists():
        raise DataError(f"data folder {root} does not exist: pass the corpus folder with "
                        "--data-root, or use --corpus synthetic")
    if not root.is_dir():
        raise DataError(f"data root {root} is not a folder")


Skips = list[tuple[str, str]]  # (path, reason)


def _scan_names(root: Path, adapter: CorpusAdapter,
                on_bad_file: str) -> tuple[list[dict], Skips, Skips]:
    """Rows of the usable files, the files excluded by design (never an error) and the bad
    files skipped (only with ``on_bad_file="skip"``; otherwise the first one raises)."""
    rows: list[dict] = []
    excluded: Skips = []
    skipped: Skips = []
    unrecognised: list[Path] = []
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"data folder {root} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
    for path in files:
        try:
            utterance = adapter.parse(path)
        except Excluded as exclusion:
            excluded.append((str(path), str(exclusion)))
            continue
        except DataError as error:
            if on_bad_file != "skip":
                raise DataError(f"{error} (or set data.on_bad_file: skip)") from None
            skipped.append((str(path), str(error)))
            continue
        if utterance is None:
            unrecognised.append(path)
            continue
        rows.append({"path": str(path), "speaker": utterance.speaker,
                     "gender": utterance.gender, "emotion": utterance.emotion})
    if not rows and not unrecognised:
        first = (excluded or skipped)[0]
        raise DataError(f"no usable file in {root}: all {len(excluded) + len(skipped)} audio "
                        f"files are left out, e.g. {first[0]}: {first[1]}")
    if not rows:
        raise DataError(f"no file in {root} is named as {adapter.name} names its files "
                        f"(e.g. {adapter.example}); is --corpus right?")
    if unrecognised:
        if on_bad_file != "skip":
            names = ", ".join(p.name for p in unrecognised[:3])
            raise DataError(f"{len(unrecognised)} audio file(s) in {root} are not named as "
                            f"{adapter.name} names its files (e.g. {adapter.example}): {names}; "
                            "remove them or set data.on_bad_file: skip")
        skipped += [(str(p), "unrecognised file name") for p in unrecognised]
    return rows, excluded, skipped


def _scan_manifest(root: Path) -> tuple[list[dict], tuple[str, ...]]:
    table = root / "manifest.csv" if root.is_dir() else root
    if not table.is_file():
        raise DataError(f"manifest {table} not found: pass a CSV (columns path, speaker, "
                        "emotion, optional gender and split) or a folder holding manifest.csv")
    raw = table.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise DataError(f"manifest {table}: not UTF-8 text (byte 0x{raw[error.start]:02x} at "
                        f"line {line}); save it as UTF-8") from None
    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "speaker", "emotion"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"manifest {table} lacks column(s) {', '.join(sorted(missing))}")
        rows = []
        for row in reader:
            path = Path(row["path"])
            rows.append({"path": str(path if path.is_absolute() else table.parent / path),
                         "speaker": str(row["speaker"]), "emotion": str(row["emotion"]),
                         "gender": (row.get("gender") or "unknown"),
                         **({"split": row["split"]} if row.get("split") else {})})
    if not rows:
        raise DataError(f"manifest {table} lists no files")
    return rows, tuple(sorted({r["emotion"] for r in rows}))


def scan_corpus(root: str | Path, corpus: str = "demos", *, split: SplitSpec | None = None,
                on_bad_file: str = "error") -> pd.DataFrame:
    """Scan ``root`` and return one row per usable utterance.

    Columns: ``path, speaker, gender, emotion`` (English class name), ``label`` (index in the
    corpus's class order) and ``split`` (``train``/``dev``/``test``: speaker-independent,
    gender-stratified, deterministic from ``split.seed``). ``df.attrs`` holds ``classes``,
    ``excluded`` (``[(path, reason)]``: files of classes the seven-class setup leaves out, such as
    DEMoS neutral, and other recordings the corpus excludes) and ``skipped`` (``[(path, reason)]``
    of bad files, non-empty only with ``on_bad_file="skip"``).
    Raises ``DataError`` naming the folder or file for any unusable input.
    """
    if on_bad_file not in ("error", "skip"):
        raise DataError(f"data.on_bad_file is {on_bad_file!r}; allowed: error, skip")
    root = Path(root)
    if corpus == "manifest":  # a CSV file, or a folder holding manifest.csv
        rows, classes = _scan_manifest(root)
        excluded: Skips = []
        skipped: Skips = []
    else:
        _check_root(root)
        adapter = _adapter(corpus, root)
        rows, excluded, skipped = _scan_names(root, adapter, on_bad_file)
        classes = adapter.classes
    df = pd.DataFrame(rows)
    df["label"] = df["emotion"].map({c: i for i, c in enumerate(classes)}).astype("int64")
    if "split" not in df or df["split"].isna().any():
        df["split"] = assign_splits(df, split or SplitSpec(), classes)
    bad = sorted(set(df["split"]) - {"train", "dev", "test"})
    if bad:
        raise DataError(f"split values {bad} in {root}; allowed: train, dev, test")
    df = df[COLUMNS].sort_values("path", kind="stable").reset_index(drop=True)
    df.attrs["classes"] = list(classes)
    df.attrs["excluded"] = excluded
    df.attrs["skipped"] = skipped
    return df
