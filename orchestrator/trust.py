"""Which folders ``--resume`` may continue from.

Resuming runs code that a run's folders hold: Tune restores its experiments by unpickling their
saved state (``tuner.pkl`` and the trial records), and a pickle can run anything. So a run is
resumed only from folders that no other user could have written: owned by this user, and not
writable by the group or others. The project's own files are read safely either way
(``weights_only=True``, ``safe_load``, checksums).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from trainables.errors import ProjectError

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


def check_resumable(results: Path, storage: Path, experiments: list[str]) -> None:
    """Raise ``ProjectError`` unless the run's folders and Tune's saved state in them could only
    have been written by this user."""
    if os.name != "posix":
        return
    paths = [results, storage]
    for name in experiments:
        folder = storage / name
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
