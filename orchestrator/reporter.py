"""The report: trials.parquet, table1.csv, lambda_sweep.csv, figures and findings.md, all
built from recorded results (``orchestrator.records``) and written atomically."""

from __future__ import annotations

import io
import json
import logging
import posixpath
from pathlib import Path

import numpy as np
import pandas as pd

from trainables.atomic import write_atomically, write_text_atomically
from orchestrator.config import ExperimentConfig
from orchestrator.findings import findings
from orchestrator.paper import paper_comparison
from orchestrator.grid import ATTACK_EXPERIMENTS, attack_trials, experiment_of
from orchestrator.records import read_defences, read_status, stage_records
from orchestrator.storage import Storage
from orchestrator.trial_table import trained_on, trial_table
from trainables import metric_keys as keys
from trainables.figures import figure2, load_figure_data, save_png
from trainables.stages import BASELINES
from trainables.trial_folder import AUDIO_FOLDER, FIGURE_FILE, QUERY_FILE, SNR_FILE
from trainables.trials import AttackTrial

log = logging.getLogger(__name__)

TABLE_METHODS = ("clean", "single-task", "noise", "universal", "multi-task", "transfer",
                 "lifelong", *BASELINES)


def _labels(config: ExperimentConfig, names) -> str:
    return " + ".join(config.defences[n].label for n in names)


def trials_table(config: ExperimentConfig, storage: Storage, results: Path) -> pd.DataFrame:
    """``trials.parquet``'s frame (``orchestrator.trial_table``): one row per Table-1 trial and
    recorded stage, from the stage records the trials wrote; a trial with no recorded stage
    still has a row, with its status."""
    records, damaged = stage_records(storage, list(ATTACK_EXPERIMENTS))
    frame, foreign = trial_table(attack_trials(config), records, read_status(results),
                                 experiment_of)
    left_out = damaged + foreign
    if left_out:
        log.info(f"{len(left_out)} stage record(s) left out ({'; '.join(left_out[:3])}"
                 f"{'; ...' if len(left_out) > 3 else ''}): a stage recorded only there has no "
                 "row, and its Table-1 row is marked partial or failed")
    if not records:
        log.info(f"{storage} holds no recorded stage of any attack trial: every attack row is "
                 "marked failed")
    return frame


def _uar_columns(config: ExperimentConfig) -> list[str]:
    return [keys.table_column(d, s) for d in config.defences for s in keys.SPLITS]


def _mean_and_spread(series: pd.Series, key: str) -> dict:
    """``{key: mean, key_std: standard deviation}`` of percentages, NaN where undefined."""
    return {key: round(series.mean(), 2) if len(series) else np.nan,
            f"{key}_std": round(series.std(ddof=1), 2) if len(series) > 1 else np.nan}


def _row_values(frame: pd.DataFrame, config: ExperimentConfig, metric: str = "adv_uar") -> dict:
    """Mean (and spread, with several seeds) of each defence's ``metric`` in percent."""
    values: dict = {}
    for d in config.defences:
        for s in keys.SPLITS:
            column = keys.uar(d, s, metric)
            series = frame[column].dropna() * 100 if column in frame else pd.Series(dtype=float)
            values.update(_mean_and_spread(series, keys.table_column(d, s)))
    return values


def _perturbation_values(frame: pd.DataFrame) -> dict:
    """Mean over seeds of the perturbation's size and input-specificity, per split."""
    values: dict = {}
    for s in keys.SPLITS:
        for metric in keys.PERTURBATION_METRICS:
            column = keys.perturbation(s, metric)
            series = frame[column].dropna() if column in frame else pd.Series(dtype=float)
            values[keys.size_column(metric, s)] = round(series.mean(), 4) if len(series) else np.nan
    return values


def _clean_values(config: ExperimentConfig, defences: dict) -> dict:
    """The clean row: each defence's clean UAR in percent, mean over the grid seeds' defences
    (and their spread, with several)."""
    values: dict = {}
    for d in config.defences:
        seeds = defences.get(d, {})
        for s in keys.SPLITS:
            metric = keys.uar(d, s, "clean_uar")
            series = pd.Series([m[metric] for m in seeds.values()], dtype=float) * 100
            values.update(_mean_and_spread(series, keys.table_column(d, s)))
    return values


def _dev_score(frame: pd.DataFrame, trained: list[str]) -> float:
    """Mean adversarial dev UAR over the defences trained on (lambda selection)."""
    return float(np.mean([frame[keys.uar(d, "dev")].mean() for d in trained]))


