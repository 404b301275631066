"""The local Ray instance keeps token authentication on, quietly, with a private token."""

from __future__ import annotations

import pytest

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


from tests.helpers import ROOT

# Real Ray or a real subprocess in every test (``pytest -m "not slow"`` leaves them out).
pytestmark = pytest.mark.slow

# Inside the session: the token file's mode, whether the instance refuses a client without the
# token, and whether a task still runs; after it: whether the token is gone.
SCRIPT = """
import os, subprocess, sys
import ray
from orchestrator.ray_session import ray_session
from trainables.console import show_messages
show_messages()  # the project's lines on the console, as the CLI shows them
with ray_session():
    token = os.environ["RAY_AUTH_TOKEN_PATH"]
    print("mode", oct(os.stat(token).st_mode & 0o777), oct(os.stat(os.path.dirname(token)).st_mode & 0o777))
    stranger = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    address = ray.get_runtime_context().gcs_address
    probe = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address={address!r})"],
                           env=stranger, capture_output=True, text=True, timeout=120)
    print("stranger", probe.returncode, "InvalidAuthToken" in probe.stderr)
    print("task", ray.get(ray.remote(lambda: 42).remote()))
    print("worker", ray.get(ray.remote(lambda: sys.unraisablehook.__qualname__).remote()))
print("removed", not os.path.exists(token))
"""


def test_a_local_instance_uses_a_private_token_and_refuses_clients_without_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)  # where Ray would write ~/.ray/auth_token
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("started a local Ray instance: ")
    assert lines[1:] == ["mode 0o600 0o700", "stranger 1 True", "task 42",
                         "worker quiet_shutdown.<locals>.hook", "removed True"]
    assert not (tmp_path / ".ray").exists()
    assert "authentication" not in result.stderr.lower(), result.stderr


HOOKED = """
import gc
from trainables.worker_setup import quiet_shutdown
quiet_shutdown()

class Stopped:
    def __del__(self):
        raise SystemExit(1)  # what Ray's SIGTERM handler raises inside a finaliser

class Broken:
    def __del__(self):
        raise ValueError("a real bug")

Stopped(); Broken(); gc.collect()
print("done")
"""


def test_a_worker_drops_only_the_ignored_exit_of_its_shutdown():
    """An ignored ``SystemExit`` (Ray stopping an idle worker) leaves no traceback; any other
    exception Python can only ignore is still printed."""
    result = subprocess.run([sys.executable, "-c", HOOKED], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout == "done\n"
    assert "SystemExit" not in result.stderr
    assert "ValueError: a real bug" in result.stderr


SLEEPER = """
import time
from orchestrator.ray_session import ray_session
from trainables.console import show_messages
show_messages()
with ray_session():
    print("up", flush=True)
    time.sleep(600)
"""


def _processes() -> dict[int, tuple[int, int]]:
    """Every process's parent and session id, by pid (from /proc)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # state, ppid, pgrp, session
        except OSError:
            continue
        found[int(stat.parent.name)] = (int(fields[1]), int(fields[3]))
    return found


def _session(leader: int) -> list[int]:
    return [pid for pid, (_, session) in _processes().items() if session == leader]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_killed_driver_leaves_no_ray_instance_behind():
    """The local instance runs in a session of its own (a signal to the driver's process group
    must not reach it), so it no longer dies with the driver's group: it is told to stop when
    the driver dies, even by SIGKILL."""
    driver = subprocess.Popen([sys.executable, "-c", SLEEPER], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        assert driver.stdout.readline().startswith("started a local Ray instance")
        assert driver.stdout.readline() == "up\n"
        # The driver's child that leads a session of its own, with Ray's processes in it.
        heads = [pid for pid, (parent, session) in _processes().items()
                 if parent == driver.pid and session == pid]
        assert len(heads) == 1, heads
        head = heads[0]
        assert len(_session(head)) > 2  # ray start, the GCS, the raylet, ...
    finally:
        driver.kill()
        driver.wait()
    deadline = time.time() + 60
    while _session(head) and time.time() < deadline:
        time.sleep(0.5)
    left = _session(head)
    for pid in left:  # not to leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert not left, "the killed driver's Ray instance is still running"
