"""``findings.md``: each of the paper's claims tested on this run's per-seed numbers, with the
paper's own effect beside it.

Every finding is a paired comparison within each seed (the same split, the same defences), so
that the seed-to-seed spread of the defences does not drown the effect. Its *measure* is one
function of a ``Source``: this run's records give one value per seed, the paper's Table 1
(``orchestrator.paper``) one value, computed the same way ("paper +24.6, ours +21.6").

With three or more seeds a two-sided one-sample t-test on the per-seed effects decides, its
p-value corrected for testing every finding at once (Holm): "holds" (corrected p < 0.05, in the
paper's direction), "does not hold" (against it), else "inconclusive", with the number of seeds
that would decide it with 80 % power at the observed effect. A claim of *comparability* is an
equivalence test instead (two one-sided tests against a margin of ``EQUIVALENCE_MARGIN``
points). Effects are in UAR points on the test split (lambda chosen on dev, in
``reporter.tables``); positive always means the paper's direction, and every effect has its 95 %
confidence interval. The perturbation's SNR is given beside comparisons of two attacks: an
attack that wins only by being louder is not more transferable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

from orchestrator.config import ExperimentConfig
from orchestrator.grid import surrogate_sets
from orchestrator.paper import paper_table1
from orchestrator.trial_table import trained_on
from orchestrator.verdict import MIN_SEEDS, POWER, Verdict, holm
from trainables import metric_keys as keys
from trainables.stages import BASELINES

LOUDER_DB = 1.0  # an SNR this much lower marks an attack as the louder of two
EQUIVALENCE_MARGIN = 5.0  # UAR points: "comparable" means within this of each other


class Source:
    """Test-split UAR in percent by seed for a Table-1 row (``method`` after training on
    ``trained``, in order; lifelong at the lambda chosen on dev), and each defence's clean UAR:
    from a run's records, or from the paper's table (one value, seed 0)."""

    def uar(self, method: str, trained: tuple[str, ...], defence: str,
            kind: str = "adv_uar") -> pd.Series:
        raise NotImplementedError

    def clean(self, defence: str) -> pd.Series:
        raise NotImplementedError

    def chosen_lambdas(self, sequence: str, trained: tuple[str, ...]) -> pd.Series:
        """The lambda chosen on dev for a lifelong row, by seed."""
        raise NotImplementedError


class RunSource(Source):
    """A run's stage records (one row per trial and stage, UAR in [0, 1]), Table 1 (for the
    lambda chosen on dev) and its defences' clean UAR by grid seed (``defences.json``)."""

    def __init__(self, config: ExperimentConfig, trials: pd.DataFrame, table: pd.DataFrame,
                 defences: dict) -> None:
        self.config, self.table, self.defences = config, table, defences
        self.trials = trials[trials["stage"] >= 1]  # a stage recorded before a failure counts

    def _label(self, trained: Iterable[str]) -> str:
        return " + ".join(self.config.defences[d].label for d in trained)

    def _records(self, method: str, trained: tuple[str, ...]) -> pd.DataFrame:
        part = self.trials[(self.trials["strategy"] == method) & trained_on(self.trials, trained)]
        if method == "lifelong":
            rows = self.table[(self.table["method"] == "lifelong")
                              & (self.table["defences"] == self._label(trained))]
            if rows.empty or pd.isna(rows["lambda"].iloc[0]):
                return part.iloc[0:0]
            part = part[part["lambda"] == float(rows["lambda"].iloc[0])]
        return part

    def uar(self, method, trained, defence, kind="adv_uar"):
        part = self._records(method, tuple(trained))
        column = keys.uar(defence, "test", kind)
        if part.empty or column not in part:
            return pd.Series(dtype=float)
        return part.groupby("seed")[column].mean() * 100

    def clean(self, defence):
        seeds = self.defences.get(defence, {})
        metric = keys.uar(defence, "test", "clean_uar")
        return pd.Series({int(s): m[metric] * 100 for s, m in seeds.items()}, dtype=float)

    def chosen_lambdas(self, sequence, trained):
        part = self.trials[(self.trials["strategy"] == "lifelong")
                           & (self.trials["sequence"] == sequence)
                           & trained_on(self.trials, trained)]
        if part.empty:
            return pd.Series(dtype=float)
        dev = [keys.uar(d, "dev") for d in trained]
        scores = part.assign(score=part[dev].mean(axis=1))
        # As in Table 1: the lowest mean adversarial dev UAR, the smaller lambda on a tie.
        best = scores.sort_values(["seed", "score", "lambda"]).groupby("seed").first()
        return best["lambda"].astype(float)

    def sweep(self, sequence: str, order: tuple[str, ...]) -> pd.DataFrame:
        """Every lambda's record after the last stage of ``sequence``."""
        return self.trials[(self.trials["strategy"] == "lifelong")
                           & (self.trials["sequence"] == sequence)
                           & trained_on(self.trials, order)]


