"""``findings.md``: each of the paper's findings tested on this run's per-seed numbers.

Every finding is a paired comparison within each seed (the same split, the same defences), so
that the seed-to-seed spread of the defences does not drown the effect. With three or more seeds
a two-sided one-sample t-test on the per-seed differences decides: "holds" (p < 0.05, in the
paper's direction), "does not hold" (p < 0.05, against it), else "inconclusive"; with fewer
seeds it is "inconclusive (n seeds)" and the direction is still given. Effects are in UAR
points on the test split (lambda is chosen on dev, in ``reporter.tables``); positive always
means the paper's direction. The perturbation's SNR is given beside comparisons of two
attacks: an attack that wins only by being louder is not more transferable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from orchestrator.config import ExperimentConfig
from orchestrator.trial_table import trained_on
from trainables import metric_keys as keys

SIGNIFICANCE = 0.05
MIN_SEEDS = 3
LOUDER_DB = 1.0  # an SNR this much lower marks an attack as the louder of two


@dataclass(frozen=True)
class Verdict:
    """Per-seed effects (paper's direction positive) and what they say."""

    effects: np.ndarray
    unit: str = "points"

    @property
    def n(self) -> int:
        return int(np.isfinite(self.effects).sum())

    @property
    def p_value(self) -> float:
        finite = self.effects[np.isfinite(self.effects)]
        if len(finite) < 2:
            return float("nan")
        if np.allclose(finite, finite[0]):  # no spread: certain, unless there is no effect
            return 0.0 if finite[0] != 0 else 1.0
        return float(stats.ttest_1samp(finite, 0.0).pvalue)

    @property
    def word(self) -> str:
        if self.n == 0:
            return "not testable in this run"
        if self.n < MIN_SEEDS or not self.p_value < SIGNIFICANCE:
            return f"inconclusive ({self.n} seed{'s' if self.n != 1 else ''})"
        return "holds" if np.nanmean(self.effects) > 0 else "does not hold"

    def describe(self) -> str:
        """Effect size: mean difference in points, its spread, Cohen's d_z and p."""
        if self.n == 0:
            return "no paired data"
        mean = float(np.nanmean(self.effects))
        text = f"effect {mean:+.2f}" if not self.unit else f"effect {mean:+.1f} {self.unit}"
        if self.n > 1:
            sd = float(np.nanstd(self.effects, ddof=1))
            text += f" (sd {sd:.1f}" + (f", d_z {mean / sd:+.2f}" if sd > 0 else "")
            if np.isfinite(self.p_value):  # "p = 0.000" would claim an exact zero
                text += f", p = {self.p_value:.3f}" if self.p_value >= 0.001 else ", p < 0.001"
            text += f", {self.n} seeds)"
        return text


def _per_seed(trials: pd.DataFrame, strategy: str, trained: Sequence[str], column: str,
              lam: float | None = None, sequence: str | None = None) -> pd.Series:
    """``column`` x 100 by seed for the records of ``strategy`` after training on ``trained``
    (in order), optionally of one lambda and sequence."""
    part = trials[(trials["strategy"] == strategy) & trained_on(trials, trained)]
    if lam is not None:
        part = part[part["lambda"].fillna(0.0) == lam]
    if sequence is not None:
        part = part[part["sequence"] == sequence]
    if part.empty or column not in part:
        return pd.Series(dtype=float)
    return part.groupby("seed")[column].mean() * 100


def _mean_by_seed(series: Iterable[pd.Series]) -> pd.Series:
    """Per-seed mean over several paired series (seeds present in all of them)."""
    frame = pd.concat(list(series), axis=1)
    return frame.dropna().mean(axis=1) if not frame.empty else pd.Series(dtype=float)


def _chosen_lambda(table: pd.DataFrame, label: str) -> float | None:
    rows = table[(table["method"] == "lifelong") & (table["defences"] == label)]
    return None if rows.empty or pd.isna(rows["lambda"].iloc[0]) else float(rows["lambda"].iloc[0])


def _snr(sizes: pd.DataFrame, method: str, label: str) -> float:
    rows = sizes[(sizes["method"] == method) & (sizes["defences"] == label)]
    column = keys.size_column("snr_db", "test")
    return float(rows[column].iloc[0]) if not rows.empty else float("nan")


def _line(number: str, claim: str, verdict: Verdict, detail: str) -> str:
    return f"{number}. {claim}: **{verdict.word}**, {verdict.describe()}. {detail}\n"


def findings(config: ExperimentConfig, trials: pd.DataFrame, table: pd.DataFrame,
             sizes: pd.DataFrame) -> str:
    """The markdown text of ``findings.md`` from the per-trial records ``trials`` (one row per
    trial and stage, UAR in [0, 1]), Table 1 (for the lambdas chosen on dev) and the
    perturbation table."""
    names = config.attacked_defences  # the paper's findings concern the attacked defences
    label = {n: spec.label for n, spec in config.defences.items()}
    # As in Table 1, a stage recorded before a trial failed still counts.
    ok = trials[trials["stage"] >= 1]
    lines = ["# Findings of this run\n",
             "Each finding is a paired comparison within each seed, on the test split (lambda "
             f"chosen on dev); positive effects are in the paper's direction. With {MIN_SEEDS} "
             "or more seeds a t-test on the per-seed effects decides (p < 0.05); with fewer the "
             "verdict is inconclusive and only the direction is shown.\n"]

    def adv(d: str) -> str:
        return keys.uar(d, "test")

    # 0. The attacks beat noise of the same energy.
    noise = _mean_by_seed(_per_seed(ok, "single-task", (d,), keys.uar(d, "test", "noise_uar"))
                          - _per_seed(ok, "single-task", (d,), adv(d)) for d in names)
    lines.append(_line("0", "Each single-task attacker lowers its target more than noise of the "
                          "same energy (its own perturbation, positions shuffled)",
                       Verdict(noise.to_numpy()), "Measured as noise-control UAR minus adversarial "
                       "UAR on the attacked defence, mean over the single-task attackers."))

    # 1. Single-task attacks transfer poorly.
    gaps = _mean_by_seed(
        _mean_by_seed(_per_seed(ok, "single-task", (d,), adv(o)) for o in names if o != d)
        - _per_seed(ok, "single-task", (d,), adv(d)) for d in names)
    lines.append(_line("1", "Single-task attacks transfer poorly", Verdict(gaps.to_numpy()),
                       "Measured as the other defences' UAR minus the attacked one's, mean over the "
                       "single-task attackers."))

    # 2. Multi-task is the most transferable; 3. transfer forgets; 4. lifelong forgets less;
    # 5. a larger lambda keeps more of the first defence.
    multi_gain, forgetting, remembered, trend = [], {}, [], []
    snr_notes = []
    for sequence, order in config.grid.sequences.items():
        full_label = " + ".join(label[d] for d in order)
        everyone = _mean_by_seed(_per_seed(ok, "transfer", order, adv(d), sequence=sequence)
                                 for d in names)
        multi_trained = next((tuple(t) for t in ok.loc[ok["strategy"] == "multi-task",
                                                       "defences"]
                              if set(t) == set(order)), None)
        lam = _chosen_lambda(table, full_label)
        lifelong_all = _mean_by_seed(_per_seed(ok, "lifelong", order, adv(d), lam, sequence)
                                     for d in names) if lam is not None else pd.Series(dtype=float)
        if multi_trained is not None:
            multi = _mean_by_seed(_per_seed(ok, "multi-task", multi_trained, adv(d))
                                  for d in names)
            best_other = pd.concat([everyone, lifelong_all], axis=1).min(axis=1, skipna=True)
            multi_gain.append(best_other - multi)
            multi_label = " + ".join(label[d] for d in multi_trained)
            snr = {m: _snr(sizes, m, multi_label if m == "multi-task" else full_label)
                   for m in ("multi-task", "transfer", "lifelong")}
            note = f"{sequence}: SNR " + ", ".join(f"{m} {v:.1f} dB" for m, v in snr.items())
            quietest_other = max(snr["transfer"], snr["lifelong"])
            if snr["multi-task"] < quietest_other - LOUDER_DB:
                note += (" (multi-task's perturbation is the louder one: a lower UAR bought "
                         "with more energy is not evidence of transferability)")
            snr_notes.append(note)
        first = order[0]
        after_first = _per_seed(ok, "transfer", (first,), adv(first), sequence=sequence)
        after_all = _per_seed(ok, "transfer", order, adv(first), sequence=sequence)
        forgetting[sequence] = after_all - after_first
        if lam is not None:
            remembered.append(after_all - _per_seed(ok, "lifelong", order, adv(first), lam,
                                                    sequence))
        sweep = ok[(ok["strategy"] == "lifelong") & (ok["sequence"] == sequence)
                   & trained_on(ok, order)]
        rhos = {}
        for seed, part in sweep.groupby("seed"):
            if part["lambda"].nunique() < 2:
                continue
            # A UAR that does not move with lambda has no rank correlation (said without
            # scipy's warning on the console).
            rho = stats.spearmanr(part["lambda"], part[adv(first)]).statistic \
                if part[adv(first)].nunique() >= 2 else np.nan
            rhos[seed] = -rho if np.isfinite(rho) else np.nan
        trend.append(pd.Series(rhos, dtype=float))

    lines.append(_line("2", "Multi-task is the most transferable",
                       Verdict(_mean_by_seed(multi_gain).to_numpy() if multi_gain
                               else np.array([])),
                       "Measured as the best sequential strategy's mean UAR over all defences minus "
                       "multi-task's, after every defence is trained on. "
                       + ("; ".join(snr_notes) + "." if snr_notes else "")))
    lines.append(_line("3", "Transfer forgets the first defence",
                       Verdict(_mean_by_seed(forgetting.values()).to_numpy() if forgetting
                               else np.array([])),
                       "Measured as the first defence's UAR after the last stage minus after the "
                       "first. " + "; ".join(f"{s}: {v.mean():+.1f}" for s, v in
                                             forgetting.items() if len(v))
                       + "."))
    if {"clockwise", "counterclockwise"} <= set(forgetting):
        order_effect = (forgetting["clockwise"] - forgetting["counterclockwise"]).dropna()
        lines.append(_line("3b", "... most in the clockwise order (CNN-4 first)",
                           Verdict(order_effect.to_numpy()), "Measured as clockwise forgetting "
                           "minus counterclockwise forgetting."))
    lines.append(_line("4", "Lifelong forgets the first defence less than transfer",
                       Verdict(_mean_by_seed(remembered).to_numpy() if remembered
                               else np.array([])),
                       "Measured as the first defence's UAR after the last stage, transfer minus "
                       "lifelong (lambda chosen on dev)."))
    lines.append(_line("5", "A larger lambda keeps more of the first defence (Figure 3)",
                       Verdict(_mean_by_seed(trend).to_numpy() if trend else np.array([]),
                               unit=""),
                       "Measured as minus the Spearman correlation of lambda with the first "
                       "defence's UAR after the last stage (+1: a perfect trend)."))
    lines += _beyond_the_paper(config, ok, table, sizes, names, label)
    return "\n".join(lines)


def _beyond_the_paper(config: ExperimentConfig, ok: pd.DataFrame, table: pd.DataFrame,
                      sizes: pd.DataFrame, names: list[str], label: dict[str, str]) -> list[str]:
    """6: what the input-dependent attacker buys over a universal perturbation; 7: which
    strategy transfers best to the held-out defences, which no stage ever attacked."""
    lines = []
    if "universal" in config.grid.strategies:
        gains = _mean_by_seed(_per_seed(ok, "universal", (d,), keys.uar(d, "test"))
                              - _per_seed(ok, "single-task", (d,), keys.uar(d, "test"))
                              for d in names)
        snr = ", ".join(f"{label[d]}: attacker {_snr(sizes, 'single-task', label[d]):.1f} dB, "
                        f"universal {_snr(sizes, 'universal', label[d]):.1f} dB" for d in names)
        lines.append(_line("6", "The input-dependent attacker beats a universal perturbation on "
                                "its target", Verdict(gains.to_numpy()),
                           "Measured as the universal perturbation's UAR on the defence it was "
                           f"trained on minus the single-task attacker's. SNR: {snr}."))
    for held in config.held_out_defences:
        column = keys.table_column(held, "test")
        rows = table[~table["method"].isin(["clean", "noise"])].dropna(subset=[column])
        if rows.empty:
            continue
        clean = table.loc[table["method"] == "clean", column]
        ranked = rows.sort_values(column).head(5)
        listing = "; ".join(f"{r.method} on {r.defences}: {r[column]:.1f} at "
                            f"{_snr(sizes, r.method, r.defences):.1f} dB SNR"
                            for _, r in ranked.iterrows())
        best = ranked.iloc[0]
        lines.append(f"7. Transfer to {label[held]}, held out (never attacked): the lowest "
                     f"adversarial test UAR is {best.method}'s on {best.defences} "
                     f"({best[column]:.1f}, clean "
                     f"{clean.iloc[0] if len(clean) else float('nan'):.1f}). Lowest five: "
                     f"{listing}. A lower UAR at a lower SNR may only be a louder "
                     "perturbation.\n")
    return lines
