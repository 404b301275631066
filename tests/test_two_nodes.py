"""The grid on a cluster of two nodes on this machine (two raylets on loopback, one CPU each),
joined with --address: trials on both, a storage folder one node cannot see refused before any
trial, and the worker node lost mid-run."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pytest

from orchestrator.grid import CONTINUED_EXPERIMENT
from orchestrator.ray_session import stop_node
from tests.helpers import RAY, ROOT, TINY, assert_same_records, cli_env, free_port, run_cli

# Real Ray or a real subprocess in every test (``pytest -m "not slow"`` leaves them out).
pytestmark = pytest.mark.slow

# Three single-task trials, then two lifelong ones that continue CNN-4's: with one CPU a node,
# each wave runs on both nodes at once.
PART = ["--set", "grid.strategies=[single-task, lifelong]"]


class Cluster(NamedTuple):
    """A head and a worker node: the address to join, the environment holding the cluster's
    token, the worker's ``ray start`` process, its Ray temporary folder, and a folder the
    worker node sees as an empty file system of its own (``None`` where this machine does not
    allow a private mount)."""

    address: str
    env: dict[str, str]
    worker: subprocess.Popen
    worker_temp: Path
    masked: Path | None


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """``command`` in a session of its own (so its whole group can be ended), once its log says
    Ray started."""
    with open(log, "w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    deadline = time.time() + 180
    while "Ray runtime started" not in log.read_text():
        assert process.poll() is None and time.time() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    return process


def _private_mounts_allowed() -> bool:
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, _private_cache) -> Iterator[Cluster]:
    """Started with ``ray start`` as a user starts a cluster, token authentication on. The
    worker node runs in a mount namespace of its own with a tmpfs over ``masked``: to that node
    the folder is another disk, as a head-local path is to a cloud node."""
    temp = Path(tempfile.mkdtemp(prefix="ray-2n-"))  # short: Unix socket paths < 108 bytes
    token = temp / "auth_token"
    with os.fdopen(os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(secrets.token_hex(32))
    env = {**cli_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    logs = tmp_path_factory.mktemp("two-nodes")
    masked = logs / "masked" if _private_mounts_allowed() else None
    port = free_port()
    common = ["--block", "--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    head = _start([RAY, "start", "--head", f"--port={port}", "--include-dashboard=false",
                   f"--temp-dir={temp / 'head'}", *common], logs / "head.log", env)
    worker = None
    try:
        start_worker = [RAY, "start", f"--address=127.0.0.1:{port}",
                        f"--temp-dir={temp / 'worker'}", *common]
        if masked is not None:
            masked.mkdir()
            start_worker = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            f'mount -t tmpfs tmpfs "{masked}" && exec "$@"', "sh",
                            *start_worker]
        worker = _start(start_worker, logs / "worker.log", env)
        yield Cluster(f"127.0.0.1:{port}", env, worker, temp / "worker", masked)
    finally:
        if worker is not None:
            stop_node(worker, grace_s=5)
        stop_node(head, grace_s=5)
        shutil.rmtree(temp, ignore_errors=True)


def _node_id(ray_temp: Path) -> str:
    """The Ray node id of the node whose temporary folder is ``ray_temp`` (its raylet's log)."""
    log = (ray_temp / "session_latest" / "logs" / "raylet.out").read_text()
    return re.search(r"Setting node ID node_id=([0-9a-f]+)", log).group(1)


def _raylet_pid(process: subprocess.Popen) -> int:
    """The raylet among ``process``'s descendants (their ids from /proc, no kill by name)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    pending = [process.pid]
    while pending:
        pid = pending.pop()
        try:
            command = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            command = b""
        if command.endswith(b"/raylet"):
            return pid
        pending += children.get(pid, [])
    raise AssertionError(f"no raylet under process {process.pid}")


def _records(results: Path, experiment: str) -> dict[tuple[str, int], str]:
    """(trial, stage) -> the node that wrote that stage record, of every record so far."""
    found = {}
    for path in (results / "runs" / experiment).glob("*/records/stage-*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):  # being written
            continue
        found[(record["trial_id"], record["stage"])] = record.get("node", "")
    return found


def test_a_storage_folder_a_node_cannot_see_stops_the_run_before_any_trial(cluster, tmp_path):
    if cluster.masked is None:
        pytest.skip("this machine allows no private mount, so every node sees every folder")
    results = cluster.masked / "r"
    result = run_cli("--config", str(TINY), "--results", str(results), "--address",
                     cluster.address, *PART, cwd=tmp_path, timeout=300, env=cluster.env)
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    worker = _node_id(cluster.worker_temp)
    # The node by its address (Ray's choice of interface, whatever --node-ip-address says) and
    # the start of its id.
    assert len(errors) == 1 and re.fullmatch(
        re.escape(f"error: {results / 'runs'} (the trials' storage, tune.storage_path) is not "
                  "shared by every node of this cluster: node ") + r"\S+" + re.escape(
            f" ({worker[:8]}) wrote a file there that this driver cannot read; set "
            "tune.storage_path to a folder that every node mounts at the same path (NFS, EFS)"),
        errors[0]), result.stderr[-3000:]
    assert not list((results / "runs").glob("*/*/result.json"))  # no trial started
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.timeout(900)  # run alone, it also makes the reference run of the whole tiny grid
def test_trials_run_on_both_nodes_and_a_lost_node_costs_only_its_trials_progress(
        cluster, tiny_grid, tmp_path):
    """Once a lifelong trial on the worker node has recorded its second stage (and saved the
    checkpoint after it), that node's raylet is killed. The trial is retried on the head from
    that checkpoint, not from the start: its first two stage records keep the worker's node id,
    the third has the head's. Every record has the numbers of the undisturbed run."""
    worker = _node_id(cluster.worker_temp)
    results = tmp_path / "r"
    driver = subprocess.Popen(
        [sys.executable, str(ROOT / "run_grid.py"), "--config", str(TINY), "--results", str(results),
         "--address", cluster.address, *PART],
        cwd=tmp_path, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    killed = None
    try:
        deadline = time.time() + 600
        while killed is None and time.time() < deadline and driver.poll() is None:
            for (trial, stage), node in _records(results, CONTINUED_EXPERIMENT).items():
                if stage == 2 and node == worker:
                    os.kill(_raylet_pid(cluster.worker), signal.SIGKILL)
                    killed = trial
            time.sleep(0.2)
        output, _ = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert killed is not None, "no lifelong trial recorded its second stage on the worker node"
    assert driver.returncode == 0, output[-3000:]
    trials = pd.read_parquet(results / "trials.parquet")
    assert trials["node"].nunique() == 2, trials["node"].tolist()
    nodes = trials[trials["trial_id"] == killed].set_index("stage")["node"]
    assert nodes[1] == nodes[2] == worker and nodes[3] != worker, nodes.to_dict()
    assert_same_records(results, tiny_grid[0])
    table = pd.read_csv(results / "table1.csv")
    assert (table["status"] == "ok").all()
    # One line says which node was lost and which trial goes on where; not Ray's log dump.
    lost = [line for line in output.splitlines() if f"({worker[:8]})" in line and "lost" in line]
    assert len(lost) == 1 and killed in lost[0], output[-3000:]