def _chosen_records(specs: list[AttackTrial], done: pd.DataFrame, method: str,
                    trained: tuple[str, ...]) -> tuple[pd.DataFrame, float, str]:
    """The stage records that yield one Table-1 row (for lifelong rows, those of the lambda
    with the lowest mean adversarial dev UAR over the row's defences), that lambda, and the
    row's status. A stage recorded before a trial failed still counts; the row is ``partial``
    when a trial is missing and ``failed`` when none recorded it."""
    expected = {t.id: t.lam for t in specs if (method, trained) in t.rows().values()}
    mine = done[done["trial_id"].isin(list(expected)) & trained_on(done, trained)]
    if mine.empty:
        return mine, np.nan, "failed"
    by_lambda = {lam: part for lam, part in mine.groupby(mine["lambda"].fillna(0.0))}
    lam = min(by_lambda, key=lambda v: (_dev_score(by_lambda[v], list(trained)), v))
    chosen = by_lambda[lam]
    wanted = {i for i, v in expected.items() if (v or 0.0) == lam}
    return chosen, lam, "ok" if set(chosen["trial_id"]) == wanted else "partial"


def tables(config: ExperimentConfig, trials: pd.DataFrame, defences: dict
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 1 and its companion, the perturbation table.

    Table 1: a clean row, then one row per method and defence set (training order); for
    lifelong rows the lambda chosen on dev (``_chosen_records``). After each single-task row a
    ``noise`` row: the defences under that attacker's noise control (its own perturbation with
    the time-frequency positions shuffled: same energy, no structure). The perturbation table
    has, for the same attack rows, the perturbation's SNR (dB), MSE, mean and shared-energy
    share on dev and test, so that a stronger attack can be told from a louder one."""
    rows = [{"method": "clean", "defences": _labels(config, config.defences), "lambda": np.nan,
             **_clean_values(config, defences),
             "seeds": len(next(iter(defences.values()), {})) or np.nan,
             "status": "ok" if len(defences) == len(config.defences) else "failed"}]
    sizes = []
    done = trials[trials["stage"] >= 1]
    specs = attack_trials(config)
    seen: list[tuple[str, tuple[str, ...]]] = []
    for spec in (s for s in specs if s.in_table):  # not a helper of a shared first stage
        for method, trained in spec.rows().values():
            if (method, trained) in seen or (method in ("transfer", "lifelong")
                                             and len(trained) < 2):
                continue
            seen.append((method, trained))
            chosen, lam, status = _chosen_records(specs, done, method, trained)
            head = {"method": method, "defences": _labels(config, trained),
                    "lambda": lam if method == "lifelong" else np.nan}
            seeds = chosen["seed"].nunique() if len(chosen) else 0
            rows.append({**head, **_row_values(chosen, config), "seeds": seeds, "status": status})
            sizes.append({**head, **_perturbation_values(chosen), "seeds": seeds,
                          "status": status})
            if method == "single-task":
                rows.append({**head, "method": "noise",
                             **_row_values(chosen, config, "noise_uar"), "seeds": seeds,
                             "status": status})
    order = {m: i for i, m in enumerate(TABLE_METHODS)}
    table, sizes = (pd.DataFrame(r).sort_values("method", key=lambda s: s.map(order),
                                                kind="stable") for r in (rows, sizes))
    columns = ["method", "defences", "lambda", *_uar_columns(config)]
    if len(config.grid.seeds) > 1:
        columns += ["seeds", *[f"{c}_std" for c in _uar_columns(config)]]
    table = table.reindex(columns=columns + ["status"]).reset_index(drop=True)
    size_columns = ["method", "defences", "lambda",
                    *[keys.size_column(m, s) for s in keys.SPLITS
                      for m in keys.PERTURBATION_METRICS],
                    "seeds", "status"]
    return table, sizes.reindex(columns=size_columns).reset_index(drop=True)


def lambda_sweep(config: ExperimentConfig, trials: pd.DataFrame) -> pd.DataFrame:
    """Adversarial UAR (percent) of every defence for each lifelong sequence, stage and lambda,
    with transfer as lambda = 0 (no constraint), and the regulariser's share of the loss at the
    stage's end (``penalty_share``); mean over seeds."""
    chosen = trials[trials["strategy"].isin(["lifelong", "transfer"]) & (trials["stage"] >= 2)
                    & (trials["status"] == "ok")]
    if chosen.empty:
        return pd.DataFrame()
    rows = []
    for (sequence, defences, lam), group in chosen.groupby(
            ["sequence", chosen["defences"].map(lambda d: _labels(config, d)),
             chosen["lambda"].fillna(0.0)], sort=True):
        share = keys.training("penalty_share")
        rows.append({"sequence": sequence, "defences": defences, "lambda": lam,
                     "seeds": group["seed"].nunique(),
                     # How hard the constraint held at the stage's end: the grid should run
                     # from under 1 % (lifelong = transfer) to over 90 % (frozen).
                     "penalty_share": round(group[share].mean(), 4) if share in group
                     else np.nan, **{
                         c: v for c, v in _row_values(group, config).items()
                         if not c.endswith("_std") or group["seed"].nunique() > 1}})
    return pd.DataFrame(rows)