class PaperSource(Source):
    """The paper's Table 1, read through the defences' labels of this run's config (its
    ``CNN-4``, ``VGG-16``, ``ResNet-50``): one value, seed 0, where the paper has the row."""

    def __init__(self, config: ExperimentConfig, table: pd.DataFrame | None = None) -> None:
        self.config = config
        self.table = paper_table1() if table is None else table

    def _row(self, method: str, trained: tuple[str, ...]) -> pd.DataFrame:
        label = " + ".join(self.config.defences[d].label for d in trained)
        return self.table[(self.table["method"] == method) & (self.table["defences"] == label)]

    def uar(self, method, trained, defence, kind="adv_uar"):
        row = self._row(method, tuple(trained))
        column = keys.table_column(defence, "test")
        if kind != "adv_uar" or row.empty or column not in row or pd.isna(row[column].iloc[0]):
            return pd.Series(dtype=float)
        return pd.Series({0: float(row[column].iloc[0])})

    def clean(self, defence):
        return pd.Series(dtype=float)  # the paper prints no clean row

    def chosen_lambdas(self, sequence, trained):
        row = self._row("lifelong", tuple(trained))
        if row.empty or pd.isna(row["lambda"].iloc[0]):
            return pd.Series(dtype=float)
        return pd.Series({0: float(row["lambda"].iloc[0])})


def _mean_by_seed(series: Iterable[pd.Series]) -> pd.Series:
    """Per-seed mean over several paired series (seeds present in all of them). A series
    with no value at all is a row the source does not have (the paper prints no VGG-16
    single-task row) and is left out, rather than emptying the mean."""
    present = [s for s in series if not s.dropna().empty]
    if not present:
        return pd.Series(dtype=float)
    return pd.concat(present, axis=1).dropna().mean(axis=1)


@dataclass(frozen=True)
class Finding:
    """One claim: its number, its words, how it is measured (in words, and as a function of a
    ``Source`` giving the per-seed effect), and whether it is an equivalence claim."""

    number: str
    claim: str
    measure: str
    effect: Callable[[Source], pd.Series]
    unit: str = "points"
    margin: float | None = None
    note: Callable[[], str] = lambda: ""


