"""Where things live: the project's configs, the cache, a run's results folder."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "smoke.yaml"


def cache_dir(configured: str | None = None) -> Path:
    """The data cache: the config's, else ``$SER_CACHE_DIR``, else ``~/.cache/ser-lifelong-attacks``."""
    if configured:
        return Path(configured).expanduser()
    if os.environ.get("SER_CACHE_DIR"):
        return Path(os.environ["SER_CACHE_DIR"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "ser-lifelong-attacks"


def resolve_config(path: str | Path) -> Path:
    """A config path as given, or else relative to the project (so ``--config configs/paper.yaml``
    works from any folder, e.g. under ``ray submit``)."""
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    candidate = PROJECT_ROOT / path
    return candidate if candidate.exists() else path
