"""The report: trials.parquet, table1.csv, lambda_sweep.csv, figures and findings.md, all
built from recorded results (``orchestrator.records``) and written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from trainables.atomic import write_atomically, write_text_atomically
from orchestrator.config import ExperimentConfig
from orchestrator.grid import FIRST_WAVE, SECOND_WAVE, AttackTrial, attack_trials
from orchestrator.records import read_defences, read_status, stage_records
from trainables.figures import figure2, save_png

TABLE_METHODS = ("clean", "single-task", "multi-task", "transfer", "lifelong")


def _labels(config: ExperimentConfig, names) -> str:
    return " + ".join(config.defences[n].label for n in names)


def trials_table(config: ExperimentConfig, storage: Path, results: Path) -> pd.DataFrame:
    """One row per trial and stage, with every recorded metric (UAR in [0, 1]); a trial with
    no recorded stage still has a row, with its status."""
    records = stage_records([storage / FIRST_WAVE, storage / SECOND_WAVE])
    status = read_status(results)
    rows = []
    for trial in (t for t in attack_trials(config) if t.in_table):
        mine = records[records["trial_id"] == trial.id] if len(records) else records
        state = status.get(trial.id, "missing")
        base = {"trial_id": trial.id, "strategy": trial.strategy, "sequence": trial.sequence,
                "lambda": trial.lam, "seed": trial.seed, "regulariser": trial.regulariser,
                "starts_from": trial.starts_from, "tune_experiment": trial.experiment,
                "status": "ok" if state == "ok" else state.split(":")[0],
                "error": "" if state == "ok" else state}
        if mine.empty:
            rows.append({**base, "stage": -1, "defences": _labels(config, trial.defences)})
            continue
        for _, record in mine.sort_values("stage").iterrows():
            stage = int(record["stage"])
            method, trained = trial.rows()[stage]
            rows.append({**base, **{k: v for k, v in record.items() if k not in base
                                    and not k.startswith(("config/", "experiment"))},
                         "stage": stage, "defences": _labels(config, trained),
                         "trained": ",".join(trained)})
    frame = pd.DataFrame(rows)
    keep = [c for c in frame.columns if not c.startswith(("time_", "timestamp", "date",
                                                          "hostname", "node_ip", "pid",
                                                          "checkpoint_dir", "done"))]
    return frame[keep]


def _uar_columns(config: ExperimentConfig) -> list[str]:
    return [f"{d}_{s}" for d in config.defences for s in ("dev", "test")]


def _row_values(frame: pd.DataFrame, config: ExperimentConfig) -> dict:
    """Mean (and spread, with several seeds) of the adversarial UAR in percent."""
    values: dict = {}
    for d in config.defences:
        for s in ("dev", "test"):
            column = f"{d}/{s}/adv_uar"
            series = frame[column].dropna() * 100 if column in frame else pd.Series(dtype=float)
            values[f"{d}_{s}"] = round(series.mean(), 2) if len(series) else np.nan
            values[f"{d}_{s}_std"] = round(series.std(ddof=1), 2) if len(series) > 1 else np.nan
    return values


def _dev_score(frame: pd.DataFrame, trained: list[str]) -> float:
    """Mean adversarial dev UAR over the defences trained on (lambda selection)."""
    return float(np.mean([frame[f"{d}/dev/adv_uar"].mean() for d in trained]))


def _table_row(config: ExperimentConfig, specs: list[AttackTrial], done: pd.DataFrame,
               method: str, trained: tuple[str, ...]) -> dict:
    """One Table-1 row from the stage records of the trials that yield it. A stage recorded
    before a trial failed still counts; the row is ``partial`` when a trial is missing and
    ``failed`` (empty cells) when none recorded it."""
    expected = {t.id: t.lam for t in specs if (method, trained) in t.rows()}
    mine = done[done["trial_id"].isin(list(expected)) & (done["trained"] == ",".join(trained))]
    label = _labels(config, trained)
    if mine.empty:
        return {"method": method, "defences": label, "lambda": np.nan,
                **{c: np.nan for c in _uar_columns(config)}, "seeds": 0, "status": "failed"}
    by_lambda = {lam: part for lam, part in mine.groupby(mine["lambda"].fillna(0.0))}
    lam = min(by_lambda, key=lambda v: (_dev_score(by_lambda[v], list(trained)), v))
    chosen = by_lambda[lam]
    wanted = {i for i, v in expected.items() if (v or 0.0) == lam}
    return {"method": method, "defences": label,
            "lambda": lam if method == "lifelong" else np.nan, **_row_values(chosen, config),
            "seeds": chosen["seed"].nunique(),
            "status": "ok" if set(chosen["trial_id"]) == wanted else "partial"}


def table1(config: ExperimentConfig, trials: pd.DataFrame, defences: dict) -> pd.DataFrame:
    """Table 1: a clean row, then one row per method and defence set (training order); for
    lifelong rows the lambda with the lowest mean adversarial dev UAR over the row's defences."""
    rows = [{"method": "clean", "defences": _labels(config, config.defences), "lambda": np.nan,
             **{f"{d}_{s}": round(100 * defences[d][f"{s}_uar"], 2) if d in defences else np.nan
                for d in config.defences for s in ("dev", "test")},
             "seeds": np.nan, "status": "ok" if len(defences) == len(config.defences)
             else "failed"}]
    done = trials[trials["stage"] >= 0] if "trained" in trials else trials.iloc[0:0]
    specs = attack_trials(config)
    seen: list[tuple[str, tuple[str, ...]]] = []
    for spec in specs:
        for method, trained in spec.rows():
            if (method, trained) in seen or (method in ("transfer", "lifelong")
                                             and len(trained) < 2):
                continue
            seen.append((method, trained))
            rows.append(_table_row(config, specs, done, method, trained))
    table = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(TABLE_METHODS)}
    table = table.sort_values("method", key=lambda s: s.map(order), kind="stable")
    columns = ["method", "defences", "lambda", *_uar_columns(config)]
    if len(config.grid.seeds) > 1:
        columns += ["seeds", *[f"{c}_std" for c in _uar_columns(config)]]
    return table.reindex(columns=columns + ["status"]).reset_index(drop=True)


