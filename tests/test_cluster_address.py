"""The grid against a real Ray cluster started with `ray start --head`, joined with --address."""

from __future__ import annotations

import pytest

import pandas as pd

from tests.helpers import TINY, run_cli

# Real Ray or a real subprocess in every test (``pytest -m "not slow"`` leaves them out).
pytestmark = pytest.mark.slow


def test_run_grid_joins_a_running_cluster(tmp_path, ray_head):
    result = run_cli("--config", str(TINY), "--results", str(tmp_path / "r"),
                     "--address", ray_head.address, "--set", "grid.strategies=[single-task]",
                     cwd=tmp_path, timeout=600, env=ray_head.env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"joined the Ray cluster at {ray_head.address}" in result.stderr + result.stdout
    table = pd.read_csv(tmp_path / "r" / "table1.csv")
    assert (table["method"] == "single-task").sum() == 3 and (table["status"] == "ok").all()
