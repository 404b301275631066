"""The grid as a Ray job: ``ray job submit --address http://HEAD:DASHBOARD -- python
run_grid.py ...`` against the session's head (``conftest.ray_head``, token on). The job's
driver runs on the cluster, which sets ``RAY_ADDRESS`` for it: the run joins that cluster
rather than start an instance of its own."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from tests.helpers import RAY, ROOT, TINY, assert_same_records

# Real Ray or a real subprocess in every test (``pytest -m "not slow"`` leaves them out).
pytestmark = pytest.mark.slow


def test_the_grid_runs_as_a_ray_job_on_the_cluster(tmp_path, ray_head, tiny_grid):
    results = tmp_path / "r"
    job = subprocess.run(
        [RAY, "job", "submit", "--address", ray_head.dashboard, "--", sys.executable,
         str(ROOT / "run_grid.py"), "--config", str(TINY), "--results", str(results),
         "--set", "grid.strategies=[single-task]"],
        cwd=tmp_path, env=ray_head.env, capture_output=True, text=True, timeout=600)
    output = job.stdout + job.stderr
    assert job.returncode == 0 and "succeeded" in output, output[-3000:]
    assert "joined the Ray cluster at" in output  # RAY_ADDRESS, as the job set it
    table = pd.read_csv(results / "table1.csv")
    assert (table["method"] == "single-task").sum() == 3 and (table["status"] == "ok").all()
    whole, _ = tiny_grid
    assert_same_records(results, whole)
