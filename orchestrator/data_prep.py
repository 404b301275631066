"""Data preparation on the driver, once, before any trial starts: corpus, split, features."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from trainables.atomic import write_text_atomically
from orchestrator.config import DataConfig
from orchestrator.paths import cache_dir
from trainables.data import scan_corpus
from trainables.feature_cache import build_feature_cache, load_metadata
from trainables.synthetic import ensure_corpus


@dataclass(frozen=True)
class PreparedData:
    """What the trials need to find the data, and what the run records about it."""

    feature_cache: str
    corpus_root: str
    utterances: int
    classes: list[str]
    split_speakers: dict[str, list[str]]
    skipped: list[tuple[str, str]]


def prepare_data(config: DataConfig, results_dir: str | Path | None = None,
                 progress: bool = True) -> PreparedData:
    """Generate the synthetic corpus if needed, scan the corpus, build (or reuse) the feature
    cache, and record the split and any skipped files in ``results_dir``."""
    cache = cache_dir(config.cache_dir)
    root = (ensure_corpus(cache, config.synthetic) if config.corpus == "synthetic"
            else Path(config.root).expanduser())
    table = scan_corpus(root, config.corpus, split=config.split, on_bad_file=config.on_bad_file)
    path = build_feature_cache(table, config.features, cache / "features",
                               on_bad_file=config.on_bad_file, workers=config.workers or None,
                               progress=progress)
    meta = load_metadata(path)
    prepared = PreparedData(feature_cache=str(path), corpus_root=str(root),
                            utterances=meta["rows"], classes=meta["classes"],
                            split_speakers=meta["split_speakers"],
                            skipped=[tuple(s) for s in meta["skipped"]])
    if results_dir is not None:
        results = Path(results_dir)
        write_text_atomically(results / "split.json",
                              json.dumps(prepared.split_speakers, indent=2) + "\n")
        if prepared.skipped:
            write_text_atomically(results / "skipped_files.txt", "".join(
                f"{path}\t{reason}\n" for path, reason in prepared.skipped))
    return prepared
