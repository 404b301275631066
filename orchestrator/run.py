"""The training run: data preparation, the Tune experiments (the defences, then the attack grid),
the report. ``--report-only`` is ``orchestrator.report_only``; both write the report with
``orchestrator.reporter``.

Torch and Ray are imported where they are first needed, not here: a run stopped by bad input
then fails in about a second instead of after several seconds of imports.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import yaml

from orchestrator.config import ExperimentConfig, config_to_dict
from orchestrator.data_prep import PreparedData, prepare_data
from orchestrator.grid import (ATTACK_EXPERIMENT, ATTACK_EXPERIMENTS, DEFENCE_EXPERIMENT,
                               EXPERIMENTS, GENERATOR_TARGET, attack_trials, defence_trials,
                               experiment_of, longest_first)
from orchestrator.lock import RunLock
from orchestrator.paths import cache_dir
from orchestrator.preflight import check_models, check_resources, check_shared_storage
from orchestrator.records import last_record, read_defences, write_defences, write_status
from orchestrator.resume import check_resumable, check_same_data, check_same_defences
from orchestrator.run_folder import CONFIG_FILE, check_storage_unused, saved_config, storage_of
from orchestrator.run_identity import check_same_run, claim
from orchestrator.storage import Storage
from trainables import metric_keys
from trainables.atomic import write_text_atomically
from trainables.data.feature_cache import load_features
from trainables.errors import ProjectError
from trainables.stage_record import StageRecord
from trainables.trials import AttackTrial, TrialData

log = logging.getLogger(__name__)


def failure_cause(error: BaseException | None) -> str:
    """A failed trial's cause in one line: the last line of the exception Ray wraps (its own
    first lines only say which actor died), or that it left no checkpoint."""
    if error is None:
        return "it left no checkpoint"
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1][:300] if lines else ''}"


def example_names(paths) -> list[str]:
    """The test utterances' names for their audio examples (``audio/<trial>/<name>_clean.wav``):
    each file's name without its suffix, with ``~2``, ``~3``... after a name already given (files
    of one name in two folders would otherwise overwrite each other's examples)."""
    names: list[str] = []
    taken: set[str] = set()
    for path in paths:
        stem = name = Path(path).stem
        count = 2
        while name in taken:
            name, count = f"{stem}~{count}", count + 1
        names.append(name)
        taken.add(name)
    return names


def _trial_data(prepared: PreparedData) -> TrialData:
    """Standardised features of every split, for the object store."""
    features = load_features(prepared.feature_cache)
    splits = {s: features.standardised(s) for s in ("train", "dev", "test")}
    test = features.table[features.table["split"] == "test"]
    return TrialData(x={s: x for s, (x, _) in splits.items()},
                     y={s: y for s, (_, y) in splits.items()}, classes=features.classes,
                     test_names=example_names(test["path"]), mean=features.mean,
                     std=features.std)


def _labels(config: ExperimentConfig) -> dict[str, str]:
    return {name: spec.label for name, spec in config.defences.items()}


def _defences(config: ExperimentConfig, prepared: PreparedData, data: TrialData,
              results: Path, storage: Storage, resume: bool) -> tuple[dict, dict]:
    """Train the defences that are not cached yet (one Tune experiment) and cache them.
    Returns, by grid seed, a reference in Ray's object store to that seed's defences' weights
    (name -> ``state_dict``; an attack trial fetches its own seed's only), and what
    ``defences.json`` records: each defence's clean UAR and cache entry by grid seed."""
    import ray

    from orchestrator.defence_cache import DefenceCache, defence_key
    from orchestrator.launch import Experiment, nearly_full, run_experiment
    from trainables.tune_defence import clean_uar, train_defence_trial, trained_defence

    cache = DefenceCache(cache_dir(config.data.cache_dir) / "defences")
    trials = {t.id: t for t in defence_trials(config)}
    keys = {i: defence_key(config, t.defence, prepared.feature_cache, t.training_seed)
            for i, t in trials.items()}
    if resume:
        check_same_defences(read_defences(results), trials, keys)
    missing = [t for i, t in trials.items() if not cache.has(keys[i])]
    if missing:
        experiment = Experiment(DEFENCE_EXPERIMENT, train_defence_trial, missing,
                                {"data": data, "settings": config.trial_settings()},
                                config.tune.defence_resources)
        for result in run_experiment(experiment, config.tune, _labels(config), storage, resume):
            trial = trials[result.config["trial"]]
            if result.error is not None or result.checkpoint is None:
                if nearly_full(storage):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), storage.uri)
                raise ProjectError(
                    f"training defence {trial.defence} failed: {failure_cause(result.error)}. "
                    "If it was passing (a lost worker, a full disk), run again with --resume; "
                    "if the config caused it, fix it and start a new run (--resume reuses the "
                    "saved config)")
            cache.store(keys[trial.id], trained_defence(result.checkpoint),
                        clean_uar(result.metrics, trial.defence))
    weights: dict[int, dict] = {}
    recorded: dict[str, dict] = {}
    for trial_id, trial in trials.items():
        stored = cache.load(keys[trial_id])
        weights.setdefault(trial.seed, {})[trial.defence] = stored["state_dict"]
        recorded.setdefault(trial.defence, {})[str(trial.seed)] = {
            **stored["metrics"], "cache": str(cache.path(keys[trial_id]))}
    return {seed: ray.put(by_name) for seed, by_name in weights.items()}, recorded


