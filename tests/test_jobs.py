"""The grid as a Ray job: ``ray job submit --address http://HEAD:DASHBOARD -- python
run_grid.py ...`` against a head started here with its dashboard (``conftest.started_head``,
token on), which runs Ray's Jobs server. The job's driver runs on the cluster, which sets
``RAY_ADDRESS`` for it: the run joins that cluster rather than start an instance of its own.

A head of its own: the session's shared head runs no dashboard, whose processes would take a
share of this 2-core machine's time for the whole session."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pandas as pd
import pytest

from tests.helpers import RAY, ROOT, TINY, RayHead, assert_same_records, started_head

# Real Ray or a real subprocess in every test (``pytest -m "not slow"`` leaves them out).
pytestmark = pytest.mark.slow


@pytest.fixture
def jobs_head(tmp_path_factory, _private_cache) -> Iterator[RayHead]:
    with started_head(tmp_path_factory, dashboard=True) as head:
        yield head


def test_the_grid_runs_as_a_ray_job_on_the_cluster(tmp_path, jobs_head, tiny_grid):
    ray_head = jobs_head
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
