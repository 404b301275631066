"""Data preparation on the driver, once, before any trial starts: corpus, split, features."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from trainables.atomic import write_text_atomically
from orchestrator.config import DataConfig
from orchestrator.paths import cache_dir
from trainables.data.scan import scan_corpus
from trainables.data.feature_cache import build_feature_cache, load_metadata
from trainables.data.synthetic import ensure_corpus


@dataclass(frozen=True)
class PreparedData:
    """What the trials need to find the data, and what the run records about it."""

    feature_cache: str
    corpus_root: str
    utterances: int
    classes: list[str]
    split_speakers: dict[str, list[str]]
    skipped: list[tuple[str, str]]  # bad files left out (data.on_bad_file: skip)
    excluded: list[tuple[str, str]]  # files of classes the seven-class setup leaves out

    def left_out(self) -> str:
        """What was left out, counted by reason (``"6 neutral (excluded, as in the paper)"``),
        or ``""`` when nothing was."""
        counts = [f"{n} {reason}" for reason, n in Counter(r for _, r in self.excluded).items()]
        if self.skipped:
            counts.append(f"{len(self.skipped)} bad file(s) skipped (data.on_bad_file: skip)")
        return ", ".join(counts)

    def record(self, results_dir: str | Path) -> None:
        """Write the split (``split.json``) and what was left out (``skipped_files.txt``)."""
        results = Path(results_dir)
        write_text_atomically(results / "split.json",
                              json.dumps(self.split_speakers, indent=2) + "\n")
        if self.excluded or self.skipped:
            write_text_atomically(results / "skipped_files.txt", "".join(
                f"{path}\t{reason}\n" for path, reason in [*self.excluded, *self.skipped]))


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
    # The scan's lists are this scan's; the cache adds the files whose audio proved unusable. Its
    # own copy of the scan's lists may be older: the cache's key covers only the files it kept.
    scanned = set(table["path"])
    unusable = [tuple(s) for s in meta["skipped"] if s[0] in scanned]
    prepared = PreparedData(feature_cache=str(path), corpus_root=str(root),
                            utterances=meta["rows"], classes=meta["classes"],
                            split_speakers=meta["split_speakers"],
                            skipped=[*table.attrs["skipped"], *unusable],
                            excluded=list(table.attrs.get("excluded", [])))
    if results_dir is not None:
        prepared.record(results_dir)
    return prepared
