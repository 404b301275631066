"""A run's id: made when a run starts, written to its results folder and to its storage, and
compared on ``--resume``.

``--resume`` restores Tune's saved state, a pickle, from the storage. On a local disk
``orchestrator.resume.check_resumable`` trusts only folders that no other user could write; a
bucket has no such owner and mode to read, so there the id stands in: a run resumes only from a
storage whose id is the one its own results folder recorded, never from objects another run (or
anyone else) wrote under that name.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from orchestrator.storage import Storage, unreachable
from trainables.atomic import write_text_atomically
from trainables.errors import ProjectError

RUN_FILE = "run.json"  # in the results folder and at the storage's root: {"run_id": ...}


def claim(results: Path, storage: Storage) -> str:
    """Give a new run its id, in ``storage`` first (so a storage that cannot be written stops
    the run here, in one line) and then in ``results``; returns the id."""
    run_id = uuid.uuid4().hex
    text = json.dumps({"run_id": run_id, "results": str(results)}, indent=2) + "\n"
    try:
        storage.write_text(text, RUN_FILE)
    except OSError as error:
        raise unreachable(storage, error) from None
    write_text_atomically(results / RUN_FILE, text)
    return run_id


def _recorded(text: str) -> str | None:
    try:
        value = json.loads(text).get("run_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def check_same_run(results: Path, storage: Storage) -> None:
    """On ``--resume``, ``ProjectError`` unless ``storage`` holds the id ``results`` recorded.
    A run on a local disk that recorded no id (it started before ids were recorded) passes:
    the folder checks of ``check_resumable`` cover it."""
    mine = _recorded((results / RUN_FILE).read_text()) if (results / RUN_FILE).is_file() else None
    if mine is None and storage.local is not None:
        return
    try:
        theirs = _recorded(storage.read_text(RUN_FILE)) if storage.is_file(RUN_FILE) else None
    except OSError as error:
        raise unreachable(storage, error) from None
    if mine is None or theirs != mine:
        why = ("this results folder recorded no run id" if mine is None else
               f"it holds no {RUN_FILE}" if theirs is None else
               f"its {RUN_FILE} names run {theirs[:8]}, this results folder run {mine[:8]}")
        raise ProjectError(
            f"--resume would restore Tune's saved state (a pickle, which can run any code) from "
            f"{storage}, which this run did not write ({why}): resume a run only with the "
            "--results folder that started it, or start a new run in another --results folder")
