"""A retried or resumed trial continues from its checkpoint: no work is redone.

Training is deterministic, so a trial that ignored its checkpoint and started over would end
with the same numbers; only where it restarts tells the two apart. Each test runs a real Tune
experiment (``orchestrator.launch.run_experiment``, a real local Ray instance) of one tiny trial
whose first attempt crashes right after its first checkpoint, then asserts that the first record
of the next attempt is past that checkpoint's step. Both Tune trainables are covered (attack and
defence), by a retry (``tune.max_failures``) and by ``--resume`` (``Tuner.restore``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from orchestrator.config import ExperimentConfig, load_config
from orchestrator.grid import attack_trials, defence_trials
from orchestrator.launch import Experiment, run_experiment
from orchestrator.storage import Storage
from tests.helpers import TINY
from trainables.models import build
from trainables.trials import TrialData

# Real Ray or a real subprocess in every test (``pytest -m "not slow"`` leaves them out).
pytestmark = pytest.mark.slow

CLASSES = ["anger", "disgust", "fear", "guilt", "happiness", "sadness", "surprise"]


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    """One local Ray instance for the module (starting one costs seconds), as a run starts
    it: token authentication on, with a private token."""
    from orchestrator.ray_session import ray_session

    with ray_session():
        yield


def tiny_config(max_failures: int) -> ExperimentConfig:
    """tests/tiny.yaml with one single-task attack trial (12 steps, a checkpoint every 4), a
    defence of 20 steps (a checkpoint every 10) and ``max_failures`` retries: where a trial
    restarts is what matters here, not what it learns."""
    return load_config(TINY, ["grid.strategies=[single-task]",
                              "attack.first_stage_iterations=12", "attack.checkpoint_every=4",
                              "attack.log_every=4", "defence_training.iterations=20",
                              "defence_training.eval_every=10",
                              f"tune.max_failures={max_failures}"])


def random_data(config: ExperimentConfig, seed: int = 0) -> TrialData:
    """Standardised-looking features of every split, every class in each. What the features
    are does not matter here, only where a trial restarts, so no corpus is computed."""
    rng = np.random.default_rng(seed)
    frames = config.data.features.frames
    data = TrialData(x={}, y={}, classes=CLASSES, test_names=["a", "b"],
                     mean=np.zeros(64, np.float32), std=np.ones(64, np.float32))
    for split, per_class in (("train", 4), ("dev", 2), ("test", 2)):
        y = np.repeat(np.arange(len(CLASSES)), per_class)
        data.x[split] = rng.standard_normal((len(y), 1, frames, 64)).astype(np.float32)
        data.y[split] = y.astype(np.int64)
    return data


def crash_once_after_first_checkpoint(trainable: Callable, module: str, log: Path) -> Callable:
    """``trainable`` whose attempt that starts without a checkpoint raises right after its first
    checkpoint is reported (the worker dying then, as a killed or preempted worker does).
    ``module`` is where ``trainable`` looks up ``report``. Every attempt appends what it reports
    to ``log`` (JSON lines, an ``{"attempt": n}`` line first), so that the test sees where each
    attempt started. Whether a checkpoint exists is asked of Tune directly, not of
    ``tune_io.restore``, which is what the tests check.

    A nested function, so that Ray pickles it by value: the workers need not import ``tests``."""

    def crashing(config: dict, **parameters) -> None:
        import importlib
        import json

        from ray import tune

        target = importlib.import_module(module)
        report = target.report
        # The first attempt: no checkpoint from Tune, nor one handed over after Tune's own
        # record of the experiment was lost.
        first = tune.get_checkpoint() is None and not parameters.get("resume_from")
        with open(log, "a") as handle:
            handle.write(json.dumps({"attempt": "first" if first else "later"}) + "\n")

        def logged_report(metrics: dict, state: dict | None = None) -> None:
            with open(log, "a") as handle:
                handle.write(json.dumps(metrics) + "\n")
            report(metrics, state)
            if first and state is not None:
                raise RuntimeError("injected crash after the first checkpoint")

        target.report = logged_report
        try:
            trainable(config, **parameters)
        finally:
            target.report = report

    return crashing


def reports(log: Path) -> list[dict]:
    """What every attempt reported, in order, each attempt's ``{"attempt": ...}`` line first."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def first_record_after_the_crash(reported: list[dict], step: str) -> tuple[dict, dict]:
    """(the checkpointed record the first attempt crashed after, the next attempt's first)."""
    starts = [i for i, r in enumerate(reported) if "attempt" in r]
    assert len(starts) == 2 and reported[0] == {"attempt": "first"}, \
        f"expected one crash and one more attempt, got {[reported[i] for i in starts]}"
    second = starts[1]
    assert reported[second - 1][step] > 0
    return reported[second - 1], reported[second + 1]


