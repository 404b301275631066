"""Helpers shared by several test modules: the project root, running the real CLI, small audio
files and folders, and tiny hand-checkable models. Fixtures live in ``conftest.py``; plain
functions and classes live here, so that no test module imports another test module.

Importable as ``tests.helpers`` because ``pyproject.toml`` puts the project root on pytest's
``pythonpath``: plain ``pytest`` (the README's command) then collects like ``python -m pytest``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile
import torch
from torch import nn

from trainables.data.settings import SyntheticSpec
from trainables.stage_record import StageRecord

ROOT = Path(__file__).resolve().parent.parent
TINY = Path(__file__).with_name("tiny.yaml")  # every strategy, real Ray, seconds per trial
RAY = str(Path(sys.executable).with_name("ray"))  # the CLI that `pip install` put beside python
TINY_SPEC = SyntheticSpec(speakers=6, utterances_per_emotion=2, min_seconds=0.6, max_seconds=1.2)


def cli_env() -> dict[str, str]:
    """The environment a CLI subprocess runs with: this one, Ray's settings (token
    authentication included) left for the run to choose, as for a user."""
    return dict(os.environ)


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
    """``python run_grid.py ARGS`` in ``cwd``, as a user runs it; output captured as text.
    ``env``: another environment (a cluster's token, for a run that joins it)."""
    return subprocess.run([sys.executable, str(ROOT / "run_grid.py"), *args], cwd=cwd,
                          env=env or cli_env(), capture_output=True, text=True, timeout=timeout)


def assert_same_records(results: Path, whole: Path) -> None:
    """Every trial and stage ``results`` recorded in ``trials.parquet`` has the very numbers
    its namesake recorded in ``whole`` (an undisturbed run of a grid that holds it)."""
    import pandas as pd

    ours = pd.read_parquet(results / "trials.parquet").set_index(["trial_id", "stage"])
    theirs = pd.read_parquet(whole / "trials.parquet").set_index(["trial_id", "stage"])
    metrics = [c for c in ours.columns if "/" in c and not c.endswith(("confusion",
                                                                       "ms_per_utterance"))]
    assert len(metrics) > 20 and set(ours.index) <= set(theirs.index)
    pd.testing.assert_frame_equal(ours[metrics], theirs.loc[ours.index, metrics])


# A part of the grid for the tests that run it again and compare (sharing, a killed driver, a
# signal): the strategies that continue a first stage, and their leaders. Each run of the whole
# grid costs minutes; its trials give the very numbers they give in the whole grid.
# Three trials continue a first stage, on two CPUs: one waits, so a driver killed once one has
# finished leaves one to resume.
PART = ["--set", "grid.strategies=[single-task, transfer, lifelong]"]
PART_TRIALS = 3 + 1 + 2


def assert_same_numbers(results: Path, whole: Path) -> None:
    """Every trial and stage ``results`` recorded has the very numbers its namesake recorded in
    ``whole`` (the uninterrupted run of the whole grid), and the Table-1 rows both hold that do
    not depend on the strategies the grid holds are the same."""
    import pandas as pd

    assert_same_records(results, whole)
    rows = pd.read_csv(results / "table1.csv").set_index(["method", "defences"])
    reference = pd.read_csv(whole / "table1.csv").set_index(["method", "defences"])
    assert len(rows) == 1 + 3 + 3 + 2 + 2  # clean, single-task, noise, transfer, lifelong
    pd.testing.assert_frame_equal(rows, reference.loc[rows.index])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_wav(path: Path, seconds: float = 0.5, sr: int = 16_000, channels: int = 1,
              seed: int = 0) -> Path:
    """A short noise-and-tone WAV file."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
    if channels > 1:
        wave = np.stack([wave] * channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), wave.astype(np.float32), sr)
    return path


def demos_folder(root: Path, speakers: int = 6, per_class: int = 1) -> Path:
    """A DEMoS-named folder of tiny WAVs: alternating genders, every class per speaker."""
    codes = ["rab", "dis", "pau", "col", "gio", "tri", "sor"]
    for s in range(speakers):
        gender = "f" if s % 2 == 0 else "m"
        for c, code in enumerate(codes):
            for i in range(per_class):
                write_wav(root / f"PR_{gender}_{s + 1:02d}_{code}{i:02d}a.wav",
                          seed=s * 100 + c * 10 + i)
    return root


class TinyAttacker(nn.Module):
    """Perturbation in (0, 1) from a linear map: small enough to check by hand."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        self.linear = nn.Linear(size, size)
        self.norm = nn.BatchNorm1d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 4, 4) -> perturbation of the same shape."""
        return torch.sigmoid(self.norm(self.linear(x.flatten(1)))).view_as(x)


def demos_with_neutral(root: Path) -> list[Path]:
    """A DEMoS-named tree and its neutral recordings as DEMoS ships them (a NEU folder, no
    ``PR_``/``NP_`` prefix) and as a prefixed copy might name them; returns the neutral files."""
    demos_folder(root)
    return [write_wav(root / "NEU" / "f_01_neu01a.wav"),
            write_wav(root / "NEU" / "m_02_neu02b.wav"), write_wav(root / "PR_f_03_neu03a.wav")]


def defence(seed: int, classes: int = 3) -> nn.Module:
    """A frozen linear classifier of (B, 1, 4, 4) inputs returning log-probabilities (B, classes)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, classes), nn.LogSoftmax(dim=1)).eval()


