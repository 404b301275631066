"""One run per results folder: an advisory lock held for the run's lifetime.

``fcntl.flock`` is released by the kernel when the process dies, even by SIGKILL, so a dead
run never blocks ``--resume``, while a live one always stops a second run on the same folder.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from trainables.errors import ProjectError


class RunLock:
    """Held by a run (and by ``--report-only`` while it writes the report) on its results
    folder; ``busy`` is the advice given when a live process already holds it."""

    def __init__(self, results: Path,
                 busy: str = "wait for it, or choose another --results folder") -> None:
        self.path = results / ".run.lock"
        self.busy = busy
        self.handle = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.handle.close()
            raise ProjectError(f"another run is using {self.path.parent} ({holder}); "
                               f"{self.busy}") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        self.handle.flush()
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()
