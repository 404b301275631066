"""The choices a trainable makes for its trial, tested on the objects it builds (without Ray; a
Tune trial costs tens of seconds here): the universal perturbation's learning rate, the split an
attacker and its regulariser's importance are computed on, the split a defence is selected on.

The splits differ from each other on purpose, so that taking the wrong one changes a number.
"""

from __future__ import annotations

import copy

import pytest
import torch

from tests.helpers import defence
from trainables.device import Runtime
from trainables.metrics import uar
from trainables.evaluation import predict
from trainables.models import build
from trainables.regularisers.importance import minibatch_fisher, per_sample_fisher
from trainables.settings import (AttackSettings, DefenceTrainingSettings, LifelongSettings,
                                 TrialSettings)
from trainables.stage_loop import LoopCallbacks
from trainables.stages import make_plan
from trainables.trials import AttackTrial
from trainables.tune_attack import build_stage_loop
from trainables.tune_defence import build_defence_trainer

CPU = Runtime(device=torch.device("cpu"), amp=False, channels_last=False)
CLASSES = 3


def splits_of(sizes=(("train", 24), ("dev", 16), ("test", 16)), seed: int = 0):
    """Random (1, 4, 4) inputs and labels of each split, each split its own draw."""
    generator = torch.Generator().manual_seed(seed)
    return {name: (torch.randn(n, 1, 4, 4, generator=generator),
                   torch.randint(0, CLASSES, (n,), generator=generator)) for name, n in sizes}


def defences(names) -> dict[str, torch.nn.Module]:
    """Linear classifiers of (1, 4, 4) inputs (``tests.helpers.defence``), one per name."""
    return {name: defence(seed, CLASSES) for seed, name in enumerate(names, start=1)}


def trial_of(strategy: str, names: tuple[str, ...], first: int, later: int) -> AttackTrial:
    plan = make_plan(strategy, names, first, later, "ewc")
    return AttackTrial(id=f"{strategy}-test", plan=plan, sequence="", defences=names,
                       lam=100.0 if strategy == "lifelong" else None, seed=0)


@pytest.mark.parametrize(("attacker", "expected_lr"), [("universal", 0.05), ("atrous", 1e-3)])
def test_the_universal_perturbation_trains_at_its_own_learning_rate(attacker, expected_lr):
    """``attack.universal_lr`` for the universal perturbation, ``attack.lr`` for the atrous
    attacker. Adam's first step moves each parameter by the learning rate (wherever its
    gradient is not tiny), so the perturbation's logits show the rate it trained at."""
    attack = AttackSettings(width=0.125, lr=1e-3, universal_lr=0.05, alpha=0.5, batch_size=8,
                            log_every=1)
    strategy = "universal" if attacker == "universal" else "single-task"
    trial = trial_of(strategy, ("a",), 1, 1)
    loop = build_stage_loop(trial, TrialSettings(attack=attack), CPU, defences(["a"]),
                            splits_of())
    before = copy.deepcopy(loop.attacker.state_dict())
    logs: list[dict] = []
    loop.run(LoopCallbacks(on_log=logs.append))
    assert [entry["lr"] for entry in logs] == [expected_lr]
    if attacker == "universal":
        moved = (loop.attacker.logit.detach() - before["logit"]).abs()
        assert moved.max().item() == pytest.approx(0.05, rel=1e-2)
        # Most of it moved by the whole rate: a rate of 1e-3 would leave it at its start.
        assert (moved > 0.04).float().mean().item() > 0.5


@pytest.mark.parametrize(("fisher", "estimate"), [("per_sample", per_sample_fisher),
                                                  ("minibatch", minibatch_fisher)])
def test_a_lifelong_trials_fisher_is_estimated_on_the_train_split(fisher, estimate):
    """With ``fisher_samples`` and ``fisher_batch_size`` at least the train split's size, the
    importance after each stage is the Fisher over the whole train split (in one batch, so that
    the minibatch estimate does not depend on the order), at the weights the stage ended with,
    by the estimator ``lifelong.fisher`` names (the paper's and the released code's configs
    set ``minibatch``)."""
    splits = splits_of()
    attack = AttackSettings(width=0.125, eta_init=0.2, lr=1e-2, alpha=0.5, batch_size=8,
                            log_every=2)
    settings = TrialSettings(attack=attack, lifelong=LifelongSettings(
        fisher=fisher, fisher_samples=64, fisher_batch_size=64))
    trial = trial_of("lifelong", ("a", "b"), 2, 1)
    loop = build_stage_loop(trial, settings, CPU, defences(["a", "b"]), splits)
    ended: list[torch.nn.Module] = []
    loop.run(LoopCallbacks(on_stage_end=lambda _, current: ended.append(
        copy.deepcopy(current.attacker))))
    fishers = loop.regulariser.fishers
    assert len(fishers) == len(ended) == 2
    for stage, (fisher, attacker) in enumerate(zip(fishers, ended)):
        loss = loop.stage_loss(trial.plan.stages[stage])
        on = {name: estimate(attacker, loss, [splits[name]]) for name in ("train", "dev")}
        assert sum(v.sum() for v in on["train"].values()) > 1e-4
        # The values span many orders of magnitude: tolerances relative to the largest.
        scale = max(v.abs().max().item() for v in on["train"].values())
        for name, value in fisher.items():
            torch.testing.assert_close(value, on["train"][name], rtol=1e-4, atol=1e-6 * scale)
        assert any(not torch.allclose(fisher[n], on["dev"][n], rtol=0.1, atol=1e-3 * scale)
                   for n in fisher)


def separable(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs whose class shows as a brighter quarter of the spectrogram, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    x = torch.randn(n, 1, 16, 16, generator=generator)
    for c in range(CLASSES):
        x[y == c, :, 4 * c: 4 * c + 4, :] += 1.5
    return x, y


def test_a_defence_is_selected_on_the_dev_split_never_on_test():
    """Test holds the dev inputs with every label moved to the next class: the better a model
    is on dev, the worse on test. What the trainer scores and keeps must be dev's UAR."""
    train, dev = separable(48, 1), separable(24, 2)
    splits = {"train": train, "dev": dev, "test": (dev[0], (dev[1] + 1) % CLASSES)}
    torch.manual_seed(0)
    model = build("cnn4", num_classes=CLASSES, width=0.0625)
    trainer = build_defence_trainer(model, splits,
                                    DefenceTrainingSettings(iterations=20, batch_size=16,
                                                            lr=3e-3, eval_every=4), 0, CPU)
    seen: list[tuple[float, float, float]] = []  # (what the trainer scored, dev UAR, test UAR)

    def score(metrics: dict, current) -> None:
        current.model.eval()  # as the trainer scores it: batch norm on its running statistics
        scores = [uar(y.numpy(), predict(current.model, x)) for x, y in (dev, splits["test"])]
        current.model.train()
        seen.append((metrics["dev_uar"], *scores))

    kept = trainer.run(score)
    assert len(seen) == 5
    assert all(on_dev - on_test > 0.5 for _, on_dev, on_test in seen)  # it learnt the classes
    for scored, on_dev, _ in seen:
        assert scored == pytest.approx(on_dev)
    best = max(on_dev for _, on_dev, _ in seen)
    assert trainer.best_uar == pytest.approx(best)
    assert uar(dev[1].numpy(), predict(kept, dev[0])) == pytest.approx(best)
