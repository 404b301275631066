"""Starting or joining Ray: a local instance sized to the machine, or a cluster's address.

Token authentication. Ray's ports run any code sent to them, and even a port on 127.0.0.1 is
reachable by every other user of a shared machine (a cluster's login node, a lab server), so a
local instance keeps Ray's token authentication on. Its token is made here, fresh for each
instance, in a folder only this user can read (0700, file 0600), and removed when the instance
stops: nothing is written to ``~/.ray``, and Ray has no reason to warn. A cluster joined with
``--address`` keeps the cluster's own setting: set ``RAY_AUTH_MODE=token`` and its token
(``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``) as that cluster requires. An explicit
``RAY_AUTH_MODE``, ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH`` is always respected.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import ray

from orchestrator.interrupt import reclaim_signals

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
            ray.init(address=address, **options)
            where = f"joined the Ray cluster at {address}"
        else:
            stack.enter_context(_private_token())
            # "local": a new instance of our own. Without it ray.init() joins whatever cluster
            # `ray start` last left on this machine (/tmp/ray/ray_current_cluster), another
            # user's or another run's included, and our trials would run, or fail, there.
            ray.init(address="local", include_dashboard=False,
                     _temp_dir=os.environ.get("SER_RAY_TMPDIR"), **options)
            where = "started a local Ray instance"
        stack.callback(ray.shutdown)  # before the token goes: callbacks run last-in, first-out
        reclaim_signals()
        resources = ray.cluster_resources()
        log.info(f"{where}: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs")
        yield
