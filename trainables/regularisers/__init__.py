"""Lifelong regularisers as plugins of the stage loop, built by name.

``REGULARISERS`` is the only list of their names; a regulariser's module (and torch) is
imported when it is first built (``trainables.registry``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainables.registry import Entry

if TYPE_CHECKING:
    from trainables.regularisers.base import Regulariser

NONE = "none"  # transfer: no constraint
REGULARISERS: dict[str, Entry] = {
    NONE: Entry("trainables.regularisers.base:Regulariser"),
    "ewc": Entry("trainables.regularisers.ewc:EWC"),
    "online_ewc": Entry("trainables.regularisers.ewc:OnlineEWC"),
    # SI accumulates its importance along the first stage's training path, so a trial with it
    # cannot start from another trial's final weights.
    "si": Entry("trainables.regularisers.si:SynapticIntelligence", needs_path=True),
    "mas": Entry("trainables.regularisers.mas:MemoryAwareSynapses"),
}


def build_regulariser(name: str, strength: float = 0.0, **options: object) -> "Regulariser":
    """``none`` (transfer), ``ewc``, ``online_ewc``, ``si`` or ``mas``; options such as
    ``fisher="per_sample"`` or ``decay=0.9`` go to the regulariser that uses them."""
    if name not in REGULARISERS:
        raise ValueError(f"unknown regulariser {name!r}; allowed: {', '.join(REGULARISERS)}")
    cls = REGULARISERS[name].load()
    return cls() if name == NONE else cls(strength, **options)


def __getattr__(name: str) -> Any:
    """``Regulariser`` and ``StageEnd``, imported (with torch) when first asked for."""
    if name in ("Regulariser", "StageEnd"):
        from trainables.regularisers import base

        return getattr(base, name)
    raise AttributeError(name)


__all__ = ["NONE", "REGULARISERS", "Regulariser", "StageEnd", "build_regulariser"]
