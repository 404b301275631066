"""What the Tune trainables share: reporting with checkpoints, restoring them, data tensors."""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable
import warnings
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import torch
from ray import tune

from trainables import metric_keys as keys
from trainables.checksums import damage, verify, write_checksum
from trainables.device import Runtime
from trainables.errors import DamagedFile, ProjectError
from trainables.trials import TrialData

STATE_FILE = "state.pt"

# Ray logs a console line for every checkpoint a trial saves; the run's progress lines
# (orchestrator.progress) say what matters.
logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
log = logging.getLogger(__name__)


def report(metrics: dict, state: dict | None = None) -> None:
    """``tune.report`` the metrics and this worker's node id (``metric_keys.NODE``), with
    ``state`` saved as a checkpoint (with its checksum) when given."""
    import ray

    metrics = {**metrics, keys.NODE: ray.get_runtime_context().get_node_id()}
    if state is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, STATE_FILE)
        torch.save(state, path)
        write_checksum(path)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def load_checkpoint(checkpoint: tune.Checkpoint) -> dict:
    """The state saved by ``report`` in ``checkpoint``, on the CPU; ``DamagedFile`` if it is
    not what was saved."""
    with checkpoint.as_directory() as folder:
        path = verify(os.path.join(folder, STATE_FILE))
        return torch.load(path, map_location="cpu", weights_only=True)


def restore(fallback: tune.Checkpoint | None = None) -> dict | None:
    """The state of the trial's latest intact checkpoint (after a retry or ``--resume``), or
    ``None``. A damaged latest checkpoint (a worker killed while the disk was full, a stray
    write) is passed over for the one before it (Tune keeps two), with a line saying so;
    without any intact one the trial starts over rather than failing on every retry.
    ``fallback``: a checkpoint to continue from when Tune gives none (an experiment whose saved
    state could not be restored, see ``newest_intact_checkpoint``)."""
    latest = tune.get_checkpoint() or fallback
    if latest is None:
        return None
    candidates = [latest, *_older_checkpoints(latest)]
    for checkpoint in candidates:
        try:
            state = load_checkpoint(checkpoint)
        except (DamagedFile, OSError) as error:
            log.info(f"{error}; trying an older checkpoint")
            continue
        if checkpoint is not latest:
            log.info(f"continuing from {checkpoint.path} instead")
        return state
    log.info("no intact checkpoint: starting the trial over")
    return None


def final_stage_state(checkpoint: tune.Checkpoint) -> dict | None:
    """What a trial that ``starts_from`` a one-stage trial needs of that trial's final
    checkpoint (the weights and the sampler), or ``None``, with a line saying why, when the
    checkpoint is damaged or not the end of a finished one-stage plan: the trial then trains
    its first stage itself."""
    try:
        state = load_checkpoint(checkpoint)
    except (DamagedFile, OSError) as error:
        log.info(f"{error}: not continuing from it")
        return None
    if int(state["iteration"]) != 0 or int(state["stage_index"]) < 1:
        log.info(f"{checkpoint.path} is not the end of a finished first stage: not continuing "
                 "from it")
        return None
    return {k: state[k] for k in ("attacker", "generator", "stage_index", "iteration")}


def _checkpoint_folders(filesystem: pafs.FileSystem, trial_folder: str) -> list[str]:
    """A trial's checkpoint folders in the storage's file system, newest first (Tune numbers
    them with zero padding)."""
    selector = pafs.FileSelector(trial_folder, allow_not_found=True)
    return sorted((info.path for info in filesystem.get_file_info(selector)
                   if info.type == pafs.FileType.Directory
                   and info.base_name.startswith("checkpoint_")), reverse=True)


def _intact(checkpoint: tune.Checkpoint) -> bool:
    with checkpoint.as_directory() as folder:  # a bucket's checkpoint is fetched first
        return damage(os.path.join(folder, STATE_FILE)) is None


def newest_intact_checkpoint(filesystem: pafs.FileSystem,
                             trial_folder: str) -> tune.Checkpoint | None:
    """The newest checkpoint of a trial (its folder in the run's storage) whose state is
    intact, or ``None``."""
    return next((c for p in _checkpoint_folders(filesystem, trial_folder)
                 if _intact(c := tune.Checkpoint(p, filesystem))), None)


def _older_checkpoints(latest: tune.Checkpoint) -> list[tune.Checkpoint]:
    """The trial's checkpoints older than ``latest``, on the same storage, newest first."""
    parent, name = posixpath.split(latest.path.rstrip("/"))
    return [tune.Checkpoint(p, latest.filesystem)
            for p in _checkpoint_folders(latest.filesystem, parent)
            if posixpath.basename(p) < name]


def trial_dir() -> Path:
    """The trial's working folder, which Tune makes the worker's current folder for each trial
    and copies to the run's storage with every checkpoint (``SyncConfig(sync_artifacts=True)``)
    and at the trial's end, from whichever node the trial runs on.

    Not ``tune.get_context().get_trial_dir()``: for the first trial of a worker process that
    is the driver's staging folder, on the worker's own node, which only the driver's sync
    uploads. On a cluster, every stage record, event file and audio example of such a trial on
    any node but the driver's stayed on that node: its rows of Table 1 were marked failed."""
    if os.environ.get("RAY_CHDIR_TO_TRIAL_DIR", "1") == "0":
        raise ProjectError("RAY_CHDIR_TO_TRIAL_DIR=0 keeps Tune from giving each trial its own "
                           "working folder, which is what reaches the run's storage: unset it")
    return Path.cwd()


def publish(write: Callable[[Path], None], name: str) -> Path:
    """Make ``name`` (a path inside the trial's folder) appear there whole: ``write(path)``
    writes it (a file or a folder) in a private temporary folder, then it is moved in. Tune
    copies the trial's folder to the storage while the trial runs, and a temporary file that
    vanished between its listing and its copy (an atomic write's rename) stopped that copy with
    a traceback."""
    target = trial_dir() / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ser-publish-") as staging:
        written = Path(staging) / Path(name).name
        write(written)
        if target.is_dir():
            shutil.rmtree(target)  # a retried trial's earlier copy
        shutil.move(str(written), str(target))  # a rename where both share a file system
    return target


def split_tensors(data: TrialData, split: str,
                  rt: Runtime) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x (n, 1, T, F), y (n,))`` of a split on the trial's device; the whole split is
    resident there, so no step reads a file or copies from the host."""
    with warnings.catch_warnings():
        # Arrays from Ray's object store are read-only; sharing them saves a copy per trial on
        # CPU, and nothing ever writes to the features.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        x = torch.from_numpy(np.ascontiguousarray(data.x[split])).to(rt.device)
    if rt.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.from_numpy(data.y[split]).to(rt.device)