def _attack_grid(config: ExperimentConfig, data: TrialData, defences: dict, storage: Storage,
                 resume: bool) -> dict[str, str]:
    """The attack grid in its two Tune experiments (``orchestrator.grid``): trials that start
    from scratch, then those that start from the final checkpoint of a trial of the first.
    Returns each trial's status."""
    from orchestrator.launch import Experiment, run_experiment
    from trainables.tune_attack import train_attack_trial

    trials = attack_trials(config)
    leaders = {t.starts_from for t in trials if t.starts_from}
    status: dict[str, str] = {}
    first_stages: dict = {}  # leader's id -> its final checkpoint
    first_records: dict[str, StageRecord] = {}  # leader's id -> its record of that state
    generator_snr: dict[str, float] = {}  # generator's id -> its dev SNR, for the baselines
    query_targets: dict[str, tuple[str, float]] = {}  # query trial -> (generator, dev SNR)
    for name in ATTACK_EXPERIMENTS:
        mine = longest_first([t for t in trials if experiment_of(t) == name])
        if not mine:
            continue
        experiment = Experiment(
            name, train_attack_trial, mine,
            {"data": data, "defences": defences, "settings": config.trial_settings(),
             "first_stages": first_stages, "generator_snr": generator_snr,
             "query_targets": query_targets, "first_records": first_records},
            config.tune.attack_resources,
            asha=config.attack if config.tune.scheduler == "asha" else None)
        grid = run_experiment(experiment, config.tune, _labels(config), storage, resume)
        for result in grid:
            error = result.error
            status[result.config["trial"]] = "ok" if error is None else \
                f"failed: {failure_cause(error)}"
        if name == ATTACK_EXPERIMENT:
            query_targets = best_transfer(storage, name, trials)
            # A query attack also scores its generator on its own utterances: its weights too.
            wanted = leaders | {generator for generator, _ in query_targets.values()}
            first_stages = {r.config["trial"]: r.checkpoint for r in grid
                            if r.config["trial"] in wanted and r.error is None
                            and r.checkpoint is not None}
            first_records = {i: r for i in sorted(leaders) if i in first_stages
                             and (r := last_record(storage, name, i)) is not None
                             and r.stage == 1 and r.finished}
            generator_snr = recorded_snr(storage, name, {t.snr_from for t in trials}
                                         - {GENERATOR_TARGET})
    return status


def recorded_snr(storage: Storage, experiment: str, trial_ids: set[str]) -> dict[str, float]:
    """The dev SNR each of ``trial_ids`` recorded after its last stage, from its stage records
    in ``experiment`` (what the report reads too); a trial without an intact record is left
    out (the baselines calibrated to it then fail, naming it)."""
    snr: dict[str, float] = {}
    for trial_id in sorted(i for i in trial_ids if i):
        record = last_record(storage, experiment, trial_id)
        value = record.metrics.get(metric_keys.perturbation("dev", "snr_db")) if record else None
        if value is not None:
            snr[trial_id] = value
    return snr


