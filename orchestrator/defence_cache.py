"""Trained defences cached by a hash of their settings and the data, reused by later runs."""

from __future__ import annotations

import logging
import hashlib
import importlib.util
import inspect
import json
from pathlib import Path

import torch

from trainables.checksums import damage, verify, write_verified
from orchestrator.config import ExperimentConfig

log = logging.getLogger(__name__)


def _source_digest(model: str) -> str:
    """The code that decides a defence's weights: a change to it must not reuse old weights."""
    import trainables.defence_training as training
    from trainables.models import MODELS
    files = [inspect.getsourcefile(training), importlib.util.find_spec(MODELS[model].module).origin]
    return hashlib.sha256(b"".join(Path(f).read_bytes() for f in files)).hexdigest()[:16]


def defence_key(config: ExperimentConfig, name: str, feature_cache: str, seed: int) -> str:
    """Hash of the defence's architecture and code, its training settings, its training
    ``seed``, the performance settings that change numerics, and the feature cache (which names
    the data and split)."""
    spec = config.defences[name]
    payload = {"format": FORMAT, "model": spec.model, "width": spec.width, "seed": seed,
               "code": _source_digest(spec.model),
               "training": vars(config.defence_training), "amp": config.performance.amp,
               "features": Path(feature_cache).name}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
    return f"{name}-{digest.hexdigest()[:16]}"


# What an entry holds; a change of it must not reuse entries of the old one.
FORMAT = 2  # 2: clean UAR under its metric key (cnn4/dev/clean_uar)


class DefenceCache:
    """A folder of ``<key>.pt`` files: ``{"state_dict": ..., "metrics": {...}}``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.pt"

    def has(self, key: str) -> bool:
        """Whether ``key`` is cached intact. A damaged entry (see ``trainables.checksums``) is
        reported and counts as missing, so that its defence is trained again."""
        path = self.path(key)
        if not path.exists():
            return False
        reason = damage(path)
        if reason is not None:
            log.warning(f"defence cache {path} cannot be trusted ({reason}): training that "
                        "defence again")
        return reason is None

    def load(self, key: str) -> dict:
        return torch.load(verify(self.path(key)), map_location="cpu", weights_only=True)

    def store(self, key: str, state_dict: dict, metrics: dict) -> None:
        write_verified(self.path(key), lambda tmp: torch.save(
            {"state_dict": state_dict, "metrics": metrics}, tmp))
