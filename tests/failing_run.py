"""``python -m tests.failing_run TRIAL_ID [run_grid.py arguments]``: the command line with the
attack trial ``TRIAL_ID`` made to fail on every attempt, for the reliability tests.

The production trainable knows nothing of it: this wraps the trainable the driver hands to Tune.
The wrapper is a nested function, so that Ray pickles it by value and the workers need not
import ``tests``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace

from orchestrator import launch
from orchestrator.cli import main
from orchestrator.grid import ATTACK_EXPERIMENTS


def failing(trainable: Callable, trial_id: str) -> Callable:
    """``trainable`` that raises for the trial ``trial_id``, on every attempt."""

    def failing_trial(config: dict, **parameters) -> None:
        if config["trial"] == trial_id:
            raise RuntimeError(f"failure injected into {trial_id}")
        trainable(config, **parameters)

    return failing_trial


def inject(trial_id: str) -> None:
    """Make ``launch.run_experiment`` hand Tune the failing wrapper of every attack trainable."""
    run_experiment = launch.run_experiment

    def run_experiment_with_failure(experiment: launch.Experiment, *args, **kwargs):
        if experiment.name in ATTACK_EXPERIMENTS:
            experiment = replace(experiment, trainable=failing(experiment.trainable, trial_id))
        return run_experiment(experiment, *args, **kwargs)

    launch.run_experiment = run_experiment_with_failure


if __name__ == "__main__":
    inject(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
