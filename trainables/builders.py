"""The models of a run, built from its settings: the one place that turns a defence's spec or a
plan's attacker into a module, for the trainables, the driver's preflight and the benchmarks."""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from trainables.models import build
from trainables.models.folding import fold_batch_norm
from trainables.settings import AttackSettings, DefenceSpec

UNIVERSAL = "universal"  # the plan attacker that is one learnt perturbation, not a network


def build_defence(spec: DefenceSpec, num_classes: int) -> nn.Module:
    """A defence of ``spec``'s architecture and width, untrained, returning log-softmax over
    ``num_classes``."""
    return build(spec.model, num_classes=num_classes, width=spec.width)


def build_target(spec: DefenceSpec, num_classes: int, state: dict | None = None) -> nn.Module:
    """A defence as an attack meets it: its trained ``state`` loaded (none: untrained, for a
    benchmark), in eval mode, without gradients, its batch norms folded into its convolutions
    (``trainables.models.folding``: the same function, faster)."""
    model = build_defence(spec, num_classes)
    if state is not None:
        model.load_state_dict(state)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return fold_batch_norm(model)


def build_attacker(attacker: str, attack: AttackSettings,
                   input_shape: tuple[int, ...]) -> nn.Module:
    """A plan's attacker, starting at ``attack.eta_init``: the atrous network (``attack.model``
    at ``attack.width``) or the universal perturbation of the inputs' shape ``(1, T, F)``."""
    if attacker == UNIVERSAL:
        return build(UNIVERSAL, input_shape=input_shape, eta_init=attack.eta_init)
    return build(attacker, width=attack.width, eta_init=attack.eta_init)


def attack_settings_for(attacker: str, attack: AttackSettings) -> AttackSettings:
    """The attack settings a plan's attacker trains with: the universal perturbation's
    parameters are the perturbation's logits themselves, which Adam moves by about the learning
    rate per step, so it has its own (``attack.universal_lr``)."""
    return replace(attack, lr=attack.universal_lr) if attacker == UNIVERSAL else attack
