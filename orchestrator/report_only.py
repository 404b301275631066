"""``--report-only``: rebuild a run's tables and figures from what it recorded, training nothing.

Imports neither torch nor Ray: a report is pandas, matplotlib and the run's own files.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from orchestrator.lock import RunLock
from orchestrator.reporter import write_report
from orchestrator.run_folder import saved_config, storage_of
from trainables.atomic import write_text_atomically

log = logging.getLogger(__name__)


def _complete_rows(table: Path) -> int:
    """How many rows of a written Table 1 are ``ok`` (0 when there is none)."""
    return int((pd.read_csv(table)["status"] == "ok").sum()) if table.exists() else 0


def report_only(results: Path) -> int:
    """Rebuild every report file of the run in ``results``; returns the exit code. A rebuilt
    Table 1 with fewer complete rows than the one it replaces (records lost or damaged since)
    says so, and the old one is kept as ``table1.previous.csv``."""
    results = results.expanduser().resolve()
    config = saved_config(results)
    # A live run owns its folder's files and records trials as they finish: report it once it
    # has ended (or was interrupted), never from half its records.
    with RunLock(results, busy="--report-only reports a run once it has finished or been "
                               "interrupted; wait for it, or stop it (Ctrl-C) first"):
        previous = results / "table1.csv"
        before = _complete_rows(previous)
        kept = previous.with_name("table1.previous.csv")
        if before:
            write_text_atomically(kept, previous.read_text())
        table = write_report(config, results, storage_of(config, results))
    log.info(table.to_string(index=False))
    after = int((table["status"] == "ok").sum())
    if after < before:
        log.info(f"\nthe rebuilt table1.csv has {after} complete row(s), the one it replaced "
                 f"{before}: some records are missing or damaged (see above); the previous "
                 f"table is kept as {kept}")
    elif before:
        kept.unlink(missing_ok=True)
    return 0
