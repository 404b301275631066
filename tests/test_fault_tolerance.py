"""Faults with real processes and real Ray: a killed trial worker, a trial that keeps failing,
a second run on the same folder, an unwritable results folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.grid import CONTINUED_EXPERIMENT
from orchestrator.lock import RunLock
from tests.helpers import ROOT, TINY, cli_env, run_cli

# Real Ray or a real subprocess in every test (``pytest -m "not slow"`` leaves them out).
pytestmark = pytest.mark.slow

# One trial of the tiny grid (its first stage trained here, not taken from single-task CNN-4:
# the same numbers, see test_end_to_end's sharing test), checkpointed often.
ONE_TRIAL = ["--set", "grid.strategies=[lifelong]", "--set", "grid.lambdas=[10000.0]",
             "--set", "attack.checkpoint_every=20"]
ONE_TRIAL_ID = "lifelong-clockwise-lam1e4-seed0"
# For the tests of a mechanism (a failure, a full disk), not of the numbers: short attacks (and,
# where a test trains its own, short defences) cost a minute or two less each on 2 cores.
SHORT = ["--set", "attack.first_stage_iterations=30", "--set", "attack.later_stage_iterations=15"]
METRICS = ["cnn4/test/adv_uar", "vgg16/test/adv_uar", "resnet50/dev/adv_uar",
           "perturbation/test/snr_db"]


def _checkpoint_pid(result_file: Path, min_step: int) -> int | None:
    if not result_file.exists():
        return None
    for line in result_file.read_text().splitlines():
        try:
            result = json.loads(line)
        except ValueError:
            continue
        if result.get("kind") == "checkpoint" and result.get("global_step", 0) >= min_step:
            return int(result["pid"])
    return None


def test_a_killed_trial_worker_is_retried_from_its_checkpoint_with_the_same_result(
        tmp_path, tiny_grid, ray_head):
    """The run joins the session's Ray head (the trial worker is the head's child, as on a
    cluster); the trial's undisturbed numbers are those of the tiny grid's run."""
    driver = subprocess.Popen([sys.executable, str(ROOT / "run_grid.py"), "--config", str(TINY),
                               "--results", str(tmp_path / "b"), *ONE_TRIAL,
                               "--address", ray_head.address], cwd=tmp_path,
                              env=ray_head.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    result_file = tmp_path / "b" / "runs" / "attacks" / ONE_TRIAL_ID / "result.json"
    deadline = time.time() + 300
    pid = None
    while pid is None and time.time() < deadline and driver.poll() is None:
        pid = _checkpoint_pid(result_file, min_step=20)
        time.sleep(0.05)
    assert pid is not None, "no checkpoint appeared"
    os.kill(pid, signal.SIGKILL)
    output, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, output[-3000:]

    restarted = [json.loads(line) for line in result_file.read_text().splitlines()]
    assert len({r["pid"] for r in restarted}) == 2  # a second worker finished the trial
    whole, _ = tiny_grid
    first = pd.read_parquet(whole / "trials.parquet")
    first = first[first["trial_id"] == ONE_TRIAL_ID].reset_index(drop=True)
    second = pd.read_parquet(tmp_path / "b" / "trials.parquet")
    assert len(first) == 3
    pd.testing.assert_frame_equal(first[METRICS + ["stage"]], second[METRICS + ["stage"]])


def test_a_trial_that_keeps_failing_is_marked_and_the_rest_completes(tmp_path):
    """The failing trial is single-task CNN-4, whose final weights the clockwise transfer and
    lifelong trials would start from: they train their first stage themselves instead. The
    failure is injected by a test-only wrapper of the trainable (``tests/failing_run.py``)."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.failing_run", "single-task-cnn4-seed0", "--config",
         str(TINY), "--results", str(tmp_path / "r"), "--set", "tune.max_failures=1", *SHORT,
         "--set", "grid.strategies=[single-task, transfer, lifelong]"],
        cwd=tmp_path, env={**cli_env(), "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=600)
    assert result.returncode == 1
    assert "single-task-cnn4-seed0" in result.stdout and "--resume" in result.stdout
    table = pd.read_csv(tmp_path / "r" / "table1.csv")
    # Its row and the noise-control row under it (from the same trial) are the failed ones.
    failed = table["method"].isin(["single-task", "noise"]) & (table["defences"] == "CNN-4")
    assert table[failed]["status"].tolist() == ["failed"] * 2
    assert table[failed]["cnn4_test"].isna().all()
    assert (table[~failed]["status"] == "ok").all() and table[~failed]["cnn4_test"].notna().all()
    trials = pd.read_parquet(tmp_path / "r" / "trials.parquet")
    row = trials[trials["trial_id"] == "single-task-cnn4-seed0"].iloc[0]
    assert row["status"] == "failed" and "injected" in row["error"]
    follower = tmp_path / "r" / "runs" / CONTINUED_EXPERIMENT / "lifelong-clockwise-lam1e0-seed0"
    first = json.loads((follower / "result.json").read_text().splitlines()[0])
    assert first["kind"] == "train" and first["stage"] == 1  # it trained stage 1 itself
    assert "left no usable final state" in result.stdout


def test_a_second_run_on_a_folder_in_use_is_refused(tmp_path):
    results = tmp_path / "r"
    with RunLock(results):
        second = run_cli("--config", str(TINY), "--results", str(results), cwd=tmp_path)
    assert second.returncode == 2
    assert "another run is using" in second.stderr and "Traceback" not in second.stderr


def test_an_unwritable_results_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_cli("--config", str(TINY), "--results", str(blocker / "results"), cwd=tmp_path)
    assert result.returncode == 2
    assert "check that the folder is writable" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def small_filesystem(tmp_path) -> Iterator[Path]:
    """A 3 MB tmpfs, grown to 64 MB by ``remount(folder)``; skipped where mounting is not
    allowed (it needs root or CAP_SYS_ADMIN)."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_full_disk_ends_in_one_line_and_resume_finishes_after_space_is_freed(
        tmp_path, small_filesystem, ray_head):
    """The defences' checkpoints alone need twice the 3 MB: a private cache makes sure they are
    trained here. Both runs join the session's Ray head, which spares two local starts."""
    results = small_filesystem / "r"
    env = {**ray_head.env, "SER_CACHE_DIR": str(tmp_path / "cache")}
    args = ["--results", str(results), "--address", ray_head.address]
    full = run_cli("--config", str(TINY), *args, "--set", "grid.strategies=[single-task]",
                   *SHORT, "--set", "defence_training.iterations=30",
                   "--set", "defence_training.eval_every=10", cwd=tmp_path, timeout=600, env=env)
    assert full.returncode == 2, full.stdout[-3000:] + full.stderr[-3000:]
    errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {results / 'runs'}: no space left on its device (or quota): "
                      f"free some space, then finish it with: python run_grid.py --results "
                      f"{results} --resume --address {ray_head.address}"]
    assert "Traceback" not in full.stdout + full.stderr
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_filesystem)], check=True)
    resumed = run_cli(*args, "--resume", cwd=tmp_path, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    table = pd.read_csv(results / "table1.csv")
    assert (table["status"] == "ok").all() and table["cnn4_test"].notna().all()