def paper_findings(config: ExperimentConfig) -> list[Finding]:
    """The claims of the paper's section 4.3 that this config's grid can test."""
    names = config.attacked_defences  # the paper's findings concern the attacked defences
    sequences = config.grid.sequences
    findings: list[Finding] = []

    def single(d: str) -> tuple[str, ...]:
        return (d,)

    findings.append(Finding(
        "0", "Each single-task attacker lowers its target more than noise of the same energy "
             "(its own perturbation, positions shuffled)",
        "noise-control UAR minus adversarial UAR on the attacked defence, mean over the "
        "single-task attackers",
        lambda s: _mean_by_seed(s.uar("single-task", single(d), d, "noise_uar")
                                - s.uar("single-task", single(d), d) for d in names)))
    findings.append(Finding(
        "1", "Single-task attacks transfer poorly",
        "the other defences' UAR minus the attacked one's, mean over the single-task attackers",
        lambda s: _mean_by_seed(
            _mean_by_seed(s.uar("single-task", single(d), o) for o in names if o != d)
            - s.uar("single-task", single(d), d) for d in names)))

    def multi_gain(s: Source) -> pd.Series:
        gains = []
        for order in sequences.values():
            order = tuple(order)
            transfer = _mean_by_seed(s.uar("transfer", order, d) for d in names)
            lifelong = _mean_by_seed(s.uar("lifelong", order, d) for d in names)
            multi = _multi_task_uar(s, order, names)
            best_other = pd.concat([transfer, lifelong], axis=1).min(axis=1, skipna=True)
            gains.append(best_other - multi)
        return _mean_by_seed(gains)

    findings.append(Finding(
        "2", "Multi-task is the most transferable",
        "the best sequential strategy's mean UAR over all defences minus multi-task's, after "
        "every defence is trained on, mean over the sequences", multi_gain))

    def forgetting(s: Source, sequence: str) -> pd.Series:
        order = tuple(sequences[sequence])
        first = order[0]
        return s.uar("transfer", order, first) - s.uar("single-task", (first,), first)

    findings.append(Finding(
        "3", "Transfer forgets the first defence",
        "the first defence's UAR after the last stage minus after the first (the single-task "
        "attacker on it, which is transfer's first stage), mean over the sequences",
        lambda s: _mean_by_seed(forgetting(s, q) for q in sequences)))
    if {"clockwise", "counterclockwise"} <= set(sequences):
        findings.append(Finding(
            "3b", "... most in the clockwise order (CNN-4 first)",
            "clockwise forgetting minus counterclockwise forgetting",
            lambda s: forgetting(s, "clockwise") - forgetting(s, "counterclockwise")))
    if "lifelong" in config.grid.strategies:
        findings.append(Finding(
            "4", "Lifelong forgets the first defence less than transfer",
            "the first defence's UAR after the last stage, transfer minus lifelong (lambda "
            "chosen on dev), mean over the sequences",
            lambda s: _mean_by_seed(
                s.uar("transfer", tuple(o), o[0]) - s.uar("lifelong", tuple(o), o[0])
                for o in sequences.values())))
        findings.append(Finding(
            "5", "A larger lambda keeps more of the first defence (Figure 3)",
            "minus the Spearman correlation of lambda with the first defence's UAR after the "
            "last stage, by seed, mean over the sequences (+1: a perfect trend)",
            lambda s: _lambda_trend(s, sequences), unit=""))
        if {"clockwise", "counterclockwise"} <= set(sequences):
            findings.append(Finding(
                "5a", "The clockwise sequences need a larger lambda than the counterclockwise",
                "log10 of the lambda chosen on dev, clockwise minus counterclockwise, by "
                "sequence length (2 and 3 defences: each seed's own choice), mean over the "
                "lengths", lambda s: _lambda_order(s, sequences), unit="decades"))
    if {"clockwise", "counterclockwise"} <= set(sequences) and \
            "single-task" in config.grid.strategies:
        shallow, deep = sequences["clockwise"][0], sequences["counterclockwise"][0]
        findings.append(Finding(
            "5b", f"An attacker trained on a shallow defence ({config.defences[shallow].label}) "
                  f"transfers better than one trained on a deep one "
                  f"({config.defences[deep].label})",
            f"how far the {config.defences[shallow].label} attacker lowers "
            f"{config.defences[deep].label} below its clean UAR, minus how far the "
            f"{config.defences[deep].label} attacker lowers {config.defences[shallow].label}",
            lambda s: (s.clean(deep) - s.uar("single-task", (shallow,), deep))
            - (s.clean(shallow) - s.uar("single-task", (deep,), shallow))))
    if "lifelong" in config.grid.strategies and "transfer" in config.grid.strategies and \
            {"clockwise", "counterclockwise"} <= set(sequences):
        findings.append(Finding(
            "5c", "Lifelong beats transfer on the clockwise sequences",
            "transfer's mean UAR over all defences minus lifelong's, after 2 and after 3 "
            "defences of the clockwise order, mean over the two",
            lambda s: _transfer_minus_lifelong(s, sequences["clockwise"], names)))
        findings.append(Finding(
            "5d", "... and is comparable to it on the counterclockwise sequences",
            "5c's measure on the counterclockwise order, tested for equivalence",
            lambda s: _transfer_minus_lifelong(s, sequences["counterclockwise"], names),
            margin=EQUIVALENCE_MARGIN))
    return findings


