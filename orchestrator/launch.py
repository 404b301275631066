"""Running one Ray Tune experiment of a run: the defences, or one of the attack grid's two."""

from __future__ import annotations

import errno
import logging
import os
import pickle
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from orchestrator.config import Resources, TuneConfig
from orchestrator.interrupt import tune_stage
from orchestrator.progress import Progress
from orchestrator.storage import Storage
from trainables import metric_keys as keys
from trainables.settings import AttackSettings
from trainables.trials import AttackTrial, DefenceTrial
from trainables.tune_io import newest_intact_checkpoint

# Console chatter that the progress lines replace: a warning each time trials checkpoint close
# together (ours do, by design, at every stage end) and a note per trial about hyperparameters
# TensorBoard cannot show (tuples).
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# Tune's newer console engine prints a configuration box and "To visualize your results with
# TensorBoard, run: tensorboard --logdir <a Ray session folder>" for every experiment whatever
# RunConfig(verbose=...) says: the wrong folder (the run's event files are under
# <results>/runs, which the run prints). Its older engine honours verbose=0 and prints nothing.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Tune logs each trial failure with Ray's 60-line traceback; the progress line says which trial
# failed, its cause in one line, and where Tune kept the whole traceback (error.txt).
os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
logging.getLogger("ray.tune.logger.tensorboardx").setLevel(logging.WARNING)
log = logging.getLogger(__name__)


class _DiskFull(logging.Filter):
    """Drops Tune's and its syncer's tracebacks of a full disk (20 lines each, every few
    seconds): the run ends on one line that names the folder (``disk_space``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        full = isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
        return not (full or "No space left on device" in record.getMessage())


for _name in ("ray.tune.execution.experiment_state", "ray.train._internal.syncer"):
    logging.getLogger(_name).addFilter(_DiskFull())
# On --resume, Tune warns "Failed to fetch metrics ... FileNotFoundError" for every trial of the
# restored experiment that had not started: expected, and they start now.
logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Experiment:
    """One Ray Tune experiment of a run: ``name`` (its folder under the run's storage), the
    ``trainable`` function, its trial specs, what every trial receives beside its spec
    (``parameters``: the data, the defences, the typed ``TrialSettings``, sent once to Ray's
    object store), each trial's resources, and ``asha`` (``attack`` settings) to stop poor
    trials early instead of running them all to the end."""

    name: str
    trainable: Callable
    trials: Sequence[AttackTrial | DefenceTrial]
    parameters: dict
    resources: Resources
    asha: AttackSettings | None = None

    def scheduler(self):
        if self.asha is None:
            return FIFOScheduler()
        longest = self.asha.first_stage_iterations + 2 * self.asha.later_stage_iterations
        return ASHAScheduler(time_attr=keys.STEP, metric=keys.SCORE, mode="min",
                             max_t=longest * 2, grace_period=self.asha.first_stage_iterations,
                             reduction_factor=2)


def run_experiment(experiment: Experiment, tune_config: TuneConfig, labels: dict[str, str],
                   storage: Storage, resume: bool) -> tune.ResultGrid:
    """Run (or, with ``resume``, restore and finish) ``experiment`` under ``storage``;
    ``labels`` names the defences in the progress lines.

    Tune's config holds only a trial's id (``config["trial"]``: what names its folder and what
    ``--resume`` restores); the trainable receives the specs by id (``trials``) with the
    experiment's ``parameters``, and takes its own spec whole from there."""
    specs = {t.id: t for t in experiment.trials}
    resources = experiment.resources

    def trainable_with(**more):
        return tune.with_resources(
            tune.with_parameters(experiment.trainable, **experiment.parameters, trials=specs,
                                 **more),
            {"cpu": resources.cpu, "gpu": resources.gpu})

    name = experiment.name
    path = storage.path(name)
    # A bucket through its pyarrow file system; a local folder as Tune takes it by default.
    filesystem = storage.filesystem if storage.local is None else None
    log.info(f"[{name}] {len(specs)} trial(s), {resources.cpu} CPU and {resources.gpu} GPU each")
    resume_from = None
    if resume and tune.Tuner.can_restore(path, storage_filesystem=filesystem):
        try:
            tuner = tune.Tuner.restore(path, trainable=trainable_with(),
                                       resume_unfinished=True, resume_errored=True,
                                       restart_errored=False, storage_filesystem=filesystem)
            with tune_stage():
                return tuner.fit()
        except Exception as error:  # noqa: BLE001  (a state cut by a crash or a full disk)
            # Tune's record of which trials finished is lost, not the trials' own checkpoints
            # and stage records: run the experiment again, each trial from its newest intact
            # checkpoint.
            resume_from = {i: c for i in specs
                           if (c := newest_intact_checkpoint(storage.filesystem,
                                                             storage.path(name, i))) is not None}
            log.info(f"[{name}] Tune's saved state in {storage.shown(name)} cannot be restored "
                     f"({type(error).__name__}: {str(error).strip()[:200]}); running it again, "
                     f"{len(resume_from)} trial(s) from their latest intact checkpoint")
    tuner = tune.Tuner(
        trainable_with(resume_from=resume_from),
        param_space={"trial": tune.grid_search(list(specs))},
        tune_config=tune.TuneConfig(
            scheduler=experiment.scheduler(),
            # A trial in a worker process of an earlier one: a new process per trial cost about
            # 7 s (Python, torch and Ray started, librosa's first import) between any two
            # trials, 37 times in the default run. Every trial seeds its own random sources
            # and sets its own threads (trainables.device.runtime), so none depends on the
            # process it runs in.
            reuse_actors=True,
            max_concurrent_trials=tune_config.max_concurrent_trials or None,
            trial_name_creator=lambda t: t.config["trial"],
            trial_dirname_creator=lambda t: t.config["trial"]),
        run_config=tune.RunConfig(
            name=name, storage_path=storage.root, storage_filesystem=filesystem, verbose=0,
            callbacks=[Progress(name, labels, specs)],
            failure_config=tune.FailureConfig(max_failures=tune_config.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            sync_config=tune.SyncConfig(sync_artifacts=True)))
    with tune_stage(), disk_space(storage):
        return tuner.fit()


@contextmanager
def disk_space(storage: Storage) -> Iterator[None]:
    """Turn what a full disk does to Tune (its records cut, an empty error file it then fails
    to unpickle, an ``OSError`` of its own) into one ``OSError`` (ENOSPC) naming ``storage``."""
    try:
        yield
    except (OSError, EOFError, pickle.UnpicklingError) as error:
        if not nearly_full(storage):
            raise
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), storage.uri) from error


def nearly_full(storage: Storage, margin: int = 16 << 20) -> bool:
    """Whether the device holding a local ``storage`` has less than ``margin`` bytes free (a
    bucket is never full)."""
    folder = storage.local
    if folder is None:
        return False
    existing = next((p for p in (folder, *folder.parents) if p.exists()), folder)
    return shutil.disk_usage(existing).free < margin
