"""What the Tune trainables share: reporting with checkpoints, restoring them, data tensors."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from ray import tune

from trainables.device import Runtime

STATE_FILE = "state.pt"

# Ray logs a console line for every checkpoint a trial saves; the run's progress lines
# (orchestrator.progress) say what matters.
logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)


def report(metrics: dict, state: dict | None = None) -> None:
    """``tune.report`` the metrics, with ``state`` saved as a checkpoint when given."""
    if state is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        torch.save(state, os.path.join(folder, STATE_FILE))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def load_checkpoint(checkpoint: tune.Checkpoint) -> dict:
    """The state saved by ``report`` in ``checkpoint``, on the CPU."""
    with checkpoint.as_directory() as folder:
        return torch.load(os.path.join(folder, STATE_FILE), map_location="cpu", weights_only=True)


def restore() -> dict | None:
    """The state of the trial's latest checkpoint (after a retry or ``--resume``), or ``None``."""
    checkpoint = tune.get_checkpoint()
    return None if checkpoint is None else load_checkpoint(checkpoint)


def trial_dir() -> Path:
    """The trial's artifact folder (synced to the run's storage)."""
    return Path(tune.get_context().get_trial_dir())


def split_tensors(data: dict, split: str, rt: Runtime) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x (n, 1, T, F), y (n,))`` of a split on the trial's device; the whole split is
    resident there, so no step reads a file or copies from the host."""
    with warnings.catch_warnings():
        # Arrays from Ray's object store are read-only; sharing them saves a copy per trial on
        # CPU, and nothing ever writes to the features.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        x = torch.from_numpy(np.ascontiguousarray(data["x"][split])).to(rt.device)
    if rt.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.from_numpy(data["y"][split]).to(rt.device)