def _multi_task_uar(s: Source, order: tuple[str, ...], names: list[str]) -> pd.Series:
    """Multi-task's mean UAR over ``names`` for the set of ``order`` (multi-task trains one
    stage on the set, recorded in the grid's order of its first sequence)."""
    for candidate in (order, *_permutations_seen(s, order)):
        multi = _mean_by_seed(s.uar("multi-task", candidate, d) for d in names)
        if not multi.empty:
            return multi
    return pd.Series(dtype=float)


def _permutations_seen(s: Source, order: tuple[str, ...]) -> list[tuple[str, ...]]:
    if isinstance(s, RunSource):
        seen = s.trials.loc[s.trials["strategy"] == "multi-task", "defences"].map(tuple)
        return [t for t in dict.fromkeys(seen) if set(t) == set(order) and t != order]
    import itertools

    return [p for p in itertools.permutations(order) if p != order]


def _lambda_trend(s: Source, sequences: dict) -> pd.Series:
    if not isinstance(s, RunSource):
        return pd.Series(dtype=float)  # the paper's table has one lambda per row
    trends = []
    for sequence, order in sequences.items():
        first = keys.uar(order[0], "test")
        rhos = {}
        for seed, part in s.sweep(sequence, tuple(order)).groupby("seed"):
            if part["lambda"].nunique() < 2:
                continue
            # A UAR that does not move with lambda has no rank correlation (said without
            # scipy's warning on the console).
            rho = stats.spearmanr(part["lambda"], part[first]).statistic \
                if part[first].nunique() >= 2 else np.nan
            rhos[seed] = -rho if np.isfinite(rho) else np.nan
        trends.append(pd.Series(rhos, dtype=float))
    return _mean_by_seed(trends)


def _lambda_order(s: Source, sequences: dict) -> pd.Series:
    clockwise, counter = sequences["clockwise"], sequences["counterclockwise"]
    lengths = range(2, min(len(clockwise), len(counter)) + 1)
    return _mean_by_seed(
        np.log10(s.chosen_lambdas("clockwise", tuple(clockwise[:k])))
        - np.log10(s.chosen_lambdas("counterclockwise", tuple(counter[:k]))) for k in lengths)


def _transfer_minus_lifelong(s: Source, order: list[str], names: list[str]) -> pd.Series:
    """Transfer's mean UAR over ``names`` minus lifelong's, after each prefix of two or more
    defences of ``order``, mean over the prefixes."""
    return _mean_by_seed(
        _mean_by_seed(s.uar("transfer", tuple(order[:k]), d) for d in names)
        - _mean_by_seed(s.uar("lifelong", tuple(order[:k]), d) for d in names)
        for k in range(2, len(order) + 1))


def _snr(sizes: pd.DataFrame, method: str, label: str) -> float:
    rows = sizes[(sizes["method"] == method) & (sizes["defences"] == label)]
    column = keys.size_column("snr_db", "test")
    return float(rows[column].iloc[0]) if not rows.empty else float("nan")


def _paper_text(effects: pd.Series, unit: str) -> str:
    finite = effects.dropna()
    if finite.empty:
        return "paper: not in its Table 1"
    return f"paper {float(finite.iloc[0]):+.1f}" + (f" {unit}" if unit else "")


def _tested_text(count: int) -> str:
    if count:
        return f"{count} in this run"
    return f"none in this run: a test needs {MIN_SEEDS} or more seeds"


