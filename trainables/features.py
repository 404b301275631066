"""``trainables.features.log_mel``, a public name (DESIGN.md, "Contracts"); the feature code lives
in ``trainables.data.features``."""

from trainables.data.features import log_mel

__all__ = ["log_mel"]
