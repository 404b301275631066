"""Shared fixtures: a private cache, a tiny synthetic corpus, one Ray head for the session.
Plain helpers live in helpers.py."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import NamedTuple
from pathlib import Path

import pytest

from tests.helpers import RAY, TINY, TINY_SPEC, cli_env, free_port, run_cli
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


class RayHead(NamedTuple):
    """A running head: its ``HOST:PORT``, the environment that holds its token, and its
    dashboard's address (``http://HOST:PORT``, where ``ray job submit`` sends jobs)."""

    address: str
    env: dict[str, str]
    dashboard: str


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory, _private_cache) -> Iterator[RayHead]:
    """One Ray head on 127.0.0.1 for the whole session (``ray start --head --block``, as a user
    starts a cluster, with token authentication on and a token of its own, and its dashboard for
    the Jobs server); yields its address and the environment a run that joins it needs
    (``run_grid.py --address``).

    Its workers inherit this environment (the private cache included), not the driver's. Its
    own temporary folder keeps its address out of ``/tmp/ray/ray_current_cluster``, which every
    plain ``ray.init()`` on the machine (our local runs, other users') would otherwise join. It
    is stopped by ending its own process group: ``ray stop --force`` would also stop every other
    Ray instance on a shared machine."""
    port, dashboard = free_port(), free_port()
    # Short and outside pytest's folders: Ray's Unix socket paths must stay under 108 bytes.
    temp = Path(tempfile.mkdtemp(prefix="ray-head-"))  # 0700
    token = temp / "auth_token"
    with os.fdopen(os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(secrets.token_hex(32))
    env = {**cli_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    log = tmp_path_factory.mktemp("ray-head") / "ray_start.log"
    with open(log, "w") as out:
        head = subprocess.Popen(
            [RAY, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
             # The dashboard runs Ray's Jobs server (test_jobs), on loopback only.
             "--node-ip-address=127.0.0.1", "--include-dashboard=true",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
             "--disable-usage-stats", f"--temp-dir={temp}"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 180
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        yield RayHead(f"127.0.0.1:{port}", env, f"http://127.0.0.1:{dashboard}")
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:  # a short grace: nothing of a test head needs saving, and a full one takes 30 s
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        try:  # whatever of its group outlived the head: workers, raylet, GCS
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(temp, ignore_errors=True)
