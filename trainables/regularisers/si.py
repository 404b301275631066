"""Synaptic Intelligence (Zenke et al. 2017): importance is each parameter's contribution to the
decrease of the loss along its training path, ``omega += -g * delta_theta`` at every step,
normalised at the end of a stage by the squared total change plus ``xi``."""

from __future__ import annotations

import torch
from torch import nn

from trainables.regularisers.base import (Regulariser, StageEnd, Tensors, parameters_of,
                                          quadratic_penalty)


class SynapticIntelligence(Regulariser):
    """Uses the gradient of the whole loss (penalty included) that the optimiser stepped with.
    Negative path contributions are clipped to zero so the penalty stays a sum of squares."""

    name = "si"
    needs_path = True

    def __init__(self, strength: float, xi: float = 1e-3, **_: object) -> None:
        super().__init__(strength)
        self.xi = xi
        self.importance: Tensors = {}
        self.anchor: Tensors = {}
        self.path: Tensors = {}
        self.previous: Tensors = {}
        self.stage_start: Tensors = {}

    def after_step(self, model: nn.Module) -> None:
        if not self.previous:
            self.previous = parameters_of(model)
            self.stage_start = dict(self.previous)
            self.path = {n: torch.zeros_like(p) for n, p in self.previous.items()}
            return
        for n, p in model.named_parameters():
            if n in self.path and p.grad is not None:
                self.path[n] -= p.grad.detach() * (p.detach() - self.previous[n])
                self.previous[n] = p.detach().clone()

    def stage_ended(self, end: StageEnd) -> None:
        current = parameters_of(end.model)
        if self.path:
            for n, path in self.path.items():
                change = (current[n] - self.stage_start[n]).pow(2) + self.xi
                gained = torch.clamp(path / change, min=0)
                self.importance[n] = self.importance.get(n, torch.zeros_like(gained)) + gained
        self.anchor = current
        self.path, self.previous, self.stage_start = {}, {}, {}

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        if not self.importance:
            return None
        return self.strength * quadratic_penalty(model, self.importance, self.anchor)

    def state_dict(self) -> dict:
        return {"importance": self.importance, "anchor": self.anchor, "path": self.path,
                "previous": self.previous, "stage_start": self.stage_start}

    def load_state_dict(self, state: dict) -> None:
        for key in ("importance", "anchor", "path", "previous", "stage_start"):
            setattr(self, key, dict(state[key]))
