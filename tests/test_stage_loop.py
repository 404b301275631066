import io

import pytest
import torch

from tests.helpers import TinyAttacker, data, defence
from trainables.regularisers import build_regulariser
from trainables.settings import AttackSettings, LifelongSettings
from trainables.stage_loop import LoopCallbacks, LoopSettings, StageLoop
from trainables.stages import make_plan

SETTINGS = LoopSettings(AttackSettings(alpha=0.5, lr=1e-2, lr_decay=0.5, lr_decay_every=7,
                                       batch_size=8, log_every=5),
                        LifelongSettings(fisher_samples=32, fisher_batch_size=8), seed=3)


def new_loop(strategy="lifelong", regulariser="ewc"):
    torch.manual_seed(0)
    x, y = data(64)
    plan = make_plan(strategy, ("a", "b", "c"), 20, 10, regulariser)
    return StageLoop(TinyAttacker(), {"a": defence(1), "b": defence(2), "c": defence(3)}, plan,
                     build_regulariser(plan.regulariser, 100.0), x, y, SETTINGS)


def test_strategies_are_plans_of_stages():
    assert [s.defences for s in make_plan("transfer", ("a", "b"), 5, 2).stages] == [("a",), ("b",)]
    assert make_plan("lifelong", ("a", "b"), 5, 2, "si").regulariser == "si"
    multi = make_plan("multi-task", ("a", "b", "c"), 5, 2)
    assert multi.stages[0].defences == ("a", "b", "c") and multi.stages[0].iterations == 9
    assert make_plan("single-task", ("a",), 5, 2).stages[0].iterations == 5
    with pytest.raises(ValueError):
        make_plan("single-task", ("a", "b"), 5, 2)


@pytest.mark.parametrize(("regulariser", "where"),
                         [("ewc", "mid-stage"), ("si", "mid-stage"), ("si", "stage boundary")])
def test_an_interrupted_and_resumed_run_ends_with_the_same_weights(regulariser, where):
    """Mid-stage, SI's path so far travels in the checkpoint; at a boundary, the resumed loop
    starts the next stage's path itself."""
    straight = new_loop(regulariser=regulariser)
    straight.run()

    class Stop(Exception):
        pass

    saved = {}

    def interrupt(loop):
        if loop.stage_index == 1 and loop.iteration == (4 if where == "mid-stage" else 0):
            buffer = io.BytesIO()
            torch.save(loop.state_dict(), buffer)
            saved["state"] = buffer.getvalue()
            raise Stop

    first = new_loop(regulariser=regulariser)
    callbacks = (LoopCallbacks(on_step=interrupt) if where == "mid-stage" else
                 LoopCallbacks(on_stage_end=lambda _, loop: interrupt(loop)))
    with pytest.raises(Stop):
        first.run(callbacks)
    resumed = new_loop(regulariser=regulariser)
    resumed.load_state_dict(torch.load(io.BytesIO(saved["state"]), weights_only=True))
    resumed.run()
    for (name, a), b in zip(straight.attacker.state_dict().items(),
                            resumed.attacker.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_defences_stay_frozen_and_the_lr_decays():
    loop = new_loop("transfer")
    before = {k: v.clone() for k, v in loop.defences["a"].state_dict().items()}
    logs, ends = [], []
    loop.run(LoopCallbacks(on_log=logs.append, on_stage_end=lambda i, _: ends.append(i)))
    for k, v in loop.defences["a"].state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert not any(p.requires_grad for p in loop.defences["a"].parameters())
    assert ends == [1, 2, 3] and loop.finished and loop.global_step == 40
    assert loop.lr_at(0) == 1e-2 and loop.lr_at(7) == 5e-3 and loop.lr_at(14) == 2.5e-3
    first = [entry for entry in logs if entry["stage"] == 1]
    assert [entry["iteration"] for entry in first] == [5, 10, 15, 20]
    assert all(entry["penalty"] == 0 for entry in logs)


def test_lifelong_logs_a_penalty_after_the_first_stage():
    logs = []
    new_loop("lifelong").run(LoopCallbacks(on_log=logs.append))
    assert all(e["penalty"] == 0 for e in logs if e["stage"] == 1)
    assert any(e["penalty"] > 0 for e in logs if e["stage"] > 1)


def test_bf16_autocast_and_channels_last_train_with_fp32_weights_and_fisher():
    """The GPU path's switches, exercised on CPU (autocast supports bf16 there too)."""
    torch.manual_seed(0)
    from trainables.models import build
    x = torch.randn(32, 1, 16, 16).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (32,))
    defences = {"a": build("cnn4", width=0.0625).eval()}
    settings = LoopSettings(AttackSettings(lr=1e-2, batch_size=8, log_every=5),
                            LifelongSettings(fisher_samples=8, fisher_batch_size=4), amp=True)
    loop = StageLoop(build("atrous", width=0.125), defences,
                     make_plan("lifelong", ("a", "a"), 10, 5), build_regulariser("ewc", 10.0),
                     x, y, settings)
    logs = []
    loop.run(LoopCallbacks(on_log=logs.append))
    assert all(p.dtype == torch.float32 for p in loop.attacker.parameters())
    assert all(f.dtype == torch.float32 for f in loop.regulariser.fishers[0].values())
    assert all(torch.isfinite(torch.tensor(e["total_loss"])) for e in logs)
    assert logs[-1]["penalty"] > 0


