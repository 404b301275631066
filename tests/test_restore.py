"""A retried or resumed trial continues from its checkpoint: no work is redone.

Training is deterministic, so a trial that ignored its checkpoint and started over would end
with the same numbers; only where it restarts tells the two apart. Each test runs a real Tune
experiment (``orchestrator.launch.run_stage``, a real local Ray instance) of one tiny trial
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
from orchestrator.launch import run_stage
from orchestrator.records import result_files
from tests.helpers import TINY
from trainables.models import build
from trainables.trials import TrialData

CLASSES = ["anger", "disgust", "fear", "guilt", "happiness", "sadness", "surprise"]


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    """One local Ray instance for the module (starting one costs seconds), as a run starts
    it: token authentication on, with a private token."""
    from orchestrator.ray_session import ray_session

    with ray_session():
        yield


def tiny_config(max_failures: int) -> ExperimentConfig:
    """tests/tiny.yaml with one single-task attack trial (12 steps, a checkpoint every 4) and
    ``max_failures`` retries."""
    return load_config(TINY, ["grid.strategies=[single-task]",
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


def crash_once_after_first_checkpoint(trainable: Callable, module: str) -> Callable:
    """``trainable`` whose attempt that starts without a checkpoint raises right after its first
    checkpoint is reported (the worker dying then, as a killed or preempted worker does).
    ``module`` is where ``trainable`` looks up ``report``. Whether a checkpoint exists is asked
    of Tune directly, not of ``tune_io.restore``, which is what the tests check.

    A nested function, so that Ray pickles it by value: the workers need not import ``tests``."""

    def crashing(config: dict, **parameters) -> None:
        import importlib

        from ray import tune

        target = importlib.import_module(module)
        report = target.report
        # The first attempt: no checkpoint from Tune, nor one handed over after Tune's own
        # record of the experiment was lost.
        if tune.get_checkpoint() is None and not parameters.get("resume_from"):
            def report_then_crash(metrics: dict, state: dict | None = None) -> None:
                report(metrics, state)
                if state is not None:
                    raise RuntimeError("injected crash after the first checkpoint")

            target.report = report_then_crash
        try:
            trainable(config, **parameters)
        finally:
            target.report = report

    return crashing


def records(storage: Path, stage: str, trial_id: str) -> list[dict]:
    """Every result the trial reported, in order, over all its attempts (Tune appends, and the
    log of an experiment run again is kept aside)."""
    lines = [line for f in result_files(storage / stage / trial_id)
             for line in f.read_text().splitlines()]
    return [json.loads(line) for line in lines if line.strip()]


def first_record_after_the_crash(reported: list[dict], step: str) -> tuple[dict, dict]:
    """(the checkpointed record the first attempt crashed after, the next attempt's first).
    A new attempt runs in another worker process or restarts Tune's count of reports since a
    restore: Ray may run a retry in the process that ran the first attempt."""
    starts = [i for i in range(1, len(reported))
              if reported[i]["pid"] != reported[i - 1]["pid"]
              or reported[i]["iterations_since_restore"]
              <= reported[i - 1]["iterations_since_restore"]]
    assert len(starts) == 1, f"expected one crash and one more attempt, got attempts at {starts}"
    second = starts[0]
    assert second > 0 and reported[second - 1][step] > 0
    return reported[second - 1], reported[second]


def run_trial(kind: str, config: ExperimentConfig, storage: Path, resume: bool = False):
    """Run the one ``kind`` trial (``attack`` or ``defence``) of ``config`` under Tune, its first
    attempt crashing after the first checkpoint; returns (Tune's result, its trial id)."""
    data = random_data(config)
    if kind == "attack":
        from trainables.tune_attack import train_attack_trial

        trial = attack_trials(config)[0]
        weights = {name: build(spec.model, num_classes=len(CLASSES), width=spec.width)
                   .state_dict() for name, spec in config.defences.items()}
        function = crash_once_after_first_checkpoint(train_attack_trial,
                                                     "trainables.tune_attack")
        parameters = {"data": data, "defence_weights": {trial.seed: weights},
                      "settings": config.trial_settings()}
        resources = config.tune.attack_resources
    else:
        from trainables.tune_defence import train_defence_trial

        trial = defence_trials(config)[0]
        function = crash_once_after_first_checkpoint(train_defence_trial,
                                                     "trainables.tune_defence")
        parameters = {"data": data, "settings": config.trial_settings()}
        resources = config.tune.defence_resources
    grid = run_stage(kind, function, parameters, [trial], config, storage, resources, resume)
    return grid[0], trial.id


# The step counter each trainable records: global_step (attack), iteration (defence).
STEP = {"attack": "global_step", "defence": "iteration"}


@pytest.mark.parametrize("kind", ["attack", "defence"])
def test_a_retried_trial_continues_from_its_checkpoint(ray_instance, tmp_path, kind):
    config = tiny_config(max_failures=1)
    result, trial_id = run_trial(kind, config, tmp_path)
    assert result.error is None, result.error
    reported = records(tmp_path, kind, trial_id)
    checkpointed, after = first_record_after_the_crash(reported, STEP[kind])
    # Work not redone: the retry's first record is past the checkpoint it restored.
    assert after[STEP[kind]] > checkpointed[STEP[kind]], (checkpointed, after)
    assert reported[-1][STEP[kind]] == (config.attack.first_stage_iterations if kind == "attack"
                                        else config.defence_training.iterations)


def test_a_resumed_run_continues_a_failed_trial_from_its_checkpoint(ray_instance, tmp_path):
    """No retries: the crash fails the trial; ``--resume`` (``run_stage(resume=True)``, Tune's
    restore of errored trials) finishes it from its checkpoint."""
    config = tiny_config(max_failures=0)
    failed, trial_id = run_trial("attack", config, tmp_path)
    assert failed.error is not None and "injected crash" in str(failed.error)
    resumed, _ = run_trial("attack", config, tmp_path, resume=True)
    assert resumed.error is None, resumed.error
    checkpointed, after = first_record_after_the_crash(records(tmp_path, "attack", trial_id),
                                                       "global_step")
    assert after["global_step"] > checkpointed["global_step"], (checkpointed, after)


@pytest.mark.parametrize("kind", ["attack", "defence"])
def test_a_resume_whose_tune_state_is_cut_goes_on_from_the_trials_checkpoints(
        ray_instance, tmp_path, kind, capsys):
    """A crash or a full disk can cut Tune's own record of the experiment (which trials ran,
    which finished). --resume then runs the experiment again, each trial from its newest intact
    checkpoint, rather than stopping with a traceback."""
    config = tiny_config(max_failures=0)
    failed, trial_id = run_trial(kind, config, tmp_path)
    assert failed.error is not None
    for state in (tmp_path / kind).glob("experiment_state-*.json"):
        state.write_text(state.read_text()[:100])
    resumed, _ = run_trial(kind, config, tmp_path, resume=True)
    assert resumed.error is None, resumed.error
    assert "cannot be restored" in capsys.readouterr().out
    checkpointed, after = first_record_after_the_crash(records(tmp_path, kind, trial_id),
                                                       STEP[kind])
    assert after[STEP[kind]] > checkpointed[STEP[kind]], (checkpointed, after)