def data(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random inputs (n, 1, 4, 4) and labels (n,) in 0..2."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


CLASSES = ("anger", "disgust", "fear", "guilt", "happiness", "sadness", "surprise")


def stage_records(config, metrics_of) -> list[StageRecord]:
    """A stage record for every Table-1 trial of ``config``'s grid and each of its stages, as
    the trainable writes them; ``metrics_of(trial, trained)`` gives a record's metrics (UAR in
    [0, 1]) after training on ``trained``."""
    from orchestrator.grid import attack_trials

    return [StageRecord(trial_id=trial.id, stage=stage, global_step=10 * stage,
                        defences=trained, finished=stage == len(trial.plan.stages),
                        classes=CLASSES, metrics=metrics_of(trial, trained))
            for trial in attack_trials(config) if trial.in_table
            for stage, (_method, trained) in trial.rows().items()]


def trials_frame(config, records: list[StageRecord]):
    """``trials.parquet``'s frame of ``records``, every trial finished."""
    from orchestrator.grid import attack_trials, experiment_of
    from orchestrator.trial_table import trial_table

    specs = attack_trials(config)
    frame, foreign = trial_table(specs, records, {t.id: "ok" for t in specs}, experiment_of)
    assert not foreign, foreign
    return frame


def clean_defences(config, seeds=(0,), dev=lambda seed: 0.8, test=lambda seed: 0.75) -> dict:
    """``defences.json`` of a run: each defence's clean UAR by grid seed."""
    return {d: {str(s): {f"{d}/dev/clean_uar": dev(s), f"{d}/test/clean_uar": test(s)}
                for s in seeds} for d in config.defences}


class RayHead(NamedTuple):
    """A running head: its ``HOST:PORT``, the environment that holds its token, and its
    dashboard's address (``http://HOST:PORT``, where ``ray job submit`` sends jobs) if it runs
    one."""

    address: str
    env: dict[str, str]
    dashboard: str | None


@contextmanager
def started_head(tmp_path_factory, dashboard: bool = False) -> Iterator[RayHead]:
    """A Ray head on 127.0.0.1 (``ray start --head --block``, as a user starts a cluster, with
    token authentication on and a token of its own; with ``dashboard``, its dashboard and so
    Ray's Jobs server, on loopback) for the ``with`` block; yields its address and the
    environment a run that joins it needs (``run_grid.py --address``).

    Its workers inherit this environment (the private cache included), not the driver's. Its
    own temporary folder keeps its address out of ``/tmp/ray/ray_current_cluster``, which every
    plain ``ray.init()`` on the machine (our local runs, other users') would otherwise join. It
    is stopped by ending its own process group: ``ray stop --force`` would also stop every other
    Ray instance on a shared machine."""
    port = free_port()
    dashboard_port = next(p for p in iter(free_port, None) if p != port)
    # Short and outside pytest's folders: Ray's Unix socket paths must stay under 108 bytes.
    temp = Path(tempfile.mkdtemp(prefix="ray-head-"))  # 0700
    token = temp / "auth_token"
    with os.fdopen(os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(secrets.token_hex(32))
    env = {**cli_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    log = tmp_path_factory.mktemp("ray-head") / "ray_start.log"
    console = (["--include-dashboard=true", "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dashboard_port}"] if dashboard
               else ["--include-dashboard=false"])
    with open(log, "w") as out:
        head = subprocess.Popen(
            [RAY, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
             "--node-ip-address=127.0.0.1", *console, "--disable-usage-stats",
             f"--temp-dir={temp}"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 180
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        yield RayHead(f"127.0.0.1:{port}", env,
                      f"http://127.0.0.1:{dashboard_port}" if dashboard else None)
    finally:
        from orchestrator.ray_session import stop_node  # Ray: only where a head runs

        stop_node(head, grace_s=5)  # nothing of a test head needs saving
        shutil.rmtree(temp, ignore_errors=True)