def _line(finding: Finding, verdict: Verdict, paper: pd.Series, detail: str = "") -> str:
    return (f"{finding.number}. {finding.claim}: **{verdict.word}**, {verdict.describe()}; "
            f"{_paper_text(paper, finding.unit)}. Measured as {finding.measure}."
            f"{' ' + detail if detail else ''}\n")


def _snr_notes(config: ExperimentConfig, sizes: pd.DataFrame, table: pd.DataFrame) -> str:
    """Finding 2's SNRs: multi-task's against the sequential strategies' on the full set."""
    notes = []
    label = {n: spec.label for n, spec in config.defences.items()}
    multi_labels = set(table.loc[table["method"] == "multi-task", "defences"])
    for sequence, order in config.grid.sequences.items():
        full = " + ".join(label[d] for d in order)
        multi = next((m for m in multi_labels if set(m.split(" + ")) == set(full.split(" + "))),
                     None)
        if multi is None:
            continue
        snr = {m: _snr(sizes, m, multi if m == "multi-task" else full)
               for m in ("multi-task", "transfer", "lifelong")}
        note = f"{sequence}: SNR " + ", ".join(f"{m} {v:.1f} dB" for m, v in snr.items())
        if snr["multi-task"] < max(snr["transfer"], snr["lifelong"]) - LOUDER_DB:
            note += (" (multi-task's perturbation is the louder one: a lower UAR bought with "
                     "more energy is not evidence of transferability)")
        notes.append(note)
    return "; ".join(notes) + "." if notes else ""


def findings(config: ExperimentConfig, trials: pd.DataFrame, table: pd.DataFrame,
             sizes: pd.DataFrame, defences: dict | None = None,
             queries: pd.DataFrame | None = None) -> str:
    """The markdown text of ``findings.md`` from the per-trial records ``trials`` (one row per
    trial and stage, UAR in [0, 1]), Table 1 (for the lambdas chosen on dev), the perturbation
    table, the defences' clean UAR by grid seed (``defences.json``) and ``query_attack.csv``'s
    table (``reporter.query_table``), if any."""
    ours, paper = RunSource(config, trials, table, defences or {}), PaperSource(config)
    claims = paper_findings(config)
    verdicts = [Verdict(c.effect(ours).to_numpy(dtype=float), c.unit, c.margin)
                for c in claims]
    testable = [i for i, v in enumerate(verdicts) if v.n >= MIN_SEEDS]
    adjusted = holm([verdicts[i].p_value for i in testable])
    for i, p in zip(testable, adjusted):
        verdicts[i] = replace(verdicts[i], p_adjusted=p)
    lines = ["# Findings of this run\n",
             "Each finding is a paired comparison within each seed, on the test split (lambda "
             "chosen on dev); positive effects are in the paper's direction, each with its 95% "
             f"confidence interval. With {MIN_SEEDS} or more seeds a t-test on the per-seed "
             "effects decides, at p < 0.05 after Holm's correction for the findings tested "
             f"at once ({_tested_text(len(testable))}); a claim of comparability is two "
             f"one-sided tests against +-{EQUIVALENCE_MARGIN:g} points. An inconclusive "
             f"verdict gives the seeds that would decide it with {POWER:.0%} power if the "
             "observed effect is the true one (before the correction). Beside each: the "
             "paper's effect, computed the same way from its Table 1 (one draw, DEMoS).\n"]
    for claim, verdict in zip(claims, verdicts):
        detail = _snr_notes(config, sizes, table) if claim.number == "2" else ""
        lines.append(_line(claim, verdict, claim.effect(paper), detail))
    lines += _beyond_the_paper(config, ours, table, sizes)
    lines += _queries_to_match(queries)
    lines += _each_attacker_checked(config, ours)
    return "\n".join(lines)


# What every single-task attacker must do on every seed for a run's table to show the effect
# (UAR points, test split): lower its target this much, this much more than the mean of the
# other attacked defences, and this much more than its noise control.
ATTACKER_CHECK = {"drop": 25.0, "specific": 10.0, "above_noise": 15.0}


