"""Registries of things built by name (models, regularisers), readable without importing them.

Each entry names where its class lives (``"trainables.models.cnn4:CNN4"``) and is imported on
first use, so the driver checks a config's names against the registry itself in a fraction of
a second, without torch; the registry is the only list of the names.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from trainables.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    """Where a registered class lives (``module:attribute``), and what is known of it without
    importing it."""

    target: str
    role: str = ""  # models: "defence", "attacker" or "perturbation"
    label: str = ""  # a defence's name in tables
    needs_path: bool = False  # regularisers: needs the first stage's training path (SI)

    @property
    def module(self) -> str:
        return self.target.split(":")[0]

    def load(self) -> Any:
        module, attribute = self.target.split(":")
        return getattr(importlib.import_module(module), attribute)


def check_name(key: str, value: str, allowed: list[str]) -> None:
    """``ConfigError`` naming ``key`` and the allowed names unless ``value`` is one of them."""
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not allowed; allowed: {', '.join(allowed)}")
