"""The data side: corpora, speaker splits, the synthetic corpus, audio, features and their cache.

``scan_corpus`` (the public entry point, DESIGN.md, "Contracts") is loaded on first use, so that
importing the light settings (``trainables.data.settings``) does not pull in pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainables.data.scan import scan_corpus

__all__ = ["scan_corpus"]


def __getattr__(name: str):
    if name == "scan_corpus":
        from trainables.data.scan import scan_corpus
        return scan_corpus
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
