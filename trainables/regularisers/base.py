"""The plugin interface of lifelong regularisers: hooks the stage loop calls."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

Tensors = dict[str, torch.Tensor]
# (perturbation eta, input x, target y) -> per-sample loss (B,)
StageLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class StageEnd:
    """What a regulariser may use when a stage ends: the model, the stage's per-sample loss and
    minibatches of that stage's training data to estimate parameter importance on."""

    model: nn.Module
    loss: StageLoss
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]]


def parameters_of(model: nn.Module) -> Tensors:
    """Detached copies of the trainable parameters, by name."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def quadratic_penalty(model: nn.Module, importance: Tensors, anchor: Tensors) -> torch.Tensor:
    """``sum_i importance_i * (theta_i - anchor_i) ** 2`` over the model's parameters."""
    terms = [(importance[n] * (p - anchor[n]).pow(2)).sum()
             for n, p in model.named_parameters() if n in importance]
    return torch.stack(terms).sum()


class Regulariser:
    """Base class. ``strength`` is lambda. Subclasses override the hooks they need:
    ``stage_started`` (before a stage's first optimiser step), ``after_step`` (after every
    optimiser step), ``stage_ended`` and ``penalty``."""

    name = "none"
    @property
    def needs_path(self) -> bool:
        """Whether ``after_step`` accumulates something along the training path (SI does): such
        a regulariser must see every step, so a trial using it cannot skip a shared first
        stage. Declared in the registry, which the driver reads without torch."""
        from trainables.regularisers import REGULARISERS

        return REGULARISERS[self.name].needs_path

    def __init__(self, strength: float = 0.0) -> None:
        self.strength = strength

    def stage_started(self, model: nn.Module) -> None:
        """Called before a stage's first optimiser step, with the parameters the stage starts
        from; a run resumed mid-stage does not call it again (its state is in ``state_dict``)."""

    def after_step(self, model: nn.Module) -> None:
        """Called after each optimiser step (the gradients are still in ``p.grad``)."""

    def stage_ended(self, end: StageEnd) -> None:
        """Called once a stage's iterations are done, before the next stage starts."""

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """The term added to the loss now, or ``None`` while there is nothing to protect."""
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned."""


class AnchoredImportance(Regulariser):
    """Per-parameter importance summed over the stages so far, anchored at the parameters the
    latest stage ended with: ``lambda * sum_i omega_i (theta_i - theta*_i) ** 2`` (MAS, SI)."""

    def __init__(self, strength: float) -> None:
        super().__init__(strength)
        self.importance: Tensors = {}
        self.anchor: Tensors = {}

    def consolidate(self, importance: Tensors, model: nn.Module) -> None:
        """Add a finished stage's ``importance`` and anchor at ``model``'s parameters."""
        for n, value in importance.items():
            self.importance[n] = self.importance.get(n, torch.zeros_like(value)) + value
        self.anchor = parameters_of(model)

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        if not self.importance:
            return None
        return self.strength * quadratic_penalty(model, self.importance, self.anchor)

    def state_dict(self) -> dict:
        return {"importance": self.importance, "anchor": self.anchor}

    def load_state_dict(self, state: dict) -> None:
        self.importance, self.anchor = dict(state["importance"]), dict(state["anchor"])
