"""Shared fixtures: a private cache, a tiny synthetic corpus. Plain helpers live in helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import TINY_SPEC
from trainables.synthetic import ensure_corpus


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Every test, and every fixture of any scope, caches under this session's temporary folder,
    never in the user's home (a stale cache there would hide changes to the code)."""
    previous = os.environ.get("SER_CACHE_DIR")
    os.environ["SER_CACHE_DIR"] = str(tmp_path_factory.getbasetemp() / "cache")
    yield
    if previous is None:
        os.environ.pop("SER_CACHE_DIR", None)
    else:
        os.environ["SER_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """6 speakers x 7 emotions x 2 utterances of about one second, DEMoS names."""
    return ensure_corpus(tmp_path_factory.mktemp("corpus"), TINY_SPEC)