def best_transfer(storage: Storage, experiment: str,
                  trials: list[AttackTrial]) -> dict[str, tuple[str, float]]:
    """For each query attack calibrated to a generator (``snr_from`` is ``GENERATOR_TARGET``):
    the single- or multi-task trial of its seed, recorded in ``experiment``, with the lowest
    adversarial *dev* UAR on its held-out defence (chosen on dev, as lambda is), and that
    trial's dev SNR. A query attack with no such record is left out (it then fails, naming
    why)."""
    generators = [t for t in trials if t.in_table and t.strategy in ("single-task", "multi-task")
                  and experiment_of(t) == ATTACK_EXPERIMENT]
    records = {t.id: r for t in generators
               if (r := last_record(storage, experiment, t.id)) is not None}
    targets: dict[str, tuple[str, float]] = {}
    for query in (t for t in trials if t.snr_from == GENERATOR_TARGET):
        held = query.defences[0]
        uar, snr = metric_keys.uar(held, "dev"), metric_keys.perturbation("dev", "snr_db")
        scored = sorted((records[t.id].metrics[uar], t.id) for t in generators
                        if t.seed == query.seed and t.id in records
                        and uar in records[t.id].metrics and snr in records[t.id].metrics)
        if scored:
            best = scored[0][1]
            targets[query.id] = (best, records[best].metrics[snr])
    return targets


def run(config: ExperimentConfig, results: Path, resume: bool = False,
        address: str | None = None) -> int:
    """Run the experiment into ``results`` (with ``resume``, finish the one there, with the
    config it saved); returns the process exit code."""
    from orchestrator.reporter import write_report

    results = results.expanduser().resolve()
    if resume:
        storage = storage_of(saved_config(results), results)
        check_resumable(results, storage, list(EXPERIMENTS))
        check_same_run(results, storage)
    with RunLock(results):
        if resume:
            config = saved_config(results)
        elif (results / CONFIG_FILE).exists():
            raise ProjectError(f"{results} already holds a run: pass --resume to finish it, "
                               "--report-only to rebuild its report, or another --results folder")
        # The grid's trial names, checked before anything runs (``grid._check_unique``).
        defence_trials(config), attack_trials(config)
        storage = storage_of(config, results)
        if not resume:
            check_storage_unused(storage)
            claim(results, storage)
        prepared = prepare_data(config.data)
        check_same_data(results, prepared, resume)
        prepared.record(results)
        log.info(f"features: {prepared.utterances} utterances, {len(prepared.classes)} classes "
                 f"({prepared.feature_cache})")
        if prepared.left_out():
            log.info(f"left out: {prepared.left_out()}; listed in "
                     f"{results / 'skipped_files.txt'}")
        data = _trial_data(prepared)
        check_models(config, len(prepared.classes))

        import ray

        from orchestrator.ray_session import ray_session

        with ray_session(address):
            check_resources(config, ray.cluster_resources(), local=address is None)
            check_shared_storage(storage)
            # Saved once the data, the models and the cluster are usable: a run stopped by bad
            # input leaves no run to resume.
            write_text_atomically(results / CONFIG_FILE,
                                  yaml.safe_dump(config_to_dict(config), sort_keys=False))
            log.info(f"results: {results}; watch the trials with: tensorboard --logdir {storage}")
            defences, recorded = _defences(config, prepared, data, results, storage, resume)
            write_defences(results, recorded)
            status = _attack_grid(config, data, defences, storage, resume)
        write_status(results, status)
        table = write_report(config, results, storage)
    log.info(table.to_string(index=False))
    failed = sorted(k for k, v in status.items() if v != "ok")
    log.info(f"\nresults in {results}: table1.csv, lambda_sweep.csv, trials.parquet, figures; "
             f"tensorboard --logdir {storage}")
    unrecorded = unrecorded_trials(results)
    if unrecorded:
        log.info(f"{len(unrecorded)} trial(s) finished but left no stage record in {storage}: "
                 f"{', '.join(unrecorded)}; their rows are marked failed. On a cluster, "
                 "tune.storage_path must be a folder every node mounts, or a bucket.")
    if failed:
        log.info(f"{len(failed)} trial(s) failed: {', '.join(failed)}; their rows are marked in "
                 "table1.csv. Run again with --resume to retry them.")
    return 1 if failed or unrecorded else 0


def unrecorded_trials(results: Path) -> list[str]:
    """The Table-1 trials in ``results/trials.parquet`` that Tune saw finish but whose stage
    records the report did not find: what they wrote did not reach the run's storage."""
    import pandas as pd

    trials = pd.read_parquet(results / "trials.parquet", columns=["trial_id", "status", "stage"])
    return sorted(trials.loc[(trials["status"] == "ok") & (trials["stage"] == 0), "trial_id"])
