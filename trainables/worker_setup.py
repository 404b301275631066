"""What every Ray worker process of a run sets up before it runs a trial (Ray's
``worker_process_setup_hook``, passed by ``orchestrator.ray_session``)."""

from __future__ import annotations

import sys

from trainables.console import show_messages


def setup() -> None:
    """Everything below, in the order a worker needs it."""
    show_messages()
    quiet_shutdown()


def quiet_shutdown() -> None:
    """Drop the one exception Python can only ignore at a worker's end, and print every other.

    Ray ends an idle worker with SIGTERM, and its handler raises ``SystemExit`` in whatever
    the main thread runs at that moment. When that is a garbage-collection callback, Python
    cannot propagate it: it ignores it and prints "Exception ignored in ... SystemExit: 1" with a
    traceback into the console of a run that went well. Such an ignored ``SystemExit`` changes
    nothing (the worker is being stopped either way), so it is not printed; any other exception
    raised where Python cannot propagate it still is."""
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, SystemExit):
            return
        previous(unraisable)

    sys.unraisablehook = hook