def figure3(config: ExperimentConfig, sweep: pd.DataFrame, path: Path) -> None:
    """Figure 3 as the paper draws it: adversarial dev UAR of each defence against lambda, one
    panel per sequence and stage (after 2 and after 3 defences: C+V, C+V+R, R+V, R+V+C), the
    transfer strategy (no constraint) at lambda = 0 on the same axis (linear below the smallest
    lambda, logarithmic above it)."""
    import matplotlib.pyplot as plt
    if sweep.empty:
        return
    panels = [(sequence, defences) for sequence, order in config.grid.sequences.items()
              for k in range(2, len(order) + 1)
              for defences in [_labels(config, order[:k])]
              if ((sweep["sequence"] == sequence) & (sweep["defences"] == defences)).any()]
    if not panels:
        return
    columns = min(len(panels), 4)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.6 * rows), squeeze=False,
                             constrained_layout=True)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (sequence, defences) in zip(axes.flat, panels):
        part = sweep[(sweep["sequence"] == sequence) & (sweep["defences"] == defences)]
        part = part.sort_values("lambda")
        for d, spec in config.defences.items():
            column = keys.table_column(d, "dev")
            ax.plot(part["lambda"], part[column], marker="o", label=spec.label)
        positive = part.loc[part["lambda"] > 0, "lambda"]
        if not positive.empty:
            ax.set_xscale("symlog", linthresh=float(positive.min()))
        ax.set_xlabel("lambda (0: transfer, no constraint)")
        ax.set_ylabel("adversarial dev UAR [%]")
        ax.set_title(f"{sequence}: {defences}", fontsize=9)
        ax.legend(fontsize=7)
    write_atomically(path, lambda tmp: save_png(fig, tmp))


def figure2_png(storage: Storage, trials: pd.DataFrame, path: Path) -> bool:
    """Figure 2 from the recorded utterance of the preferred finished trial (lifelong, else
    any); returns whether one was written."""
    order = ["lifelong", "multi-task", "transfer", "single-task", "universal", *BASELINES]
    ranked = trials.sort_values("strategy", key=lambda s: s.map(order.index))
    for trial_id, experiment in ranked[["trial_id", "tune_experiment"]].drop_duplicates() \
            .itertuples(index=False):
        recorded = posixpath.join(experiment, trial_id, FIGURE_FILE)
        if storage.is_file(recorded):
            fig = figure2(**load_figure_data(io.BytesIO(storage.read_bytes(recorded))))
            fig.text(0.01, 0.01, trial_id, fontsize=7)
            write_atomically(path, lambda tmp, fig=fig: save_png(fig, tmp))
            return True
    return False


