"""A run whose storage is a bucket (``tune.storage_path: s3://...``), against a real
S3-compatible HTTP server on loopback (moto's standalone server, started here), with
credentials and an endpoint override as a user of an S3-compatible store sets them.

The tiny grid's part that continues a first stage runs on the bucket, is killed twice without
saving (SIGKILL) and is finished with ``--resume``; its numbers must be those of the session's
whole tiny grid on local disk, and ``--report-only`` must rebuild the same Table 1 from the
bucket alone.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from orchestrator.grid import ATTACK_EXPERIMENT, CONTINUED_EXPERIMENT
from orchestrator.run_identity import RUN_FILE
from orchestrator.storage import Storage
from tests.helpers import (PART, PART_TRIALS, ROOT, TINY, assert_same_numbers, cli_env,
                           free_port, run_cli)

pytestmark = pytest.mark.slow
BUCKET = "ser-runs"
MOTO = str(Path(sys.executable).with_name("moto_server"))


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[dict[str, str]]:
    """moto's S3 server on 127.0.0.1 with one bucket; yields the environment a run needs to
    reach it (credentials, region, ``AWS_ENDPOINT_URL``). Stopped by its process group."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "w") as out:
        server = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(port)], stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 60
        while True:
            assert server.poll() is None and time.time() < deadline, log.read_text()[-2000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        env = {**cli_env(), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
        pafs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1",
                          endpoint_override=env["AWS_ENDPOINT_URL"],
                          allow_bucket_creation=True).create_dir(BUCKET)
        yield env
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _bucket(env: dict[str, str], results: Path) -> Storage:
    """The storage of the run in ``results``, reached with the server's settings."""
    filesystem = pafs.S3FileSystem(access_key=env["AWS_ACCESS_KEY_ID"],
                                   secret_key=env["AWS_SECRET_ACCESS_KEY"], region="us-east-1",
                                   endpoint_override=env["AWS_ENDPOINT_URL"])
    return Storage(filesystem, f"{BUCKET}/runs/{results.name}",
                   f"s3://{BUCKET}/runs/{results.name}")


def _finished_trials(storage: Storage,
                     waves=(ATTACK_EXPERIMENT, CONTINUED_EXPERIMENT)) -> dict[str, str]:
    """result.json text of every attack trial that Tune's saved experiment state in ``storage``
    marks as finished (TERMINATED): what a resumed run restores as done."""
    done = {}
    for wave in waves:
        states = storage.glob(wave, "experiment_state-*.json")
        if not states:
            continue
        try:
            trials = json.loads(storage.read_text(states[-1]))["trial_data"]
        except (ValueError, OSError):  # caught while Tune rewrites it
            continue
        for state, _ in trials:
            state = json.loads(state) if isinstance(state, str) else state
            if state["status"] == "TERMINATED":
                name = state["relative_logdir"]
                done[name] = storage.read_text(wave, name, "result.json")
    return done


def _kill_once_finished(storage: Storage, env: dict[str, str], wave: str, wanted: int,
                        *args: str) -> dict[str, str]:
    """Run ``run_grid.py *args``, SIGKILL its process group once ``wanted`` trials of ``wave``
    are finished in ``storage``, and return what the killed run left finished."""
    driver = subprocess.Popen([sys.executable, str(ROOT / "run_grid.py"), *args],
                              cwd=Path(args[args.index("--results") + 1]).parent, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.time() + 600
        while len(_finished_trials(storage, [wave])) < wanted:
            assert driver.poll() is None and time.time() < deadline, "ended before the kill"
            time.sleep(0.5)
    finally:
        # The driver and whatever it left in its group (its Ray instance, in a session of its
        # own, stops by itself: see test_ray_session)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    return _finished_trials(storage)


def test_a_run_on_a_bucket_killed_twice_resumes_without_redoing_finished_trials(tiny_grid, s3,
                                                                               tmp_path):
    """The tiny grid's part that continues a first stage, on the bucket: SIGKILLed once two
    trials of the first wave finished, then its --resume once a trial that continues their
    weights finished; a last --resume completes the grid, leaves every trial finished before
    either kill untouched, and gives the numbers of the session's whole tiny grid on local
    disk. (The one test of a driver killed without saving: a local storage takes the same path
    through pyarrow, and test_interrupt resumes a local run.)"""
    results = tmp_path / "results"
    storage = _bucket(s3, results)
    first = _kill_once_finished(storage, s3, ATTACK_EXPERIMENT, 2, "--results", str(results),
                                "--config", str(TINY), *PART,
                                "--set", f"tune.storage_path=s3://{BUCKET}/runs")
    assert 2 <= len(first) < PART_TRIALS
    second = _kill_once_finished(storage, s3, CONTINUED_EXPERIMENT, 1, "--results",
                                 str(results), "--resume")
    assert len(first) < len(second) < PART_TRIALS
    assert not (results / "runs").exists()  # nothing of the trials on the local disk
    resumed = run_cli("--results", str(results), "--resume", cwd=tmp_path, env=s3, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"tensorboard --logdir s3://{BUCKET}/runs/results" in resumed.stdout
    after = _finished_trials(storage)
    assert len(after) == PART_TRIALS
    for trial_id, text in second.items():
        assert after[trial_id] == text, f"{trial_id} ran again"
    assert all(second[trial_id] == text for trial_id, text in first.items())
    whole, _ = tiny_grid
    assert_same_numbers(results, whole)

    table = (results / "table1.csv").read_text()
    (results / "table1.csv").unlink()
    rebuilt = run_cli("--results", str(results), "--report-only", cwd=tmp_path, env=s3)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert (results / "table1.csv").read_text() == table

    # The bucket's run id is another run's: --resume would unpickle objects this run did not
    # write, and refuses before it reads any.
    storage.filesystem.delete_file(storage.path(RUN_FILE))
    with storage.filesystem.open_output_stream(storage.path(RUN_FILE)) as stream:
        stream.write(json.dumps({"run_id": "0" * 32}).encode())
    refused = run_cli("--results", str(results), "--resume", cwd=tmp_path, env=s3)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "which this run did not write" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("case", ["no such bucket", "no server"])
def test_a_bucket_that_cannot_be_used_stops_the_run_in_one_line(s3, tmp_path, case):
    env = dict(s3)
    location = f"s3://{BUCKET}-missing/runs"
    if case == "no server":
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
        location = f"s3://{BUCKET}/runs"
    started = time.time()
    result = run_cli("--config", str(TINY), "--results", str(tmp_path / "r"), "--set",
                     f"tune.storage_path={location}", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    line, = result.stderr.strip().splitlines()
    assert f"{location}/r (the run's storage, tune.storage_path) cannot be used" in line
    assert ("NO_SUCH_BUCKET" if case == "no such bucket" else "connect") in line
    assert time.time() - started < 60
    assert not (tmp_path / "r" / "config.yaml").exists()  # no run left to resume
