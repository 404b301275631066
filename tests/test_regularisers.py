import copy

import pytest
import torch
from torch import nn
from torch.optim.optimizer import (register_optimizer_step_post_hook,
                                   register_optimizer_step_pre_hook)

from tests.helpers import TinyAttacker, data, defence
from trainables.losses import attack_loss
from trainables.regularisers import StageEnd, build_regulariser
from trainables.regularisers.base import parameters_of
from trainables.regularisers.importance import minibatch_fisher, per_sample_fisher
from trainables.settings import AttackSettings, LifelongSettings
from trainables.stage_loop import LoopCallbacks, LoopSettings, StageLoop
from trainables.stages import make_plan


def loss_for(*defences, alpha=0.5):
    return lambda eta, x, y: attack_loss(eta, x, y, defences, alpha)


def test_ewc_penalty_and_gradient_match_a_hand_computation():
    model = nn.Linear(2, 1, bias=False)
    ewc = build_regulariser("ewc", strength=10.0)
    ewc.fishers = [{"weight": torch.tensor([[2.0, 3.0]])}]
    ewc.anchors = [{"weight": torch.tensor([[1.0, -1.0]])}]
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.5, 0.0]]))
    penalty = ewc.penalty(model)
    assert penalty.item() == pytest.approx(10 * (2 * 0.25 + 3 * 1.0))
    penalty.backward()
    torch.testing.assert_close(model.weight.grad, torch.tensor([[10 * 2 * 2 * 0.5, 10 * 2 * 3 * 1.0]]))


def test_per_sample_fisher_equals_a_loop_of_backward_passes_and_minibatch_at_batch_one():
    torch.manual_seed(0)
    attacker, loss = TinyAttacker().eval(), loss_for(defence(1), defence(2))
    x, y = data(8)
    fisher = per_sample_fisher(attacker, loss, [(x[:5], y[:5]), (x[5:], y[5:])])
    expected = {n: torch.zeros_like(p) for n, p in attacker.named_parameters()}
    for i in range(8):
        attacker.zero_grad()
        loss(attacker(x[i:i + 1]), x[i:i + 1], y[i:i + 1]).sum().backward()
        for n, p in attacker.named_parameters():
            expected[n] += p.grad ** 2 / 8
    for n in expected:
        torch.testing.assert_close(fisher[n], expected[n], rtol=1e-4, atol=1e-9)
    singles = [(x[i:i + 1], y[i:i + 1]) for i in range(8)]
    minibatch = minibatch_fisher(attacker, loss, singles)
    for n in expected:
        torch.testing.assert_close(minibatch[n], fisher[n], rtol=1e-4, atol=1e-9)
    larger = minibatch_fisher(attacker, loss, [(x, y)])
    assert sum(v.sum() for v in larger.values()) < sum(v.sum() for v in fisher.values())


def train_two_tasks(regulariser: str, strength: float, seed: int = 0) -> float:
    """Stage 1 attacks defence A, stage 2 defence B; returns stage 1's loss at the end.
    ``seed`` draws the attacker, the two defences, the data and the minibatches."""
    torch.manual_seed(seed)
    attacker = TinyAttacker()
    defences = {"a": defence(1 + 10 * seed), "b": defence(2 + 10 * seed)}
    x, y = data(256, seed)
    plan = make_plan("lifelong", ("a", "b"), 150, 150, regulariser)
    loop = StageLoop(attacker, defences, plan,
                     build_regulariser(regulariser if regulariser != "none" else "none", strength),
                     x, y, LoopSettings(AttackSettings(alpha=0.9, lr=3e-2, batch_size=64),
                                          LifelongSettings(fisher_samples=256), seed=seed))
    loop.run()
    attacker.eval()
    with torch.no_grad():
        return loop.stage_loss(plan.stages[0])(attacker(x), x, y).mean().item()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ewc_with_a_large_lambda_remembers_the_first_task_better_than_transfer(seed):
    """Measured on seeds 0-5: EWC and online EWC end with 0.24-0.32 of transfer's first-task
    loss."""
    transfer = train_two_tasks("none", 0.0, seed)
    for name in ("ewc", "online_ewc"):
        assert train_two_tasks(name, 1e4, seed) < 0.5 * transfer, name


