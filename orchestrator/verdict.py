"""What a set of per-seed paired effects says: a t-test (or, for a claim of comparability, two
one-sided tests against a margin), its 95 % confidence interval, Holm's correction across the
findings of a run, and how many seeds would decide an inconclusive one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

SIGNIFICANCE = 0.05
MIN_SEEDS = 3
POWER = 0.8
MAX_SEEDS = 1000  # the largest seed count a power computation reports


@dataclass(frozen=True)
class Verdict:
    """Per-seed effects (paper's direction positive) and what they say. ``margin``: the claim
    is equivalence (|effect| < margin), tested by two one-sided tests. ``p_adjusted``: the
    p-value after the correction for every finding of the run (Holm), once known."""

    effects: np.ndarray
    unit: str = "points"
    margin: float | None = None
    p_adjusted: float | None = None

    @property
    def finite(self) -> np.ndarray:
        return self.effects[np.isfinite(self.effects)]

    @property
    def n(self) -> int:
        return len(self.finite)

    @property
    def mean(self) -> float:
        return float(self.finite.mean()) if self.n else float("nan")

    @property
    def sd(self) -> float:
        return float(self.finite.std(ddof=1)) if self.n > 1 else float("nan")

    @property
    def p_value(self) -> float:
        """Two-sided t-test against 0, or for an equivalence claim the larger of the two
        one-sided p-values against -margin and +margin."""
        x = self.finite
        if len(x) < 2:
            return float("nan")
        if np.allclose(x, x[0]):  # no spread: certain, one way or the other
            if self.margin is not None:
                return 0.0 if abs(x[0]) < self.margin else 1.0
            return 0.0 if x[0] != 0 else 1.0
        if self.margin is not None:
            lower = stats.ttest_1samp(x, -self.margin, alternative="greater").pvalue
            upper = stats.ttest_1samp(x, self.margin, alternative="less").pvalue
            return float(max(lower, upper))
        return float(stats.ttest_1samp(x, 0.0).pvalue)

    @property
    def decisive_p(self) -> float:
        return self.p_value if self.p_adjusted is None else self.p_adjusted

    @property
    def ci95(self) -> tuple[float, float]:
        if self.n < 2 or not np.isfinite(self.sd):
            return float("nan"), float("nan")
        half = stats.t.ppf(0.975, self.n - 1) * self.sd / np.sqrt(self.n)
        return self.mean - half, self.mean + half

    @property
    def seeds_needed(self) -> int | None:
        """The seeds a paired t-test needs to decide this effect with ``POWER`` at
        ``SIGNIFICANCE``, if the observed mean and spread are the truth (for an equivalence
        claim: the one-sided test against the nearer margin). ``None`` with no spread to go by
        or no effect at all."""
        if self.n < 2 or not np.isfinite(self.sd) or self.sd == 0:
            return None
        if self.margin is not None:
            effect, sided = (self.margin - abs(self.mean)) / self.sd, 1
        else:
            effect, sided = abs(self.mean) / self.sd, 2
        if effect <= 0:
            return None
        for n in range(2, MAX_SEEDS + 1):
            critical = stats.t.ppf(1 - SIGNIFICANCE / sided, n - 1)
            if stats.nct.sf(critical, n - 1, effect * np.sqrt(n)) >= POWER:
                return n
        return None

    @property
    def word(self) -> str:
        if self.n == 0:
            return "not testable in this run"
        if self.n < MIN_SEEDS or not self.decisive_p < SIGNIFICANCE:
            return f"inconclusive ({self.n} seed{'s' if self.n != 1 else ''})"
        if self.margin is not None:
            return "holds"  # within the margin both ways
        return "holds" if self.mean > 0 else "does not hold"

    def describe(self) -> str:
        """Effect size: mean difference, its 95 % interval, spread, Cohen's d_z and p (raw and
        Holm-corrected), and when inconclusive the seeds that would decide it."""
        if self.n == 0:
            return "no paired data"
        text = f"effect {self.mean:+.2f}" if not self.unit else \
            f"effect {self.mean:+.1f} {self.unit}"
        if self.n > 1:
            low, high = self.ci95
            text += f", 95% CI [{low:+.1f}, {high:+.1f}]" if np.isfinite(low) else ""
            text += f" (sd {self.sd:.1f}" + (f", d_z {self.mean / self.sd:+.2f}"
                                             if self.sd > 0 else "")
            text += _p_text("p", self.p_value)
            if self.p_adjusted is not None:
                text += _p_text("Holm p", self.p_adjusted)
            text += f", {self.n} seeds)"
            if self.margin is not None:
                text += f"; equivalence margin +-{self.margin:g} {self.unit}"
        if self.word.startswith("inconclusive"):
            text += self._seeds_text()
        return text

    def _seeds_text(self) -> str:
        # One seed has no spread, so it cannot size a study: saying that no seed count
        # decides a +36-point effect would read as "this effect is noise".
        if self.n < 2:
            return "; its spread, and so the seeds it needs, takes 2 or more seeds to estimate"
        needed = self.seeds_needed
        return f"; needs about {needed} seeds" if needed else \
            "; no seed count decides it at this effect"


def _p_text(name: str, p: float) -> str:
    if not np.isfinite(p):
        return ""
    return f", {name} = {p:.3f}" if p >= 0.001 else f", {name} < 0.001"  # never "= 0.000"


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down correction of ``p_values`` (NaN stays NaN and does not count)."""
    order = [i for i in np.argsort(p_values) if np.isfinite(p_values[i])]
    adjusted = [float("nan")] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


