"""Starting or joining Ray: a local instance sized to the machine, or a cluster's address.

Token authentication. Ray's ports run any code sent to them, and even a port on 127.0.0.1 is
reachable by every other user of a shared machine (a cluster's login node, a lab server), so a
local instance keeps Ray's token authentication on. Its token is made here, fresh for each
instance, in a folder only this user can read (0700, file 0600), and removed when the instance
stops: nothing is written to ``~/.ray``, and Ray has no reason to warn. A cluster joined with
``--address`` keeps the cluster's own setting: set ``RAY_AUTH_MODE=token`` and its token
(``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``) as that cluster requires. An explicit
``RAY_AUTH_MODE``, ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH`` is always respected.

A process group of its own. ``ray.init()`` would start the local instance's processes (GCS,
raylet, ...) in the driver's process group, so a signal to the whole group (what GNU ``timeout``,
``kill -- -PGID`` and many schedulers send) stopped the GCS before the driver could save Tune's
state: the driver then waited 60 s for it and was ended by Ray. So the local instance is a
``ray start --head --block`` of its own session (as a user starts a cluster), which the driver
joins by address and stops when the run ends; it is told to stop too when the driver dies
(``PR_SET_PDEATHSIG`` on Linux), so that a killed driver leaves no Ray instance behind.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import ray

from orchestrator.interrupt import reclaim_signals
from trainables.errors import ProjectError

log = logging.getLogger(__name__)

AUTH_MODE, TOKEN, TOKEN_PATH = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
# Run in every worker of this run before its first trial (see trainables/worker_setup.py).
WORKER_SETUP = "trainables.worker_setup.setup"


@contextmanager
def _private_token() -> Iterator[Path | None]:
    """Token authentication for a new local instance with a fresh token readable by this user
    only; yields the token file (``None`` where the environment already decides)."""
    if os.environ.get(AUTH_MODE) or os.environ.get(TOKEN) or os.environ.get(TOKEN_PATH):
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="ser-ray-auth-"))  # mode 0700
    token = folder / "auth_token"
    # Created with 0600 from the start, never briefly readable by others.
    with os.fdopen(os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(secrets.token_hex(32))
    # Every process Ray starts inherits this environment.
    os.environ[AUTH_MODE], os.environ[TOKEN_PATH] = "token", str(token)
    _reload_auth_settings()
    try:
        yield token
    finally:
        os.environ.pop(AUTH_MODE, None)
        os.environ.pop(TOKEN_PATH, None)
        _reload_auth_settings()
        shutil.rmtree(folder, ignore_errors=True)


def _reload_auth_settings() -> None:
    """Make this process see the environment's auth settings: Ray read them when it was
    imported. (What Ray's own ``_enable_token_auth`` does; there is no public call.)"""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


# Seconds a local instance may take to start, and to stop before what is left of it is killed.
START_TIMEOUT_S, STOP_TIMEOUT_S = 180, 30
# Runs ``ray start`` (argv[2:]) with a SIGTERM for it when its parent, the driver (argv[1]),
# dies: set before exec, kept through it. Not from ``preexec_fn``: that runs Python between
# fork and exec, unsafe in a driver that has threads.
_STOP_WITH_PARENT = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
except AttributeError:
    pass  # not Linux: the driver stops the instance when the run ends, however it ends
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)  # the driver died before the line above
os.execv(sys.executable, [sys.executable, "-m", "ray.scripts.scripts", *sys.argv[2:]])
"""


@contextmanager
def _local_head() -> Iterator[str]:
    """A local Ray instance in a session and process group of its own, for the ``with`` block;
    yields its GCS address. Its temporary folder (Ray's sockets, logs and spilled objects, and
    the address this driver joins) keeps its address out of ``/tmp/ray/ray_current_cluster``,
    which every plain ``ray.init()`` on the machine would join. Ray makes that folder writable
    by everyone; it sits in a private one (0700), so that no other user can reach into it, and
    is removed when the instance stops."""
    folder = Path(tempfile.mkdtemp(prefix="ser-ray-", dir=os.environ.get("SER_RAY_TMPDIR")))
    start_log, temp = folder / "ray_start.log", folder / "ray"
    command = [sys.executable, "-c", _STOP_WITH_PARENT, str(os.getpid()), "start", "--head",
               "--block", "--port=0", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
               "--disable-usage-stats", f"--temp-dir={temp}"]
    # Nothing of a run's instance needs draining when it stops: the trials are saved by then.
    env = {**os.environ, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    head = None
    try:
        with open(start_log, "w") as out:
            head = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        address_file = temp / "ray_current_cluster"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            address = address_file.read_text().strip() if address_file.exists() else ""
            if re.fullmatch(r"\S+:\d+", address):
                break
            if head.poll() is not None or time.monotonic() > deadline:
                lines = [line for line in start_log.read_text().splitlines()
                         if line.strip()]
                raise ProjectError("the local Ray instance did not start (`ray start` "
                                   + ("exited" if head.poll() is not None else
                                      f"took over {START_TIMEOUT_S} s")
                                   + f"): {lines[-1] if lines else 'no output'}")
            time.sleep(0.1)
        yield address
    finally:
        if head is not None:
            stop_node(head)
        shutil.rmtree(folder, ignore_errors=True)


def stop_node(node: subprocess.Popen, grace_s: float = STOP_TIMEOUT_S) -> None:
    """Stop a Ray node that ``ray start --block`` runs in a process group of its own, by its
    ids: never ``ray stop``, which ends every Ray instance on the machine. SIGTERM to ``ray
    start``, which then stops its processes as ``ray stop`` would, ``grace_s`` seconds to do
    so, then SIGKILL to whatever of its group outlived it (workers, agents)."""
    if node.poll() is None:
        node.terminate()
        try:
            node.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(node.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    node.wait()


# What the cluster reports of a lost node: the raylet's last 20 log lines (printed twice) and
# the notice of its missed heartbeats.
_NODE_DEATH = re.compile(r"Raylet is terminated|has been marked dead because the detector")


@contextmanager
def _without_node_death_dumps() -> Iterator[None]:
    """For the ``with`` block, drop the driver's copy of what the cluster reports when a node
    dies (some 45 lines of another process's log on the console); every other error Ray
    reports still prints. The progress line names the node and the trial retried
    (``orchestrator.progress``), and Ray keeps the detail in its logs (the head's
    ``gcs_server.out``, the node's ``raylet.out``). Ray prints these reports from a thread of
    its own straight to stdout, through a module function that is looked up at each call:
    there is no logger to filter, so that function is wrapped."""
    from ray._private import worker

    original = getattr(worker, "print_to_stdstream", None)
    if original is None:  # another Ray: its reports print as they are
        yield
        return

    def print_unless_node_death(data: dict, ignore_prefix: bool) -> None:
        text = "\n".join(map(str, data.get("lines") or []))
        if data.get("pid") == "raylet" and _NODE_DEATH.search(text):
            log.debug(text)
            return
        original(data, ignore_prefix)

    worker.print_to_stdstream = print_unless_node_death
    try:
        yield
    finally:
        worker.print_to_stdstream = original


# Seconds to wait for a cluster's GCS port to answer before saying there is none.
CONNECT_TIMEOUT_S = 5


def _join(address: str, options: dict) -> None:
    """``ray.init`` on the cluster at ``address``, or ``ProjectError`` in one line when none is
    there: Ray itself retries for minutes, logging a warning every few seconds."""
    fix = ("start one (`ray start --head`) or give the address `ray start` printed, or drop "
           "--address (and unset RAY_ADDRESS) to run on this machine")
    host, _, port = address.rpartition(":")
    if host and port.isdigit() and "://" not in address:
        try:
            socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as error:
            raise ProjectError(f"no Ray cluster at {address} ({error.strerror or error}): "
                               f"{fix}") from None
    try:
        ray.init(address=address, **options)
    except ConnectionError as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        raise ProjectError(f"no Ray cluster at {address} ({lines[0] if lines else 'no answer'})"
                           f": {fix}") from None


@contextmanager
def ray_session(address: str | None = None) -> Iterator[None]:
    """Join ``address`` (``auto`` or ``HOST:PORT``) or start a local Ray instance with every
    core and GPU of this machine (dashboard off, token authentication on) for the ``with``
    block; Ray is shut down when the block ends, however it ends."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if ray.is_initialized():  # a caller's own session (a notebook, a test): theirs to end
        yield
        return
    # Ray's INFO lines ("Started a local Ray instance", Tune's "Wrote the latest version of all
    # result files ...") repeat what the run's own lines say; its warnings and errors still show.
    options = {"log_to_driver": True, "logging_level": logging.WARNING,
               "runtime_env": {"worker_process_setup_hook": WORKER_SETUP}}
    with ExitStack() as stack:
        if address:
            _join(address, options)
            where = f"joined the Ray cluster at {address}"
        else:
            stack.enter_context(_private_token())  # before the instance: its processes read it
            # A new instance of our own, joined by its address: a plain ray.init() would join
            # whatever cluster `ray start` last left on this machine, another user's included.
            ray.init(address=stack.enter_context(_local_head()), **options)
            where = "started a local Ray instance"
        stack.callback(ray.shutdown)  # before the token goes: callbacks run last-in, first-out
        stack.enter_context(_without_node_death_dumps())
        reclaim_signals()
        resources = ray.cluster_resources()
        log.info(f"{where}: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs")
        yield
