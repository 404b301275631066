"""The local Ray instance keeps token authentication on, quietly, with a private token."""

from __future__ import annotations

import pytest

import os
import subprocess
import sys

from tests.helpers import ROOT

# Real Ray or a real subprocess in every test (``pytest -m "not slow"`` leaves them out).
pytestmark = pytest.mark.slow

# Inside the session: the token file's mode, whether the instance refuses a client without the
# token, and whether a task still runs; after it: whether the token is gone.
SCRIPT = """
import os, subprocess, sys
import ray
from orchestrator.ray_session import ray_session
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
