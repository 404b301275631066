"""Settings that no shipped config changes from its default still reach the trials: the grid
gives the one-stage plans on several defences (multi-task, universal) the budget that
``attack.multi_task_iterations`` names."""

from __future__ import annotations

import pytest

from orchestrator.config import load_config
from orchestrator.grid import attack_trials
from tests.helpers import TINY


@pytest.mark.parametrize("budget", ["matched", "first"])
def test_one_stage_plans_on_several_defences_get_the_budget_the_config_names(budget):
    config = load_config(TINY, ["grid.strategies=[single-task, multi-task, universal]",
                                f"attack.multi_task_iterations={budget}"])
    first, later = config.attack.first_stage_iterations, config.attack.later_stage_iterations
    assert first != later
    checked = 0
    for trial in attack_trials(config):
        (stage,) = trial.plan.stages
        k = len(trial.defences)
        expected = first + later * (k - 1) if budget == "matched" else first
        assert stage.iterations == expected, (trial.id, budget)
        checked += k > 1
    assert checked >= 2  # multi-task and universal trials on several defences were there
