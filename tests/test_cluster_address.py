"""The grid against a real Ray cluster started with `ray start --head`, joined with --address."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.helpers import TINY, run_cli

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_grid_joins_a_running_cluster(tmp_path):
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    subprocess.run([RAY, "start", "--head", f"--port={port}", "--num-cpus=2",
                    "--node-ip-address=127.0.0.1", "--include-dashboard=false"],
                   check=True, env=env, capture_output=True, timeout=120)
    try:
        result = run_cli("--config", str(TINY), "--results", str(tmp_path / "r"),
                         "--address", f"127.0.0.1:{port}", "--set", "grid.strategies=[single-task]",
                         cwd=tmp_path, timeout=600)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert f"127.0.0.1:{port}" in result.stderr + result.stdout
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
    table = pd.read_csv(tmp_path / "r" / "table1.csv")
    assert (table["method"] == "single-task").sum() == 3 and (table["status"] == "ok").all()