def _each_attacker_checked(config: ExperimentConfig, ours: RunSource) -> list[str]:
    """9: the single-task attackers one by one, seed by seed, against ``ATTACKER_CHECK``: a
    mean over seeds can hide the one draw whose attacker does not work (or transfers as well as
    it hits)."""
    names = config.attacked_defences
    label = {n: spec.label for n, spec in config.defences.items()}
    if "single-task" not in config.grid.strategies or len(names) < 2:
        return []
    drops = {d: ours.clean(d) - ours.uar("single-task", (d,), d) for d in names}
    results, failing = 0, []
    for d in names:
        others = _mean_by_seed(ours.clean(o) - ours.uar("single-task", (d,), o)
                               for o in names if o != d)
        noise = ours.uar("single-task", (d,), d, "noise_uar") - ours.uar("single-task", (d,), d)
        frame = pd.concat({"drop": drops[d], "specific": drops[d] - others,
                           "above_noise": noise}, axis=1).dropna()
        for seed, row in frame.iterrows():
            results += 1
            if any(row[k] < limit for k, limit in ATTACKER_CHECK.items()):
                failing.append(f"{label[d]} on seed {seed} (drop {row['drop']:.1f}, "
                               f"{row['specific']:+.1f} over the others, "
                               f"{row['above_noise']:+.1f} over noise)")
    if not results:
        return []
    rule = (f"lowers its target by at least {ATTACKER_CHECK['drop']:g} points, at least "
            f"{ATTACKER_CHECK['specific']:g} more than the mean of the other attacked defences "
            f"and at least {ATTACKER_CHECK['above_noise']:g} more than its noise control")
    return [f"9. Each single-task attacker, seed by seed, {rule} (test UAR against the "
            f"defence's clean UAR): {results - len(failing)} of {results} do"
            + (f"; not: {'; '.join(failing)}." if failing else ".") + "\n"]


def _queries_to_match(queries: pd.DataFrame | None) -> list[str]:
    """8b: per held-out defence, the fewest queries per utterance after which the Square
    attack's UAR (mean over seeds) is at or below the generator's zero-query transfer."""
    if queries is None or queries.empty:
        return []
    lines = []
    for defence, part in queries.groupby("defence"):
        mean = part.groupby("queries")[["uar", "snr_db"]].mean()
        if 0 not in mean.index or len(mean) < 2:
            continue
        transfer, transfer_snr = mean.loc[0, "uar"], mean.loc[0, "snr_db"]
        curve = mean.drop(index=0)
        matched = curve[curve["uar"] <= transfer]
        listing = ", ".join(f"{q:,} queries {r.uar:.1f} at {r.snr_db:.1f} dB"
                            for q, r in curve.iterrows())
        if matched.empty:
            verdict = (f"not within {curve.index.max():,} queries per utterance (its UAR stays "
                       f"above the generator's {transfer:.1f})")
        else:
            verdict = (f"{matched.index.min():,} queries per utterance (UAR "
                       f"{matched['uar'].iloc[0]:.1f} against the generator's {transfer:.1f})")
        lines.append(f"8b. Queries the Square attack needs on {defence}, held out, to match "
                     f"the generator's transfer to it without any query: {verdict}. The "
                     f"generator's SNR {transfer_snr:.1f} dB; the Square attack's: {listing} "
                     "(its eps makes +-eps everywhere as loud as the generator; it spends "
                     "less, so a higher SNR is a quieter attack).\n")
    return lines


def _recorded_order(s: RunSource, method: str, defences: tuple[str, ...]) -> tuple[str, ...]:
    """The order in which ``method``'s trial on the set ``defences`` recorded them (a
    multi-task trial keeps its first sequence's order; a baseline the surrogate set's)."""
    seen = s.trials.loc[s.trials["strategy"] == method, "defences"].map(tuple)
    return next((t for t in dict.fromkeys(seen) if set(t) == set(defences)), defences)


