"""The grid as a Ray job: ``ray job submit --address http://HEAD:DASHBOARD -- python
run_grid.py ...`` against the session's head (``conftest.ray_head``: ``ray start`` with its
dashboard, which runs Ray's Jobs server, token on). The job's driver runs on the cluster, which
sets ``RAY_ADDRESS`` for it: the run joins that cluster rather than start an instance of its
own."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import RAY, ROOT, TINY, RayHead, assert_same_records

# Real Ray or a real subprocess in every test (``pytest -m "not slow"`` leaves them out).
pytestmark = pytest.mark.slow


def submit(head: RayHead, *entrypoint: str, cwd: Path) -> subprocess.CompletedProcess:
    """``ray job submit`` to ``head``, as a user runs it. A head's Jobs server answers "No
    available agent to submit job, please try again later" until its node's agent has
    registered, seconds after ``ray start``: tried again then, as it asks."""
    deadline = time.monotonic() + 90
    while True:
        job = subprocess.run([RAY, "job", "submit", "--address", head.dashboard, "--",
                              *entrypoint], cwd=cwd, env=head.env, capture_output=True,
                             text=True, timeout=600)
        if "No available agent" not in job.stdout + job.stderr or time.monotonic() > deadline:
            return job
        time.sleep(2)


def test_the_grid_runs_as_a_ray_job_on_the_cluster(tmp_path, ray_head, tiny_grid):
    results = tmp_path / "r"
    job = submit(ray_head, sys.executable, str(ROOT / "run_grid.py"), "--config", str(TINY),
                 "--results", str(results), "--set", "grid.strategies=[single-task]",
                 cwd=tmp_path)
    output = job.stdout + job.stderr
    assert job.returncode == 0 and "succeeded" in output, output[-3000:]
    assert "joined the Ray cluster at" in output  # RAY_ADDRESS, as the job set it
    table = pd.read_csv(results / "table1.csv")
    assert (table["method"] == "single-task").sum() == 3 and (table["status"] == "ok").all()
    whole, _ = tiny_grid
    assert_same_records(results, whole)
