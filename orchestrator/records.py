"""Reading what a run recorded: per-stage results of attack trials, trial status, defences.

The reporter works from these files alone, so ``--report-only`` rebuilds every table and figure
without re-running anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from trainables import metric_keys as keys
from trainables.atomic import write_text_atomically

STATUS_FILE = "trial_status.json"
RESULT_FILE = "result.json"  # Tune's JSON-lines log of a trial's reports
# What a trial reported before its experiment was run again (``orchestrator.launch``), oldest
# first by name: Tune starts a fresh result.json then.
EARLIER_RESULTS = "result.before-*.json"


def result_files(trial_folder: Path) -> list[Path]:
    """A trial's report logs in the order they were written."""
    current = trial_folder / RESULT_FILE
    earlier = sorted(trial_folder.glob(EARLIER_RESULTS))
    return earlier + ([current] if current.exists() else [])


def set_aside_results(trial_folder: Path, stamp: str) -> None:
    """Keep a trial's report log before its experiment runs again (``result.before-STAMP.json``),
    so that no recorded stage is lost."""
    current = trial_folder / RESULT_FILE
    if current.exists():
        current.rename(trial_folder / EARLIER_RESULTS.replace("*", stamp))
DEFENCES_FILE = "defences.json"


def stage_records(experiments: list[Path]) -> pd.DataFrame:
    """One row per (trial, stage) from each trial's ``result.json`` (Tune's JSON-lines log) in
    the Tune experiment folders ``experiments``. A stage reported twice (a retried trial) keeps
    its last report. Lines that are not whole JSON (cut by a crash or a full disk) are skipped
    and listed, as ``file:line``, in the frame's ``attrs["cut_lines"]``."""
    rows, cut = [], []
    folders = sorted({f.parent for e in experiments for f in e.glob("*/result*.json")})
    for result_file in (f for folder in folders for f in result_files(folder)):
        trial_id = result_file.parent.name
        for number, line in enumerate(result_file.read_text().splitlines(), start=1):
            try:
                result = json.loads(line)
            except ValueError:
                cut.append(f"{result_file}:{number}")
                continue
            if result.get(keys.KIND) == keys.STAGE:
                result.pop("config", None)
                rows.append({**result, "tune_trial_id": result.get("trial_id"),
                             "trial_id": trial_id})
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["trial_id", "stage"])
    frame = frame.drop_duplicates(["trial_id", "stage"], keep="last").reset_index(drop=True)
    frame.attrs["cut_lines"] = cut
    return frame


def write_status(results: Path, status: dict[str, str]) -> None:
    """Record each trial's outcome: ``ok`` or ``failed: <error>``."""
    write_text_atomically(results / STATUS_FILE, json.dumps(status, indent=2) + "\n")


def read_status(results: Path) -> dict[str, str]:
    path = results / STATUS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def write_defences(results: Path, metrics: dict[str, dict]) -> None:
    """Record each defence's clean UAR (and where its weights are cached)."""
    write_text_atomically(results / DEFENCES_FILE, json.dumps(metrics, indent=2) + "\n")


def read_defences(results: Path) -> dict[str, dict]:
    path = results / DEFENCES_FILE
    return json.loads(path.read_text()) if path.exists() else {}