def collect_audio(storage: Storage, trials: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """Copy each finished trial's audio examples into ``folder/<trial>/`` and list their SNRs
    (feature and waveform domain) in ``folder/snr.csv``; returns that table."""
    rows = []
    for trial_id, experiment in trials[["trial_id", "tune_experiment"]].drop_duplicates() \
            .itertuples(index=False):
        recorded = posixpath.join(experiment, trial_id, AUDIO_FOLDER)
        if not storage.is_file(recorded, SNR_FILE):
            continue
        for wav in storage.glob(recorded, "*.wav"):
            write_atomically(folder / trial_id / posixpath.basename(wav),
                             lambda tmp, wav=wav: storage.download(wav, Path(tmp)))
        rows += [{"trial_id": trial_id, **row}
                 for row in json.loads(storage.read_text(recorded, SNR_FILE))]
    table = pd.DataFrame(rows, columns=["trial_id", "utterance", "snr_db_features",
                                        "snr_db_waveform"])
    if rows:
        write_atomically(folder / "snr.csv", lambda tmp: table.to_csv(tmp, index=False))
    return table


QUERY_COLUMNS = ["defence", "seed", "method", "queries", "uar", "clean_uar", "snr_db", "linf",
                 "ms_per_utterance", "eps", "target_snr_db", "target_from", "utterances"]


def query_table(config: ExperimentConfig, storage: Storage, trials: pd.DataFrame) -> pd.DataFrame:
    """``query_attack.csv``: for each query attack (``QUERY_FILE`` in its trial's folder), the
    held-out defence's UAR (percent) after each query budget, and beside it, at zero queries,
    the transfer of the generator whose SNR it took (single- or multi-task, the lowest dev UAR
    on that defence): on the query attack's own utterances where the query trial scored it,
    else (``utterances`` empty) its test UAR on the whole test split, from its record."""
    rows = []
    done = trials[trials["stage"] >= 1]
    for path in sorted(p for e in ATTACK_EXPERIMENTS for p in storage.glob(e, f"*/{QUERY_FILE}")):
        curve = json.loads(storage.read_text(path))
        held, seed = curve["defence"], int(curve["seed"])
        label = config.defences[held].label if held in config.defences else held
        common = {"defence": label, "seed": seed, "eps": curve["eps"],
                  "target_snr_db": curve["target_snr_db"], "target_from": curve["target_from"]}
        source = done[done["trial_id"] == curve["target_from"]]
        column = keys.uar(held, "test")
        generator = curve.get("generator")
        if generator and len(source):
            # Scored by the query trial on its own utterances: paired with the curve.
            rows.append({**common, "method": source["strategy"].iloc[0], "queries": 0,
                         "uar": 100 * generator["uar"], "clean_uar": 100 * curve["clean_uar"],
                         "snr_db": generator["snr_db"], "linf": generator["linf"],
                         "ms_per_utterance": np.nan, "utterances": curve["utterances"]})
        elif len(source) and column in source:
            last = source.sort_values("stage").iloc[-1]
            rows.append({**common, "method": last["strategy"], "queries": 0,
                         "uar": 100 * last[column],
                         "clean_uar": 100 * last[keys.uar(held, "test", "clean_uar")],
                         "snr_db": last[keys.perturbation("test", "snr_db")],
                         "linf": last.get(keys.perturbation("test", "linf"), np.nan),
                         "ms_per_utterance": last.get(keys.perturbation("test",
                                                                        "ms_per_utterance"),
                                                      np.nan),
                         "utterances": np.nan})
        query_trial = posixpath.basename(posixpath.dirname(path))
        for point in curve["points"]:
            rows.append({**common, "method": query_trial.split(f"-{held}-")[0],
                         "queries": point["queries"], "uar": 100 * point["uar"],
                         "clean_uar": 100 * curve["clean_uar"], "snr_db": point["snr_db"],
                         "linf": point["linf"], "ms_per_utterance": point["ms_per_utterance"],
                         "utterances": curve["utterances"]})
    table = pd.DataFrame(rows, columns=QUERY_COLUMNS)
    return table.sort_values(["defence", "seed", "queries"], kind="stable").reset_index(drop=True)


def query_figure(table: pd.DataFrame, path: Path) -> None:
    """``query_attack.png``: each held-out defence's UAR against the queries per utterance
    (mean over seeds), the generator's zero-query transfer at 0 on the same axis."""
    import matplotlib.pyplot as plt
    if table.empty:
        return
    fig, ax = plt.subplots(figsize=(5.5, 3.8), constrained_layout=True)
    for defence, part in table.groupby("defence"):
        mean = part.groupby("queries")["uar"].mean()
        ax.plot(mean.index, mean.values, marker="o", label=f"{defence}: Square attack")
        if 0 in mean.index:
            ax.scatter([0], [mean.loc[0]], marker="*", s=140, zorder=3,
                       label=f"{defence}: generator's transfer (0 queries)")
    positive = table.loc[table["queries"] > 0, "queries"]
    if not positive.empty:
        ax.set_xscale("symlog", linthresh=float(positive.min()))
    ax.set_xlabel("queries per utterance")
    ax.set_ylabel("adversarial test UAR [%]")
    ax.legend(fontsize=7)
    write_atomically(path, lambda tmp: save_png(fig, tmp))


def write_report(config: ExperimentConfig, results: Path, storage: Storage) -> pd.DataFrame:
    """Write every report file into ``results``; returns Table 1."""
    trials = trials_table(config, storage, results)
    write_atomically(results / "trials.parquet", lambda tmp: trials.to_parquet(tmp, index=False))
    defences = read_defences(results)
    table, sizes = tables(config, trials, defences)
    write_atomically(results / "table1.csv", lambda tmp: table.to_csv(tmp, index=False))
    write_atomically(results / "perturbation.csv", lambda tmp: sizes.to_csv(tmp, index=False))
    sweep = lambda_sweep(config, trials)
    write_atomically(results / "lambda_sweep.csv", lambda tmp: sweep.to_csv(tmp, index=False))
    figure3(config, sweep, results / "lambda_sweep.png")
    figure2_png(storage, trials, results / "figure2.png")
    collect_audio(storage, trials, results / "audio")
    queries = query_table(config, storage, trials)
    if not queries.empty:
        write_atomically(results / "query_attack.csv",
                         lambda tmp: queries.to_csv(tmp, index=False))
        query_figure(queries, results / "query_attack.png")
    comparison = paper_comparison(table)
    write_atomically(results / "paper_comparison.csv",
                     lambda tmp: comparison.to_csv(tmp, index=False))
    write_text_atomically(results / "findings.md",
                          findings(config, trials, table, sizes, defences, queries))
    return table
