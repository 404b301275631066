"""Ctrl-C (SIGINT) and SIGTERM (``timeout``, Slurm, cluster schedulers) end a run alike: Tune
saves its experiment state one last time, Ray shuts down, and the command exits with
``128 + signal`` (130, 143) after one line saying how to finish the run with ``--resume``.

Tune's own SIGINT handler would do the saving but then print advice for its Python API
(``Tuner.restore(...)``) and hand back results of trials that never ran; and SIGTERM would kill
the driver without saving anything. So the driver owns both signals for the whole command:
while Tune's loop runs, the first signal asks Tune to stop (through the handler Tune installs
for SIGUSR1, its "stop the run" signal), outside it the signal raises ``Interrupted``
at once, as does a second signal (Tune's own "press Ctrl-C again to skip" behaviour).

A signal to the whole process group (GNU ``timeout``, ``kill -- -PGID``) reaches the driver alone:
the local Ray instance runs in a process group of its own (``orchestrator.ray_session``), so its
GCS lives on while Tune saves. GNU ``timeout`` sends its signal twice, to the driver and then to
its group: the same signal again within ``REPEAT_S`` is that one signal, not a second request.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

# Tune installs no SIGINT handler of its own: the driver's (below) is the one in force.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REPEAT_S = 1.0
# Where Tune logs about a stopped experiment.
TUNE_LOGGERS = ("ray.tune.tune",)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by ``signum``. A ``KeyboardInterrupt``, so that no ``except
    Exception`` on the way up (Tune's, Ray's) mistakes it for a failure and carries on."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 130 for SIGINT, 143 for
        SIGTERM."""
        return 128 + self.signum


class _StopHandler(logging.Filter):
    """The SIGINT and SIGTERM handler, and the record of what was received. Also a filter on
    Tune's logger: once a stop was asked for, Tune's own lines about it ("Stop signal
    received", "Trials did not complete", "Resume experiment with: Tuner.restore(...)") are
    dropped: the driver says it in one line, with the command that resumes this run."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[int] = []
        self.last = 0.0  # when the last signal came (time.monotonic)

    def __call__(self, signum: int, frame) -> None:
        now = time.monotonic()
        if self.received and signum == self.received[-1] and now - self.last < REPEAT_S:
            return  # one signal sent twice (GNU timeout: to the driver, then to its group)
        self.received.append(signum)
        self.last = now
        tune_stop = signal.getsignal(signal.SIGUSR1)
        if len(self.received) == 1 and callable(tune_stop):
            tune_stop(signal.SIGUSR1, frame)  # Tune's loop is running: let it save and stop
            return
        raise Interrupted(self.received[0])

    def raise_if_received(self) -> None:
        if self.received:
            raise Interrupted(self.received[0])

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.received


@contextmanager
def stop_signals() -> Iterator[None]:
    """Own SIGINT and SIGTERM for the ``with`` block (the whole command): a signal raises
    ``Interrupted`` at once outside Tune's loop, and when ``tune_stage`` ends inside it."""
    handler = _StopHandler()
    loggers = [logging.getLogger(name) for name in TUNE_LOGGERS]
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        signal.signal(s, handler)
    for logger in loggers:
        logger.addFilter(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(handler)
        for s, old in previous.items():
            signal.signal(s, old)


def reclaim_signals() -> None:
    """Install the driver's handler again after ``ray.init``, which sets its own SIGTERM handler
    (it exits at once, with a stack dump, leaving nothing saved and no hint to ``--resume``)."""
    handler = signal.getsignal(signal.SIGINT)  # Ray leaves the driver's SIGINT handler alone
    if isinstance(handler, _StopHandler):
        for s in STOP_SIGNALS:
            signal.signal(s, handler)


@contextmanager
def tune_stage() -> Iterator[None]:
    """Around ``Tuner.fit()``. Raises ``Interrupted`` when a stop signal ended the stage, before
    anyone reads its results (those of trials that never started have no config). Tune installs
    its SIGUSR1 handler inside ``fit`` and leaves it behind: restoring the previous one tells the
    handler that there is no Tune loop left to stop."""
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)
    handler = signal.getsignal(signal.SIGINT)  # the signal table is where the handler lives
    if isinstance(handler, _StopHandler):
        handler.raise_if_received()
