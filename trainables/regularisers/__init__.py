"""Lifelong regularisers as plugins of the stage loop, built by name."""

from __future__ import annotations

from trainables.regularisers.base import Regulariser, StageEnd
from trainables.regularisers.ewc import EWC, OnlineEWC
from trainables.regularisers.mas import MemoryAwareSynapses
from trainables.regularisers.si import SynapticIntelligence

REGULARISERS: dict[str, type[Regulariser]] = {
    cls.name: cls for cls in (Regulariser, EWC, OnlineEWC, SynapticIntelligence,
                              MemoryAwareSynapses)
}


def build_regulariser(name: str, strength: float = 0.0, **options: object) -> Regulariser:
    """``none`` (transfer), ``ewc``, ``online_ewc``, ``si`` or ``mas``; options such as
    ``fisher="per_sample"`` or ``decay=0.9`` go to the regulariser that uses them."""
    if name not in REGULARISERS:
        raise ValueError(f"unknown regulariser {name!r}; allowed: {', '.join(REGULARISERS)}")
    if name == "none":
        return Regulariser()
    return REGULARISERS[name](strength, **options)


__all__ = ["REGULARISERS", "Regulariser", "StageEnd", "build_regulariser"]
