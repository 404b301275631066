"""One run: data preparation, the Tune experiments (defences, then the attack grid), the report.

Torch, Ray and matplotlib are imported where they are first needed, not here: a run stopped by
bad input then fails in about a second instead of after several seconds of imports."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import yaml

from trainables.atomic import write_text_atomically
from orchestrator.config import ExperimentConfig, config_from_dict, config_to_dict, read_yaml
from orchestrator.data_prep import PreparedData, prepare_data
from orchestrator.grid import DEFENCES, FIRST_WAVE, SECOND_WAVE, attack_trials, defence_trials, wave
from orchestrator.lock import RunLock
from orchestrator.paths import cache_dir
from orchestrator.preflight import check_models, check_resources
from orchestrator.records import read_defences, write_defences, write_status
from orchestrator.resume import check_resumable, check_same_data, check_same_defences
from trainables.errors import ProjectError
from trainables.trials import TrialData
from trainables.data.feature_cache import load_features

CONFIG_FILE = "config.yaml"
# The Tune experiments of a run, in its storage: the defences, then the two waves of attacks.
EXPERIMENTS = (DEFENCES, FIRST_WAVE, SECOND_WAVE)


def storage_of(config: ExperimentConfig, results: Path) -> Path:
    """Where Tune keeps trials, checkpoints and event files: ``<results>/runs`` by default, or
    ``<tune.storage_path>/<results folder's name>``: runs that share a storage path (a cluster's
    shared disk) keep their experiments apart."""
    if not config.tune.storage_path:
        return results / "runs"
    shared = Path(config.tune.storage_path).expanduser().resolve()
    # A run started before the folder's name was added keeps its trials in the shared path.
    if (results / CONFIG_FILE).exists() and not (shared / results.name).exists() \
            and any((shared / name).exists() for name in EXPERIMENTS):
        return shared
    return shared / results.name


def _check_storage_unused(storage: Path) -> None:
    """A new run's trials must not land beside another run's: Tune would add them to its
    experiments, and the report would read both."""
    taken = [name for name in EXPERIMENTS if (storage / name).exists()]
    if taken:
        raise ProjectError(f"{storage} already holds another run's trials ({', '.join(taken)}): "
                           "give this run a --results folder of another name, or another "
                           "tune.storage_path")


def _saved_config(results: Path) -> ExperimentConfig:
    path = results / CONFIG_FILE
    if not path.exists():
        raise ProjectError(f"{results} holds no run ({CONFIG_FILE} is missing): nothing to "
                           "resume or report; start a run with this --results folder")
    return config_from_dict(read_yaml(path))


def failure_cause(error: BaseException | None) -> str:
    """A failed trial's cause in one line: the last line of the exception Ray wraps (its own
    first lines only say which actor died), or that it left no checkpoint."""
    if error is None:
        return "it left no checkpoint"
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1][:300] if lines else ''}"


def _complete_rows(table: Path) -> int:
    """How many rows of a written Table 1 are ``ok`` (0 when there is none)."""
    if not table.exists():
        return 0
    import pandas as pd

    return int((pd.read_csv(table)["status"] == "ok").sum())


def _trial_data(prepared: PreparedData) -> TrialData:
    """Standardised features of every split, for the object store."""
    features = load_features(prepared.feature_cache)
    splits = {s: features.standardised(s) for s in ("train", "dev", "test")}
    test = features.table[features.table["split"] == "test"]
    return TrialData(x={s: x for s, (x, _) in splits.items()},
                     y={s: y for s, (_, y) in splits.items()}, classes=features.classes,
                     test_names=[Path(p).stem for p in test["path"]], mean=features.mean,
                     std=features.std)


def _defence_weights(config: ExperimentConfig, prepared: PreparedData, data: dict,
                     results: Path, storage: Path, resume: bool) -> tuple[dict, dict]:
    """Train the defences that are not cached yet (one Tune experiment) and cache them.
    Returns every defence's weights by grid seed (seed -> name -> state_dict) and its clean
    dev/test UAR (name -> mean over seeds, with each seed's under ``per_seed``)."""
    from orchestrator.defence_cache import DefenceCache, defence_key
    from orchestrator.launch import nearly_full, run_stage
    from trainables.tune_defence import clean_uar, train_defence_trial, trained_defence

    cache = DefenceCache(cache_dir(config.data.cache_dir) / "defences")
    trials = {t.id: t for t in defence_trials(config)}
    keys = {i: defence_key(config, t.defence, prepared.feature_cache, t.seed)
            for i, t in trials.items()}
    if resume:
        check_same_defences(read_defences(results), trials, keys)
    missing = [t for i, t in trials.items() if not cache.has(keys[i])]
    if missing:
        grid = run_stage(DEFENCES, train_defence_trial,
                         {"data": data, "settings": config.trial_settings()}, missing, config,
                         storage, config.tune.defence_resources, resume)
        for result in grid:
            trial = trials[result.config["trial"]]
            if result.error is not None or result.checkpoint is None:
                if nearly_full(storage):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(storage))
                raise ProjectError(
                    f"training defence {trial.defence} failed: {failure_cause(result.error)}. "
                    "If it was passing (a lost worker, a full disk), run again with --resume; "
                    "if the config caused it, fix it and start a new run (--resume reuses the "
                    "saved config)")
            cache.store(keys[trial.id], trained_defence(result.checkpoint),
                        clean_uar(result.metrics, trial.defence))
    weights: dict[int, dict] = {}
    per_seed: dict[str, dict] = {}
    for trial_id, trial in trials.items():
        stored = cache.load(keys[trial_id])
        weights.setdefault(trial.grid_seed, {})[trial.defence] = stored["state_dict"]
        per_seed.setdefault(trial.defence, {})[str(trial.grid_seed)] = {
            **stored["metrics"], "cache": str(cache.path(keys[trial_id]))}
    clean = {name: {key: sum(m[key] for m in seeds.values()) / len(seeds)
                    for key in ("dev_uar", "test_uar")} | {"per_seed": seeds}
             for name, seeds in per_seed.items()}
    return weights, clean


