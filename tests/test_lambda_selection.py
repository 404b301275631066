"""Lambda is chosen on dev, by the lowest adversarial UAR over the row's trained defences.

A hand-made trials table (the smoke grid's records, every number chosen here) in which dev and
test rank the lambdas differently, and the untrained defence ranks them differently again, so
that choosing on test, choosing the largest UAR, or averaging over the wrong defences each gives
another lambda. The chosen lambda also differs between the 2- and 3-defence rows of a sequence
and between sequences, so no fixed answer passes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.config import ExperimentConfig, load_config
from orchestrator.grid import attack_trials
from orchestrator.paths import PROJECT_ROOT
from orchestrator.reporter import tables
from tests.helpers import clean_defences, stage_records, trials_frame

LAMBDAS = (1e2, 1e4, 1e6)
# The lambda dev must choose for each (sequence, number of defences trained).
CHOSEN = {("clockwise", 2): 1e4, ("clockwise", 3): 1e2,
          ("counterclockwise", 2): 1e6, ("counterclockwise", 3): 1e4}
# Adversarial UAR (percent) by rank of a lambda on dev: best (the chosen one), middle, worst.
# Test ranks them middle < worst < best, so test's best lambda is dev's middle one, and
# dev's largest (worst) is a third lambda: each wrong rule lands on a lambda of its own.
DEV = {"best": 20.0, "middle": 30.0, "worst": 40.0}
TEST = {"best": 45.0, "middle": 15.0, "worst": 25.0}
# A defence not yet trained on ranks the lambdas opposite to dev, by far: averaging it in
# would pick the worst lambda.
UNTRAINED_DEV = {"best": 90.0, "middle": 60.0, "worst": 10.0}
SIZE_DEV = {"best": 11.0, "middle": 12.0, "worst": 13.0}  # SNR, to see which record is used


def _rank(sequence: str, trained: int, lam: float) -> str:
    """The dev rank of ``lam`` in the row of ``sequence`` after ``trained`` defences: the chosen
    lambda is best, the next one (cyclically) middle, the remaining one worst."""
    chosen = LAMBDAS.index(CHOSEN[(sequence, trained)])
    return ("best", "middle", "worst")[(LAMBDAS.index(lam) - chosen) % len(LAMBDAS)]


def _adv_uar(strategy: str, sequence: str, trained: tuple[str, ...], defence: str,
             split: str, lam: float | None) -> float:
    """Adversarial UAR (percent) of ``defence`` on ``split`` in one record."""
    if strategy != "lifelong" or len(trained) < 2:
        return 50.0  # rows where no lambda is chosen: any fixed value
    rank = _rank(sequence, len(trained), lam)
    if defence not in trained:
        return UNTRAINED_DEV[rank] if split == "dev" else 50.0
    return (DEV if split == "dev" else TEST)[rank]


def lambda_records(seeds: tuple[int, ...] = (0,)) -> tuple[ExperimentConfig, list, dict]:
    """The smoke grid with ``LAMBDAS`` and ``seeds``: its config, a stage record for every
    trial and stage (UAR in [0, 1]) and the clean defences."""
    config = load_config(PROJECT_ROOT / "configs" / "smoke.yaml",
                         [f"grid.lambdas=[{','.join(map(str, LAMBDAS))}]",
                          f"grid.seeds=[{','.join(map(str, seeds))}]"])

    def metrics_of(trial, trained):
        metrics = {}
        for d in config.defences:
            for split in ("dev", "test"):
                uar = _adv_uar(trial.strategy, trial.sequence, trained, d, split, trial.lam)
                metrics[f"{d}/{split}/adv_uar"] = uar / 100
                metrics[f"{d}/{split}/noise_uar"] = 0.5
        rank = (_rank(trial.sequence, len(trained), trial.lam)
                if trial.strategy == "lifelong" and len(trained) >= 2 else "best")
        for split in ("dev", "test"):
            metrics[f"perturbation/{split}/snr_db"] = SIZE_DEV[rank]
        return metrics

    return config, stage_records(config, metrics_of), clean_defences(config, seeds)


def lambda_trials(seeds: tuple[int, ...] = (0,)) -> tuple[ExperimentConfig, pd.DataFrame, dict]:
    """``lambda_records`` as the trial table the report is computed from."""
    config, records, defences = lambda_records(seeds)
    return config, trials_frame(config, records), defences


def _lifelong_rows(config: ExperimentConfig, frame: pd.DataFrame) -> dict[tuple[str, int], pd.Series]:
    """The lifelong rows of Table 1 (or the perturbation table) by (sequence, defences)."""
    rows = {}
    for sequence, order in config.grid.sequences.items():
        for k in (2, 3):
            label = " + ".join(config.defences[d].label for d in order[:k])
            found = frame[(frame["method"] == "lifelong") & (frame["defences"] == label)]
            assert len(found) == 1, f"no single lifelong row for {label}"
            rows[(sequence, k)] = found.iloc[0]
    return rows


@pytest.mark.parametrize("seeds", [(0,), (0, 1)])
def test_lambda_is_chosen_on_dev_by_the_lowest_uar_of_the_trained_defences(seeds):
    config, trials, defences = lambda_trials(seeds)
    table, sizes = tables(config, trials, defences)
    rows = _lifelong_rows(config, table)
    assert {key: row["lambda"] for key, row in rows.items()} == CHOSEN
    for (sequence, k), row in rows.items():
        trained = config.grid.sequences[sequence][:k]
        # The row's numbers are the chosen lambda's records: dev best, and test what that
        # lambda scored on test (not test's own best, 15).
        for d in trained:
            assert row[f"{d}_dev"] == DEV["best"] and row[f"{d}_test"] == TEST["best"], (
                sequence, k, d)
        assert row["status"] == "ok"
    # The perturbation table reports the same lambda and that lambda's perturbation.
    for key, row in _lifelong_rows(config, sizes).items():
        assert row["lambda"] == CHOSEN[key] and row["snr_db_dev"] == SIZE_DEV["best"], key


def test_the_hand_made_table_separates_the_wrong_rules():
    """The fixture itself: on every lifelong row, choosing on test, choosing the largest dev UAR
    and (on 2-defence rows) averaging over every defence each pick a lambda other than the right one (so that the
    test above can fail for each of those mistakes)."""
    config, trials, _ = lambda_trials()
    lifelong = trials[(trials["strategy"] == "lifelong") & (trials["stage"] >= 2)]
    for (sequence, names), part in lifelong.groupby(["sequence",
                                                     lifelong["defences"].map(tuple)]):
        names = list(names)

        def score(split: str, defences: list[str]) -> pd.Series:
            return part.set_index("lambda")[[f"{d}/{split}/adv_uar" for d in defences]].mean(axis=1)

        right = score("dev", names).idxmin()
        assert right == CHOSEN[(sequence, len(names))]
        wrong = {"test": score("test", names).idxmin(), "largest": score("dev", names).idxmax()}
        if len(names) < len(config.defences):  # on 3-defence rows every defence is trained
            wrong["all defences"] = score("dev", list(config.defences)).idxmin()
        assert all(lam != right for lam in wrong.values()), (sequence, names, wrong)
        assert np.isfinite(right)


def test_a_helper_trial_of_a_shared_first_stage_gives_no_table_1_row():
    """Without single-task in the grid a helper (``first-stage-...``) trains the shared first
    stage; it is no Table-1 row, so it must not add a single-task row (marked failed: its
    records are not the report's)."""
    config = load_config(PROJECT_ROOT / "configs" / "smoke.yaml",
                         ["grid.strategies=[transfer, lifelong]"])
    assert any(not t.in_table for t in attack_trials(config))
    table, sizes = tables(config, trials_frame(config, []), {})
    assert set(table["method"]) == {"clean", "transfer", "lifelong"}
    assert set(sizes["method"]) == {"transfer", "lifelong"}
