"""Reading what a run recorded: the stage records of attack trials, trial status, defences.

The reporter works from these files alone, so ``--report-only`` rebuilds every table and figure
without re-running anything. The stage records are the project's own files
(``trainables.stage_record``), not Tune's logs.
"""

from __future__ import annotations

import json
import logging
import posixpath
from pathlib import Path

from orchestrator.storage import Storage

from trainables.atomic import write_text_atomically
from trainables.errors import DamagedFile
from trainables.stage_record import StageRecord
from trainables.trial_folder import RECORDS_FOLDER

log = logging.getLogger(__name__)

STATUS_FILE = "trial_status.json"
DEFENCES_FILE = "defences.json"


def stage_records(storage: Storage, experiments: list[str]) -> tuple[list[StageRecord], list[str]]:
    """Every stage record of the trials in the Tune experiments ``experiments`` of ``storage``,
    and the reasons why those that cannot be trusted (cut by a crash or a full disk, damaged)
    were left out, each naming its file."""
    records, damaged = [], []
    for path in (f for e in experiments
                 for f in storage.glob(e, f"*/{RECORDS_FOLDER}/stage-*.json")):
        try:
            records.append(read_record(storage, path))
        except DamagedFile as error:
            damaged.append(str(error))
    return records, damaged


def read_record(storage: Storage, path: str) -> StageRecord:
    """The stage record at ``path`` in ``storage``; ``DamagedFile`` naming it if it cannot be
    read or trusted."""
    try:
        text = storage.read_text(path)
    except OSError as error:
        raise DamagedFile(f"stage record {storage.shown(path)} cannot be read ({error})") from None
    return StageRecord.from_json(text, storage.shown(path))


def last_record(storage: Storage, experiment: str, trial_id: str) -> StageRecord | None:
    """The last intact stage record ``trial_id`` wrote in ``experiment``, or ``None``."""
    folder = posixpath.join(experiment, trial_id, RECORDS_FOLDER)
    paths = sorted(storage.glob(folder, "stage-*.json"),
                   key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0]))
    try:
        return read_record(storage, paths[-1]) if paths else None
    except DamagedFile as error:
        log.info(str(error))
        return None


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