def _generator_against_baselines(config: ExperimentConfig, ours: RunSource,
                                 sizes: pd.DataFrame) -> list[str]:
    """8: per surrogate set, the generator trained on it (single-task for one defence,
    multi-task for a set) against the per-example baseline that transfers best from it, on the
    defences neither was computed on (held-out ones included), paired within seeds. The best
    baseline is chosen by its mean over seeds (choosing it per seed would favour the
    baselines), and each SNR is given beside it: two rows more than ``LOUDER_DB`` apart are
    not at the same perturbation size, and the louder is named."""
    methods = [m for m in BASELINES if m in config.grid.strategies]
    if not methods:
        return []
    label = {n: spec.label for n, spec in config.defences.items()}
    lines = []
    for surrogates in surrogate_sets(config):
        targets = [d for d in config.defences if d not in surrogates]
        generator = "single-task" if len(surrogates) == 1 else "multi-task"
        if not targets or generator not in config.grid.strategies:
            continue

        def transfer(method: str, surrogates=surrogates, targets=targets) -> pd.Series:
            trained = _recorded_order(ours, method, surrogates)
            return _mean_by_seed(ours.uar(method, trained, d) for d in targets)

        ours_generator = transfer(generator)
        baselines = {m: u for m in methods if not (u := transfer(m)).empty}
        if ours_generator.empty or not baselines:
            continue
        best = min(baselines, key=lambda m: baselines[m].mean())
        effect = (baselines[best] - ours_generator).dropna()
        verdict = Verdict(effect.to_numpy(dtype=float))
        name = " + ".join(label[d] for d in surrogates)
        snr = {m: _snr(sizes, m, " + ".join(label[d] for d in _recorded_order(ours, m, surrogates)))
               for m in (generator, best)}
        louder = ""
        if abs(snr[generator] - snr[best]) > LOUDER_DB:
            loud = min(snr, key=snr.get)
            louder = (f" Not at the same perturbation size: {loud}'s is the louder by "
                      f"{abs(snr[generator] - snr[best]):.1f} dB.")
        listing = ", ".join(f"{m} {u.mean():.1f}" for m, u in baselines.items())
        lines.append(
            f"8. The generator transfers better than per-example attacks at the same SNR, from "
            f"{name}: **{verdict.word}**, {verdict.describe()}. Measured as the best baseline's "
            f"({best}) mean adversarial test UAR on the defences neither was computed on "
            f"({', '.join(label[d] for d in targets)}) minus the {generator} generator's "
            f"({ours_generator.mean():.1f}); every baseline's: {listing}. SNR (test): "
            f"{generator} {snr[generator]:.1f} dB, {best} {snr[best]:.1f} dB.{louder}\n")
    return lines


def _beyond_the_paper(config: ExperimentConfig, ours: RunSource, table: pd.DataFrame,
                      sizes: pd.DataFrame) -> list[str]:
    """6: what the input-dependent attacker buys over a universal perturbation; 7: which
    strategy transfers best to the held-out defences, which no stage ever attacked; 8: the
    generator against the per-example baselines from the same defences."""
    names = config.attacked_defences
    label = {n: spec.label for n, spec in config.defences.items()}
    lines = []
    if "universal" in config.grid.strategies:
        gains = _mean_by_seed(ours.uar("universal", (d,), d) - ours.uar("single-task", (d,), d)
                              for d in names)
        snr = ", ".join(f"{label[d]}: attacker {_snr(sizes, 'single-task', label[d]):.1f} dB, "
                        f"universal {_snr(sizes, 'universal', label[d]):.1f} dB" for d in names)
        verdict = Verdict(gains.to_numpy(dtype=float))
        lines.append(f"6. The input-dependent attacker beats a universal perturbation on its "
                     f"target: **{verdict.word}**, {verdict.describe()}. Measured as the "
                     "universal perturbation's UAR on the defence it was trained on minus the "
                     f"single-task attacker's. SNR: {snr}.\n")
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
    return lines + _generator_against_baselines(config, ours, sizes)
