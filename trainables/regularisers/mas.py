"""Memory Aware Synapses (Aljundi et al. 2018): importance is the sensitivity of the squared
norm of the model's output to each parameter, accumulated over stages."""

from __future__ import annotations

import torch
from torch import nn

from trainables.regularisers.base import (Regulariser, StageEnd, Tensors, parameters_of,
                                          quadratic_penalty)
from trainables.regularisers.importance import output_sensitivity


class MemoryAwareSynapses(Regulariser):
    name = "mas"

    def __init__(self, strength: float, **_: object) -> None:
        super().__init__(strength)
        self.importance: Tensors = {}
        self.anchor: Tensors = {}

    def stage_ended(self, end: StageEnd) -> None:
        for n, value in output_sensitivity(end.model, end.batches).items():
            self.importance[n] = self.importance.get(n, torch.zeros_like(value)) + value
        self.anchor = parameters_of(end.model)

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        if not self.importance:
            return None
        return self.strength * quadratic_penalty(model, self.importance, self.anchor)

    def state_dict(self) -> dict:
        return {"importance": self.importance, "anchor": self.anchor}

    def load_state_dict(self, state: dict) -> None:
        self.importance, self.anchor = dict(state["importance"]), dict(state["anchor"])