@pytest.mark.parametrize("name", ["ewc", "online_ewc", "si", "mas"])
def test_every_regulariser_penalises_moving_after_a_stage_and_round_trips(name):
    torch.manual_seed(0)
    attacker = TinyAttacker()
    x, y = data(32)
    regulariser = build_regulariser(name, 1.0, fisher="minibatch", decay=0.5)
    optimiser = torch.optim.SGD(attacker.parameters(), lr=0.1)
    loss = loss_for(defence(1))
    regulariser.stage_started(attacker)
    for _ in range(3):
        optimiser.zero_grad()
        loss(attacker(x), x, y).mean().backward()
        optimiser.step()
        regulariser.after_step(attacker)
    assert regulariser.penalty(attacker) is None
    regulariser.stage_ended(StageEnd(attacker, loss, [(x, y)]))
    assert regulariser.penalty(attacker).item() == pytest.approx(0.0, abs=1e-12)
    with torch.no_grad():
        for p in attacker.parameters():
            p.add_(0.5)
    moved = regulariser.penalty(attacker).item()
    assert moved > 0
    clone = build_regulariser(name, 1.0, fisher="minibatch", decay=0.5)
    clone.load_state_dict(copy.deepcopy(regulariser.state_dict()))
    assert clone.penalty(attacker).item() == pytest.approx(moved)


def test_online_ewc_keeps_one_decayed_fisher():
    attacker = TinyAttacker()
    x, y = data(16)
    online = build_regulariser("online_ewc", 1.0, fisher="minibatch", decay=0.5)
    end = StageEnd(attacker, loss_for(defence(1)), [(x, y)])
    online.stage_ended(end)
    first = {n: f.clone() for n, f in online.fishers[0].items()}
    online.stage_ended(end)
    assert len(online.fishers) == 1
    for n in first:
        torch.testing.assert_close(online.fishers[0][n], 1.5 * first[n])


def test_si_integrates_every_step_of_every_stage_from_the_stage_start():
    """SI's path and importance against a direct computation over the same training: the
    parameters before and after every optimiser step and the gradients it stepped with, recorded
    by the optimiser's own hooks, outside SI."""
    torch.manual_seed(0)
    x, y = data(64)
    plan = make_plan("lifelong", ("a", "b"), 3, 3, "si")
    si = build_regulariser("si", 1.0, xi=1e-3)
    loop = StageLoop(TinyAttacker(), {"a": defence(1), "b": defence(2)}, plan, si, x, y,
                     LoopSettings(AttackSettings(alpha=0.5, lr=1e-2, batch_size=16), seed=1))
    steps: list[dict] = []  # one per optimiser step: before, gradient, after

    def before(optimiser, *_):
        steps.append({"before": parameters_of(loop.attacker),
                      "grad": {n: p.grad.detach().clone()
                               for n, p in loop.attacker.named_parameters()}})

    def after(optimiser, *_):
        steps[-1]["after"] = parameters_of(loop.attacker)

    paths_seen, importances = [], []

    def check_path(current: StageLoop) -> None:
        paths_seen.append((current.stage_index, current.iteration,
                           {n: v.clone() for n, v in si.path.items()}))

    handles = [register_optimizer_step_pre_hook(before),
               register_optimizer_step_post_hook(after)]
    try:
        loop.run(LoopCallbacks(on_step=check_path, on_stage_end=lambda i, _: importances.append(
            {n: v.clone() for n, v in si.importance.items()})))
    finally:
        for handle in handles:
            handle.remove()

    assert len(steps) == 6
    expected_importance: dict = {}
    for stage in range(2):
        stage_steps = steps[3 * stage: 3 * stage + 3]
        path = {n: torch.zeros_like(v) for n, v in stage_steps[0]["before"].items()}
        for iteration, step in enumerate(stage_steps, start=1):
            for n in path:
                path[n] -= step["grad"][n] * (step["after"][n] - step["before"][n])
            if iteration < 3:  # on_step runs after every step but a stage's last
                seen = [p for s, i, p in paths_seen if (s, i) == (stage, iteration)]
                assert len(seen) == 1
                for n in path:
                    torch.testing.assert_close(seen[0][n], path[n], rtol=1e-5, atol=1e-12)
        start, end = stage_steps[0]["before"], stage_steps[-1]["after"]
        for n in path:
            omega = torch.clamp(path[n] / ((end[n] - start[n]).pow(2) + 1e-3), min=0)
            expected_importance[n] = expected_importance.get(n, 0) + omega
        assert set(importances[stage]) == set(expected_importance)
        assert any(v.sum() > 0 for v in expected_importance.values())  # not a match of zeros
        for n, value in expected_importance.items():
            torch.testing.assert_close(importances[stage][n], value, rtol=1e-5, atol=1e-12)