def lambda_sweep(config: ExperimentConfig, trials: pd.DataFrame) -> pd.DataFrame:
    """Adversarial UAR (percent) of every defence for each lifelong sequence, stage and lambda,
    with transfer as lambda = 0 (no constraint); mean over seeds."""
    if trials.empty or "stage" not in trials:
        return pd.DataFrame()
    chosen = trials[trials["strategy"].isin(["lifelong", "transfer"]) & (trials["stage"] >= 1)
                    & (trials["status"] == "ok")]
    rows = []
    for (sequence, defences, lam), group in chosen.groupby(
            ["sequence", "defences", chosen["lambda"].fillna(0.0)], sort=True):
        rows.append({"sequence": sequence, "defences": defences, "lambda": lam,
                     "seeds": group["seed"].nunique(), **{
                         c: v for c, v in _row_values(group, config).items()
                         if not c.endswith("_std") or group["seed"].nunique() > 1}})
    return pd.DataFrame(rows)


def figure3(config: ExperimentConfig, sweep: pd.DataFrame, path: Path) -> None:
    """UAR of each defence against lambda, one panel per sequence, at its last stage."""
    import matplotlib.pyplot as plt
    if sweep.empty:
        return
    final = sweep.loc[sweep.groupby("sequence")["defences"].transform(
        lambda s: s.str.count(r"\+").max()) == sweep["defences"].str.count(r"\+")]
    sequences = sorted(final["sequence"].unique())
    fig, axes = plt.subplots(1, len(sequences), figsize=(5 * len(sequences), 3.8), squeeze=False,
                             constrained_layout=True)
    for ax, sequence in zip(axes[0], sequences):
        part = final[final["sequence"] == sequence].sort_values("lambda")
        lifelong = part[part["lambda"] > 0]
        for d, spec in config.defences.items():
            line = ax.plot(lifelong["lambda"], lifelong[f"{d}_test"], marker="o", label=spec.label)
            transfer = part[part["lambda"] == 0]
            if not transfer.empty:
                ax.axhline(transfer[f"{d}_test"].iloc[0], ls="--", lw=0.8,
                           color=line[0].get_color())
        ax.set_xscale("log")
        ax.set_xlabel("lambda (dashed: transfer, no constraint)")
        ax.set_ylabel("adversarial test UAR [%]")
        ax.set_title(f"{sequence}: {part['defences'].iloc[0]}", fontsize=9)
        ax.legend(fontsize=8)
    write_atomically(path, lambda tmp: save_png(fig, tmp))


def figure2_png(storage: Path, trials: pd.DataFrame, path: Path) -> bool:
    """Figure 2 from the recorded utterance of the preferred finished trial (lifelong, else
    any); returns whether one was written."""
    order = ["lifelong", "multi-task", "transfer", "single-task"]
    ranked = trials.sort_values("strategy", key=lambda s: s.map(order.index))
    for trial_id, experiment in ranked[["trial_id", "tune_experiment"]].drop_duplicates() \
            .itertuples(index=False):
        recorded = storage / experiment / trial_id / "figure2.npz"
        if recorded.exists():
            data = np.load(recorded)
            fig = figure2(data["real"], data["perturbation"], str(data["label"]),
                          {k: tuple(v) for k, v in json.loads(str(data["predictions"])).items()})
            fig.text(0.01, 0.01, trial_id, fontsize=7)
            write_atomically(path, lambda tmp, fig=fig: save_png(fig, tmp))
            return True
    return False


