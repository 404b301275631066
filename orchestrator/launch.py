"""Running one Ray Tune experiment of a run (the defences, or a wave of the attack grid)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from orchestrator.config import ExperimentConfig, Resources
from orchestrator.progress import Progress

# Console chatter that the progress lines replace: a warning each time trials checkpoint close
# together (ours do, by design, at every stage end) and a note per trial about hyperparameters
# TensorBoard cannot show (tuples).
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
logging.getLogger("ray.tune.logger.tensorboardx").setLevel(logging.WARNING)


def _scheduler(config: ExperimentConfig, stage: str):
    if stage.startswith("attacks") and config.tune.scheduler == "asha":
        attack = config.attack
        longest = attack.first_stage_iterations + 2 * attack.later_stage_iterations
        return ASHAScheduler(time_attr="global_step", metric="score", mode="min",
                             max_t=longest * 2, grace_period=attack.first_stage_iterations,
                             reduction_factor=2)
    return FIFOScheduler()


def run_stage(stage: str, function: Callable, parameters: dict, trials: list[dict],
              config: ExperimentConfig, experiment: dict, storage: Path,
              resources: Resources, resume: bool) -> tune.ResultGrid:
    """Run (or, with ``resume``, restore and finish) one Tune experiment named ``stage`` whose
    trials are ``trials`` (dicts with an ``id``) under ``storage``. Large inputs in
    ``parameters`` go once to Ray's object store and reach every trial without copies."""
    trainable = tune.with_resources(tune.with_parameters(function, **parameters),
                                    {"cpu": resources.cpu, "gpu": resources.gpu})
    path = storage / stage
    print(f"[{stage}] {len(trials)} trial(s), {resources.cpu} CPU and {resources.gpu} GPU each",
          flush=True)
    if resume and tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True,
                                   resume_errored=True, restart_errored=False)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(trials), "experiment": experiment},
            tune_config=tune.TuneConfig(
                scheduler=_scheduler(config, stage),
                max_concurrent_trials=config.tune.max_concurrent_trials or None,
                trial_name_creator=lambda t: t.config["trial"]["id"],
                trial_dirname_creator=lambda t: t.config["trial"]["id"]),
            run_config=tune.RunConfig(
                name=stage, storage_path=str(storage), verbose=0,
                callbacks=[Progress(stage, {n: d.label for n, d in config.defences.items()})],
                failure_config=tune.FailureConfig(max_failures=config.tune.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                sync_config=tune.SyncConfig(sync_artifacts=True)))
    return tuner.fit()
