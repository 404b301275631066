"""Reading what a run recorded: the stage records of attack trials, trial status, defences.

The reporter works from these files alone, so ``--report-only`` rebuilds every table and figure
without re-running anything. The stage records are the project's own files
(``trainables.stage_record``), not Tune's logs.
"""

from __future__ import annotations

import json
from pathlib import Path

from trainables.atomic import write_text_atomically
from trainables.errors import DamagedFile
from trainables.stage_record import StageRecord
from trainables.trial_folder import RECORDS_FOLDER

STATUS_FILE = "trial_status.json"
DEFENCES_FILE = "defences.json"


def stage_records(experiments: list[Path]) -> tuple[list[StageRecord], list[str]]:
    """Every stage record of the trials in the Tune experiment folders ``experiments``, and the
    reasons why those that cannot be trusted (cut by a crash or a full disk, damaged) were
    left out, each naming its file."""
    records, damaged = [], []
    for path in sorted(f for e in experiments for f in e.glob(f"*/{RECORDS_FOLDER}/stage-*.json")):
        try:
            records.append(StageRecord.load(path))
        except DamagedFile as error:
            damaged.append(str(error))
    return records, damaged


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
