"""What the stage loop optimises: the loss its settings and its plan define, seen from outside.

Loops that start alike (the same attacker weights, the same seed and so the same first
minibatch) see the same perturbation at their first step, so their first logged losses compare
exactly. With ``alpha = 1`` the loss is the margin term alone: ``margin_reduction: sum`` must
weigh it ``batch_size`` times (what the default config trains with), and a stage on several
defences (multi-task) must average the margins of all of them, not train on the first.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from orchestrator.config import load_config
from tests.helpers import ROOT, TinyAttacker, data, defence
from trainables.regularisers import build_regulariser
from trainables.settings import AttackSettings
from trainables.stage_loop import LoopCallbacks, LoopSettings, StageLoop
from trainables.stages import make_plan

DEFENCES = {"a": defence(1), "b": defence(2), "c": defence(3)}
MARGIN_ONLY = AttackSettings(alpha=1.0, lr=1e-2, batch_size=8, log_every=1)


def first_logged_loss(strategy: str, defences: tuple[str, ...],
                      attack: AttackSettings = MARGIN_ONLY) -> float:
    """The attack loss the loop logs after its first step (``log_every: 1``)."""
    x, y = data(64)
    torch.manual_seed(0)
    loop = StageLoop(TinyAttacker(), {d: DEFENCES[d] for d in defences},
                     make_plan(strategy, defences, 2, 1), build_regulariser("none"), x, y,
                     LoopSettings(attack, seed=5))
    logs: list[dict] = []
    loop.run(LoopCallbacks(on_log=logs.append))
    assert logs[0]["iteration"] == 1
    return logs[0]["attack_loss"]


def test_margin_reduction_sum_weighs_the_margin_by_the_batch_size():
    mean = first_logged_loss("single-task", ("a",))
    assert mean > 0.05  # a margin to scale, not zero
    summed = first_logged_loss("single-task", ("a",),
                               replace(MARGIN_ONLY, margin_reduction="sum"))
    assert summed == pytest.approx(8 * mean, rel=1e-5)


def test_the_default_configs_margin_reduction_reaches_the_loss():
    """configs/smoke.yaml (the default run) sets ``margin_reduction: sum`` (tests/tiny.yaml
    too). The default's attack settings, with the margin alone and a small batch, train on the
    summed margin."""
    default = load_config(ROOT / "configs" / "smoke.yaml").attack
    assert default.margin_reduction == "sum"
    ours = replace(default, alpha=1.0, batch_size=8, log_every=1, lr_decay_every=100)
    summed = first_logged_loss("single-task", ("a",), ours)
    mean = first_logged_loss("single-task", ("a",), replace(ours, margin_reduction="mean"))
    assert mean > 0.05 and summed == pytest.approx(8 * mean, rel=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_a_multi_task_stage_averages_the_margins_of_all_its_defences(reduction):
    attack = replace(MARGIN_ONLY, margin_reduction=reduction)
    alone = [first_logged_loss("single-task", (d,), attack) for d in ("a", "b", "c")]
    assert max(alone) - min(alone) > 0.05 * max(alone)  # each defence counts differently
    together = first_logged_loss("multi-task", ("a", "b", "c"), attack)
    assert together == pytest.approx(sum(alone) / 3, rel=1e-5)
    pair = first_logged_loss("multi-task", ("c", "a"), attack)
    assert pair == pytest.approx((alone[2] + alone[0]) / 2, rel=1e-5)
