import copy

import pytest
import torch
from torch import nn

from tests.helpers import TinyAttacker, data, defence
from trainables.losses import attack_loss
from trainables.regularisers import StageEnd, build_regulariser
from trainables.regularisers.importance import minibatch_fisher, per_sample_fisher
from trainables.stage_loop import LoopSettings, StageLoop
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


def train_two_tasks(regulariser: str, strength: float) -> float:
    """Stage 1 attacks defence A, stage 2 defence B; returns stage 1's loss at the end."""
    torch.manual_seed(0)
    attacker = TinyAttacker()
    defences = {"a": defence(1), "b": defence(2)}
    x, y = data(256)
    plan = make_plan("lifelong", ("a", "b"), 150, 150, regulariser)
    loop = StageLoop(attacker, defences, plan,
                     build_regulariser(regulariser if regulariser != "none" else "none", strength),
                     x, y, LoopSettings(alpha=0.9, lr=3e-2, batch_size=64, fisher_samples=256))
    loop.run()
    attacker.eval()
    with torch.no_grad():
        return loop.stage_loss(plan.stages[0])(attacker(x), x, y).mean().item()


def test_ewc_with_a_large_lambda_remembers_the_first_task_better_than_transfer():
    transfer = train_two_tasks("none", 0.0)
    for name in ("ewc", "online_ewc"):
        assert train_two_tasks(name, 1e4) < 0.9 * transfer, name


@pytest.mark.parametrize("name", ["ewc", "online_ewc", "si", "mas"])
def test_every_regulariser_penalises_moving_after_a_stage_and_round_trips(name):
    torch.manual_seed(0)
    attacker = TinyAttacker()
    x, y = data(32)
    regulariser = build_regulariser(name, 1.0, fisher="minibatch", decay=0.5)
    optimiser = torch.optim.SGD(attacker.parameters(), lr=0.1)
    loss = loss_for(defence(1))
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
