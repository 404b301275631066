"""Synaptic Intelligence (Zenke et al. 2017): importance is each parameter's contribution to the
decrease of the loss along its training path, ``omega += -g * delta_theta`` at every step of a
stage, from the parameters it starts with, normalised at the end of the stage by the squared total
change over the stage plus ``xi``."""

from __future__ import annotations

import torch
from torch import nn

from trainables.regularisers.base import AnchoredImportance, StageEnd, Tensors, parameters_of


class SynapticIntelligence(AnchoredImportance):
    """Uses the gradient of the whole loss (penalty included) that the optimiser stepped with.
    Negative path contributions are clipped to zero so the penalty stays a sum of squares."""

    name = "si"
    _PATH_STATE = ("path", "previous", "stage_start")

    def __init__(self, strength: float, xi: float = 1e-3, **_: object) -> None:
        super().__init__(strength)
        self.xi = xi
        self.path: Tensors = {}
        self.previous: Tensors = {}
        self.stage_start: Tensors = {}

    def stage_started(self, model: nn.Module) -> None:
        self.stage_start = parameters_of(model)
        self.previous = dict(self.stage_start)
        self.path = {n: torch.zeros_like(p) for n, p in self.stage_start.items()}

    def after_step(self, model: nn.Module) -> None:
        if not self.previous:
            # Recording the parameters here would already be one step late: that step would
            # never be integrated, and the stage's total change would be measured from after it.
            raise RuntimeError("SynapticIntelligence.after_step before stage_started: the "
                               "parameters a stage starts from were never recorded")
        for n, p in model.named_parameters():
            if n in self.path and p.grad is not None:
                self.path[n] -= p.grad.detach() * (p.detach() - self.previous[n])
                self.previous[n] = p.detach().clone()

    def stage_ended(self, end: StageEnd) -> None:
        current = parameters_of(end.model)
        self.consolidate({n: torch.clamp(path / ((current[n] - self.stage_start[n]).pow(2)
                                                 + self.xi), min=0)
                          for n, path in self.path.items()}, end.model)
        self.path, self.previous, self.stage_start = {}, {}, {}

    def state_dict(self) -> dict:
        return {**super().state_dict(), **{key: getattr(self, key) for key in self._PATH_STATE}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for key in self._PATH_STATE:
            setattr(self, key, dict(state[key]))