def _holds(flag: bool | None) -> str:
    return "not testable in this run" if flag is None else ("holds" if flag else "does not hold")


def findings(config: ExperimentConfig, table: pd.DataFrame, sweep: pd.DataFrame) -> str:
    """The paper's four findings, each judged from this run's numbers."""
    names = list(config.defences)
    ok = table[table["status"] != "failed"]
    lines = ["# Findings of this run\n",
             "Each of the paper's findings, judged from this run's test UAR (lower means a "
             "stronger attack). Smoke-scale runs are too small to confirm or refute the paper.\n"]

    single = ok[ok["method"] == "single-task"]
    gaps = []
    for _, row in single.iterrows():
        own = next(n for n in names if config.defences[n].label == row["defences"])
        others = [row[f"{n}_test"] for n in names if n != own]
        gaps.append(np.nanmean(others) - row[f"{own}_test"])
    flag = None if not gaps else bool(np.nanmean(gaps) > 0)
    lines.append(f"1. Single-task attacks transfer poorly: {_holds(flag)}. On average the other "
                 f"defences keep {np.nanmean(gaps) if gaps else float('nan'):.1f} UAR points "
                 "more than the attacked one.\n")

    def mean_test(row) -> float:
        return float(np.nanmean([row[f"{n}_test"] for n in names]))

    widest = ok["defences"].str.count(r"\+").max() if not ok.empty else 0
    full = ok[(ok["defences"].str.count(r"\+") == widest) & (ok["method"] != "clean")]
    means = {f"{r['method']} ({r['defences']})": mean_test(r) for _, r in full.iterrows()}
    multi = {k: v for k, v in means.items() if k.startswith("multi-task")}
    flag = None if not multi or len(means) < 2 else min(means, key=means.get) in multi
    detail = ", ".join(f"{k}: {v:.1f}" for k, v in sorted(means.items(), key=lambda kv: kv[1]))
    lines.append(f"2. Multi-task is the most transferable: {_holds(flag)}. Mean test UAR over "
                 f"all defences with every defence trained on: {detail or 'n/a'}.\n")

    remembered = []
    for sequence, order in config.grid.sequences.items():
        final_label = _labels(config, order)
        transfer = ok[(ok["method"] == "transfer") & (ok["defences"] == final_label)]
        lifelong = ok[(ok["method"] == "lifelong") & (ok["defences"] == final_label)]
        if not transfer.empty and not lifelong.empty:
            first = f"{order[0]}_test"
            remembered.append((sequence, transfer[first].iloc[0], lifelong[first].iloc[0]))
    flag = None if not remembered else all(life < tr for _, tr, life in remembered)
    detail = "; ".join(f"{s}: first defence at {tr:.1f} after transfer, {life:.1f} after "
                       "lifelong" for s, tr, life in remembered)
    lines.append(f"3. Transfer forgets the first defence where lifelong remembers: "
                 f"{_holds(flag)}. {detail or 'n/a'}.\n")

    trends = []
    if not sweep.empty:
        for sequence, order in config.grid.sequences.items():
            part = sweep[(sweep["sequence"] == sequence) & (sweep["lambda"] > 0)
                         & (sweep["defences"] == _labels(config, order))].sort_values("lambda")
            if len(part) >= 2:
                rho = pd.Series(part["lambda"].rank().to_numpy()).corr(
                    pd.Series(part[f"{order[0]}_test"].rank().to_numpy()))
                trends.append((sequence, rho))
    flag = None if not trends else all(rho < 0 for _, rho in trends if not np.isnan(rho))
    detail = "; ".join(f"{s}: rank correlation of lambda with the first defence's UAR "
                       f"{rho:+.2f}" for s, rho in trends)
    lines.append(f"4. A larger lambda retains more of the first defence: {_holds(flag)}. "
                 f"{detail or 'n/a'}.\n")
    return "\n".join(lines)


def write_report(config: ExperimentConfig, results: Path, storage: Path) -> pd.DataFrame:
    """Write every report file into ``results``; returns Table 1."""
    trials = trials_table(config, storage, results)
    write_atomically(results / "trials.parquet", lambda tmp: trials.to_parquet(tmp, index=False))
    table = table1(config, trials, read_defences(results))
    write_atomically(results / "table1.csv", lambda tmp: table.to_csv(tmp, index=False))
    sweep = lambda_sweep(config, trials)
    write_atomically(results / "lambda_sweep.csv", lambda tmp: sweep.to_csv(tmp, index=False))
    figure3(config, sweep, results / "lambda_sweep.png")
    figure2_png(storage, trials, results / "figure2.png")
    write_text_atomically(results / "findings.md", findings(config, table, sweep))
    return table
