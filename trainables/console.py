"""What the project says on the console: its ``logging`` records, shown as plain lines.

The driver (``orchestrator.cli``) and every Ray worker of a run (``trainables.worker_setup``)
show the records of the ``orchestrator`` and ``trainables`` loggers without decoration: INFO on
standard output, warnings and errors on standard error, as the command's own lines. Ray's and
Tune's loggers keep their own handlers.
"""

from __future__ import annotations

import logging
import sys

PROJECT_LOGGERS = ("orchestrator", "trainables")


class _Console(logging.Handler):
    """Writes each record's message to the standard stream in force when it is emitted (not
    the one at set-up), so that a redirected ``sys.stdout`` (pytest's capture) sees it."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        try:
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001  (logging's own rule: never raise from a handler)
            self.handleError(record)


def show_messages() -> None:
    """Show the project's INFO and louder records on the console, once per process."""
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, _Console) for h in logger.handlers):
            handler = _Console()
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