@pytest.mark.slow
def test_compiled_training_follows_the_eager_trajectory():
    """performance.compile: the attacker's forward compiled with torch.compile (here on CPU)
    trains like the eager one, and its checkpoints keep the module's own parameter names."""
    from trainables.models import build

    def train(compile_: bool):
        torch.manual_seed(0)
        x, y = torch.randn(32, 1, 16, 16), torch.randint(0, 7, (32,))
        torch.manual_seed(1)
        defence = build("cnn4", width=0.0625).eval()
        torch.manual_seed(2)
        loop = StageLoop(build("atrous", width=0.125), {"a": defence},
                         make_plan("single-task", ("a",), 6, 0), build_regulariser("none"), x, y,
                         LoopSettings(AttackSettings(lr=1e-2, batch_size=8, log_every=3),
                                      compile=compile_))
        logs = []
        loop.run(LoopCallbacks(on_log=logs.append))
        return [e["attack_loss"] for e in logs], loop.state_dict()["attacker"]

    eager, eager_state = train(False)
    compiled, compiled_state = train(True)
    assert compiled == pytest.approx(eager, rel=1e-3)
    assert list(compiled_state) == list(eager_state)


def _single_task_on_a() -> dict:
    torch.manual_seed(0)
    x, y = data(64)
    plan = make_plan("single-task", ("a",), 20, 10)
    loop = StageLoop(TinyAttacker(), {"a": defence(1)}, plan, build_regulariser("none"), x, y,
                     SETTINGS)
    loop.run()
    buffer = io.BytesIO()
    torch.save(loop.state_dict(), buffer)
    return torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)


@pytest.mark.parametrize(("strategy", "regulariser"),
                         [("lifelong", "ewc"), ("lifelong", "mas"), ("transfer", "none")])
def test_a_plan_started_from_the_single_task_weights_ends_as_if_it_trained_its_first_stage(
        strategy, regulariser):
    straight = new_loop(strategy, regulariser)
    straight_ends = []
    straight.run(LoopCallbacks(on_stage_end=lambda i, loop: straight_ends.append(
        (i, {k: v.clone() for k, v in loop.attacker.state_dict().items()}))))

    follower = new_loop(strategy, regulariser)
    follower.start_after_first_stage(_single_task_on_a())
    assert follower.stage_index == 0 and follower.global_step == 20
    follower_ends = []
    follower.run(LoopCallbacks(on_stage_end=lambda i, loop: follower_ends.append(
        (i, {k: v.clone() for k, v in loop.attacker.state_dict().items()}))))

    assert [i for i, _ in follower_ends] == [1, 2, 3]  # stage 1 is still evaluated and reported
    for (_, a), (_, b) in zip(straight_ends, follower_ends):
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    torch.testing.assert_close(straight.regulariser.state_dict(),
                               follower.regulariser.state_dict(), rtol=0, atol=0)


def test_a_path_regulariser_or_an_unfinished_state_cannot_skip_the_first_stage():
    with pytest.raises(ValueError, match="training path"):
        new_loop("lifelong", "si").start_after_first_stage(_single_task_on_a())
    unfinished = new_loop("lifelong", "ewc").state_dict()
    with pytest.raises(ValueError, match="not the final state of a one-stage plan"):
        new_loop("lifelong", "ewc").start_after_first_stage(unfinished)