def _final_states(grid, wanted: set[str]) -> dict[str, dict]:
    """The final stage-loop state (weights and sampler) of each finished trial in ``wanted``."""
    from trainables.tune_attack import final_stage_state

    states = {}
    for result in grid:
        trial_id = result.config["trial"]
        if trial_id not in wanted or result.error is not None or result.checkpoint is None:
            continue
        state = final_stage_state(result.checkpoint)
        if state is not None:
            states[trial_id] = state
    return states


def _attack_grid(config: ExperimentConfig, data: dict, weights: dict, storage: Path,
                 resume: bool) -> dict[str, str]:
    """The attack grid in its two waves (``orchestrator.grid``): trials that start from scratch,
    then those that start from a first-wave trial's final state. Returns each trial's status."""
    from orchestrator.launch import run_stage
    from trainables.tune_attack import train_attack_trial

    trials = attack_trials(config)
    leaders = {t.starts_from for t in trials if t.starts_from}
    status: dict[str, str] = {}
    first_stages: dict[str, dict] = {}
    for experiment in (FIRST_WAVE, SECOND_WAVE):
        mine = [t for t in trials if wave(t) == experiment]
        if not mine:
            continue
        grid = run_stage(experiment, train_attack_trial,
                         {"data": data, "defence_weights": weights,
                          "settings": config.trial_settings(), "first_stages": first_stages},
                         mine, config, storage, config.tune.attack_resources, resume)
        for result in grid:
            error = result.error
            status[result.config["trial"]] = "ok" if error is None else \
                f"failed: {failure_cause(error)}"
        if experiment == FIRST_WAVE:
            first_stages = _final_states(grid, leaders)
    return status


def run(config: ExperimentConfig, results: Path, resume: bool = False,
        address: str | None = None, report_only: bool = False) -> int:
    """Run the experiment into ``results``; returns the process exit code."""
    from orchestrator.reporter import write_report

    results = results.expanduser().resolve()
    if report_only:
        config = _saved_config(results)
        # A live run owns its folder's files and records trials as they finish: report it once
        # it has ended (or was interrupted), never from half its records.
        with RunLock(results, busy="--report-only reports a run once it has finished or been "
                                   "interrupted; wait for it, or stop it (Ctrl-C) first"):
            previous = results / "table1.csv"
            before = _complete_rows(previous)
            kept = previous.with_name("table1.previous.csv")
            if before:
                write_text_atomically(kept, previous.read_text())
            table = write_report(config, results, storage_of(config, results))
        print(table.to_string(index=False))
        after = int((table["status"] == "ok").sum())
        if after < before:
            print(f"\nthe rebuilt table1.csv has {after} complete row(s), the one it replaced "
                  f"{before}: some records are missing or damaged (see above); the previous "
                  f"table is kept as {kept}")
        elif before:
            kept.unlink(missing_ok=True)
        return 0
    if resume:
        check_resumable(results, storage_of(_saved_config(results), results), list(EXPERIMENTS))
    with RunLock(results):
        if resume:
            config = _saved_config(results)
        elif (results / CONFIG_FILE).exists():
            raise ProjectError(f"{results} already holds a run: pass --resume to finish it, "
                               "--report-only to rebuild its report, or another --results folder")
        storage = storage_of(config, results)
        if not resume:
            _check_storage_unused(storage)
        prepared = prepare_data(config.data)
        check_same_data(results, prepared, resume)
        prepared.record(results)
        # Saved once the data is usable: a run stopped by bad input leaves no run to resume.
        write_text_atomically(results / CONFIG_FILE,
                              yaml.safe_dump(config_to_dict(config), sort_keys=False))
        print(f"features: {prepared.utterances} utterances, {len(prepared.classes)} classes "
              f"({prepared.feature_cache})", flush=True)
        if prepared.left_out():
            print(f"left out: {prepared.left_out()}; listed in {results / 'skipped_files.txt'}",
                  flush=True)
        data = _trial_data(prepared)
        check_models(config, len(prepared.classes))

        import ray

        from orchestrator.ray_session import ray_session

        with ray_session(address):
            check_resources(config, ray.cluster_resources(), local=address is None)
            print(f"results: {results}; watch the trials with: tensorboard --logdir {storage}",
                  flush=True)
            weights, clean = _defence_weights(config, prepared, data, results, storage, resume)
            write_defences(results, clean)
            status = _attack_grid(config, data, weights, storage, resume)
        write_status(results, status)
        table = write_report(config, results, storage)
    print(table.to_string(index=False))
    failed = sorted(k for k, v in status.items() if v != "ok")
    print(f"\nresults in {results}: table1.csv, lambda_sweep.csv, trials.parquet, figures; "
          f"tensorboard --logdir {storage}")
    if failed:
        print(f"{len(failed)} trial(s) failed: {', '.join(failed)}; their rows are marked in "
              "table1.csv. Run again with --resume to retry them.")
        return 1
    return 0
