"""Checks that settings dataclasses run on themselves in ``__post_init__``.

A settings class names its own fields in its messages (``width: must be > 0``); the config
loader (``orchestrator.typed_load``) adds where the class sits (``defences.cnn4.width: ...``).
"""

from __future__ import annotations

import math

from trainables.errors import ConfigError


def positive(key: str, value: float, allow_zero: bool = False) -> None:
    """Raise ``ConfigError`` unless ``value`` is finite and > 0 (>= 0 with ``allow_zero``)."""
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def within(key: str, value: float, low: float, high: float, *, open_low: bool = False,
           open_high: bool = False) -> None:
    """Raise ``ConfigError`` unless ``value`` lies between ``low`` and ``high`` (each end
    included unless it is open)."""
    above = low < value if open_low else low <= value
    below = value < high if open_high else value <= high
    if not (above and below):
        raise ConfigError(f"{key}: must be in {'(' if open_low else '['}{low}, {high}"
                          f"{')' if open_high else ']'}, got {value}")