def run_trial(kind: str, config: ExperimentConfig, storage: Path, resume: bool = False):
    """Run the one ``kind`` trial (``attack`` or ``defence``) of ``config`` under Tune, its first
    attempt crashing after the first checkpoint; returns (Tune's result, its report log)."""
    import ray

    data = random_data(config)
    log = storage / f"{kind}-reports.jsonl"
    if kind == "attack":
        from trainables.tune_attack import train_attack_trial

        trial = attack_trials(config)[0]
        weights = {name: build(spec.model, num_classes=len(CLASSES), width=spec.width)
                   .state_dict() for name, spec in config.defences.items()}
        function = crash_once_after_first_checkpoint(train_attack_trial,
                                                     "trainables.tune_attack", log)
        parameters = {"data": data, "defences": {trial.seed: ray.put(weights)},
                      "settings": config.trial_settings()}
        resources = config.tune.attack_resources
    else:
        from trainables.tune_defence import train_defence_trial

        trial = defence_trials(config)[0]
        function = crash_once_after_first_checkpoint(train_defence_trial,
                                                     "trainables.tune_defence", log)
        parameters = {"data": data, "settings": config.trial_settings()}
        resources = config.tune.defence_resources
    experiment = Experiment(kind, function, [trial], parameters, resources)
    grid = run_experiment(experiment, config.tune, {}, Storage.at(storage), resume)
    return grid[0], log


# The step counter each trainable records: global_step (attack), iteration (defence).
STEP = {"attack": "global_step", "defence": "iteration"}


@pytest.mark.parametrize("kind", ["attack", "defence"])
def test_a_retried_trial_continues_from_its_checkpoint(ray_instance, tmp_path, kind):
    config = tiny_config(max_failures=1)
    result, log = run_trial(kind, config, tmp_path)
    assert result.error is None, result.error
    reported = reports(log)
    checkpointed, after = first_record_after_the_crash(reported, STEP[kind])
    # Work not redone: the retry's first record is past the checkpoint it restored.
    assert after[STEP[kind]] > checkpointed[STEP[kind]], (checkpointed, after)
    assert reported[-1][STEP[kind]] == (config.attack.first_stage_iterations if kind == "attack"
                                        else config.defence_training.iterations)


def test_a_resumed_run_continues_a_failed_trial_from_its_checkpoint(ray_instance, tmp_path):
    """No retries: the crash fails the trial; ``--resume`` (``run_experiment(resume=True)``, Tune's
    restore of errored trials) finishes it from its checkpoint."""
    config = tiny_config(max_failures=0)
    failed, log = run_trial("attack", config, tmp_path)
    assert failed.error is not None and "injected crash" in str(failed.error)
    resumed, _ = run_trial("attack", config, tmp_path, resume=True)
    assert resumed.error is None, resumed.error
    checkpointed, after = first_record_after_the_crash(reports(log), "global_step")
    assert after["global_step"] > checkpointed["global_step"], (checkpointed, after)


@pytest.mark.parametrize("kind", ["attack", "defence"])
def test_a_resume_whose_tune_state_is_cut_goes_on_from_the_trials_checkpoints(
        ray_instance, tmp_path, kind, capsys):
    """A crash or a full disk can cut Tune's own record of the experiment (which trials ran,
    which finished). --resume then runs the experiment again, each trial from its newest intact
    checkpoint, rather than stopping with a traceback."""
    config = tiny_config(max_failures=0)
    failed, log = run_trial(kind, config, tmp_path)
    assert failed.error is not None
    for state in (tmp_path / kind).glob("experiment_state-*.json"):
        state.write_text(state.read_text()[:100])
    resumed, _ = run_trial(kind, config, tmp_path, resume=True)
    assert resumed.error is None, resumed.error
    assert "cannot be restored" in capsys.readouterr().out
    checkpointed, after = first_record_after_the_crash(reports(log), STEP[kind])
    assert after[STEP[kind]] > checkpointed[STEP[kind]], (checkpointed, after)
