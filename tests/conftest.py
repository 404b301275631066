"""Shared fixtures: a private cache, a tiny synthetic corpus, one Ray head for the session.
Plain helpers live in helpers.py."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import TINY, TINY_SPEC, RayHead, run_cli, started_head
from trainables.console import show_messages
from trainables.data.synthetic import ensure_corpus


@pytest.fixture(scope="session", autouse=True)
def _console():
    """The project's messages on the console as the CLI shows them (``capsys`` sees them)."""
    show_messages()


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


@pytest.fixture(scope="session")
def tiny_grid(tmp_path_factory, _private_cache) -> tuple[Path, subprocess.CompletedProcess]:
    """The whole tiny grid (``tests/tiny.yaml``, the baselines included) through the CLI, run
    once for the session: the end-to-end and baseline tests read it, and the tests that run a
    part of it again (interrupted, a killed worker, on two nodes) compare their numbers with it.
    Yields its results folder and the process."""
    folder = tmp_path_factory.mktemp("e2e")
    result = run_cli("--config", str(TINY), "--results", str(folder / "results"), cwd=folder,
                     timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return folder / "results", result


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory, _private_cache) -> Iterator[RayHead]:
    """One Ray head for the whole session (``started_head``), with its dashboard for the Jobs
    server: the tests that join a cluster or submit a job share it."""
    with started_head(tmp_path_factory, dashboard=True) as head:
        yield head
