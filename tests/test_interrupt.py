"""Stopping a run as users do, through the real CLI: Ctrl-C (SIGINT to the terminal's process
group) ends in one line saying how to resume, and ``--resume`` finishes the run. (SIGTERM, what
``timeout`` and Slurm send: test_end_to_end's process-group test.) ``--report-only`` refuses a
folder whose run is still live."""

from __future__ import annotations

import pytest

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from orchestrator.config import config_to_dict, load_config
from orchestrator.lock import RunLock
from tests.helpers import ROOT, TINY, run_cli

# Real Ray or a real subprocess in every test (``pytest -m "not slow"`` leaves them out).
pytestmark = pytest.mark.slow


def _stop_once_the_grid_runs(results: Path, *args: str) -> tuple[int, list[str]]:
    """Run ``run_grid.py`` into ``results`` and, at its first progress line of the attack grid,
    send SIGINT to its process group (Ctrl-C); returns the exit code and every console line."""
    driver = subprocess.Popen([sys.executable, str(ROOT / "run_grid.py"), "--results",
                               str(results), *args], cwd=results.parent, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    lines = []
    for line in driver.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("[attacks") and ": stage " in line:
            os.killpg(driver.pid, signal.SIGINT)
            break
    lines += driver.communicate(timeout=300)[0].splitlines()
    return driver.returncode, lines


def test_ctrl_c_ends_in_one_line_and_resume_finishes_the_run(tmp_path):
    results = tmp_path / "r"
    hint = f"finish it with: python run_grid.py --results {results} --resume"
    # Signals, not the table, are under test here: a part of the grid, so that the run the
    # resume finishes is short.
    code, lines = _stop_once_the_grid_runs(results, "--config", str(TINY), "--set",
                                           "grid.strategies=[single-task, lifelong]", "--set",
                                           "grid.lambdas=[1.0]", "--set",
                                           "attack.first_stage_iterations=40")
    assert code == 130, "\n".join(lines[-30:])
    assert lines[-1] == f"interrupted (SIGINT): {hint}" and "Traceback" not in "\n".join(lines)

    resumed = run_cli("--results", str(results), "--resume", cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert (pd.read_csv(results / "table1.csv")["status"] == "ok").all()


def test_report_only_refuses_a_run_that_is_still_running(tmp_path):
    results = tmp_path / "r"
    results.mkdir()
    (results / "config.yaml").write_text(yaml.safe_dump(config_to_dict(load_config(TINY))))
    with RunLock(results):  # a live run's driver holds it
        report = run_cli("--results", str(results), "--report-only", cwd=tmp_path)
    assert report.returncode == 2, report.stdout + report.stderr
    assert report.stderr.count("\n") == 1 and "--report-only reports a run once" in report.stderr
    assert sorted(p.name for p in results.iterdir()) == [".run.lock", "config.yaml"]


def test_one_signal_sent_twice_at_once_is_one_stop_request(monkeypatch):
    """GNU ``timeout`` signals the driver and then its whole group, the driver included: that
    second copy must not count as a second Ctrl-C, which would skip Tune's last save."""
    from orchestrator import interrupt

    asked = []
    monkeypatch.setattr(signal, "getsignal", lambda s: (lambda *a: asked.append(a))
                        if s == signal.SIGUSR1 else None)
    handler = interrupt._StopHandler()
    handler(signal.SIGTERM, None)
    handler(signal.SIGTERM, None)  # the group's copy, at once
    assert len(asked) == 1 and handler.received == [signal.SIGTERM]
    handler.last -= interrupt.REPEAT_S  # a second signal, later: stop at once
    try:
        handler(signal.SIGTERM, None)
    except interrupt.Interrupted as stop:
        assert stop.exit_code == 143
    else:
        raise AssertionError("a second signal later did not stop the run at once")
