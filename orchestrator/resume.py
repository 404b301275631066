"""What ``--resume`` checks before it continues a run: that only this user could have written
its folders, and that the data and the defences are the ones its finished trials used.

Resuming runs code that a run's folders hold: Tune restores its experiments by unpickling their
saved state (``tuner.pkl`` and the trial records), and a pickle can run anything. So a run is
resumed only from folders that no other user could have written: owned by this user, and not
writable by the group or others; a bucket, only if it holds this run's id
(``orchestrator.run_identity``). The project's own files are read safely either way
(``weights_only=True``, ``safe_load``, checksums).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from orchestrator.data_prep import PreparedData
from orchestrator.storage import Storage
from trainables.atomic import write_text_atomically
from trainables.errors import ProjectError

# The feature cache a run's trials were trained and evaluated on (its name hashes every audio
# file's path, size and time, the labels, the split and the feature settings).
DATA_FILE = "data.json"

# What Tune unpickles when it restores an experiment, beside the experiment folders themselves.
TUNE_STATE = ("tuner.pkl", "experiment_state-*.json", "basic-variant-state-*.json",
              "search_gen_state-*.json")


def _doubt(path: Path) -> str | None:
    """Why another user could have written ``path``, or ``None``."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return "it is a symbolic link"
    if info.st_uid != os.getuid():
        return "another user owns it"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "other users can write to it"
    return None


def check_resumable(results: Path, storage: Storage, experiments: list[str]) -> None:
    """Raise ``ProjectError`` unless the run's folders and Tune's saved state in them could only
    have been written by this user. A bucket has no owner or mode to check: there
    ``run_identity.check_same_run`` refuses objects another run wrote."""
    if os.name != "posix":
        return
    local = storage.local
    paths = [results] if local is None else [results, local]
    for name in experiments if local is not None else []:
        folder = local / name
        if folder.exists():
            paths.append(folder)
            paths += [f for pattern in TUNE_STATE for f in folder.glob(pattern)]
    for path in paths:
        reason = _doubt(path) if path.exists() or path.is_symlink() else None
        if reason:
            raise ProjectError(
                f"--resume would run code saved in {path} (Tune's state is a pickle), and "
                f"{reason}: resume only from folders that only you can write (chmod go-w, and "
                "your own files), or start a new run in another --results folder")


def check_same_data(results: Path, prepared: PreparedData, resume: bool) -> None:
    """Record the data a run uses; on ``--resume``, refuse data that differ from the recorded:
    the finished trials' numbers would be mixed with numbers from another corpus or split."""
    path = results / DATA_FILE
    used = {"feature_cache": Path(prepared.feature_cache).name,
            "utterances": prepared.utterances, "split_speakers": prepared.split_speakers}
    if resume and path.exists():
        recorded = json.loads(path.read_text())
        if recorded.get("feature_cache") != used["feature_cache"]:
            raise ProjectError(
                f"the data changed since this run started ({recorded.get('utterances')} "
                f"utterances then, {used['utterances']} now, or files added, removed or "
                "modified): its finished trials used the old data, and --resume would mix the "
                "two in one table. Restore the corpus as it was, or start a new run in another "
                "--results folder")
        return
    write_text_atomically(path, json.dumps(used, indent=2) + "\n")


def check_same_defences(recorded: dict, trials: dict, keys: dict) -> None:
    """On ``--resume``, refuse defences other than those the run's finished trials attacked
    (their key hashes the model's code and settings, its seed and the data)."""
    for trial_id, trial in trials.items():
        entry = recorded.get(trial.defence, {}).get(str(trial.seed))
        if entry and Path(entry["cache"]).stem != keys[trial_id]:
            raise ProjectError(
                f"defence {trial.defence} (grid seed {trial.seed}) is not the one this run "
                "started with: its code or settings changed since (the project was updated?), "
                "and --resume would mix attacks on two different defences in one table. Finish "
                "it with the version that started it, or start a new run in another --results "
                "folder")
