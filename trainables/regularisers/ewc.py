"""Elastic Weight Consolidation (Kirkpatrick et al. 2017) and its online form (Schwarz et al.
2018): after each stage, the diagonal Fisher F of the attacker's parameters is estimated on that
stage's loss; later stages add ``lambda * sum_i F_i (theta_i - theta*_i) ** 2``."""

from __future__ import annotations

import torch
from torch import nn

from trainables.regularisers.base import (Regulariser, StageEnd, Tensors, parameters_of,
                                          quadratic_penalty)
from trainables.regularisers.importance import FISHER_ESTIMATORS


class EWC(Regulariser):
    """One penalty per past stage, each with its own Fisher and anchor parameters."""

    name = "ewc"

    def __init__(self, strength: float, fisher: str = "per_sample", **_: object) -> None:
        super().__init__(strength)
        if fisher not in FISHER_ESTIMATORS:
            raise ValueError(f"fisher must be one of {', '.join(FISHER_ESTIMATORS)}, got {fisher!r}")
        self.estimate = FISHER_ESTIMATORS[fisher]
        self.fishers: list[Tensors] = []
        self.anchors: list[Tensors] = []

    def stage_ended(self, end: StageEnd) -> None:
        self.fishers.append(self.estimate(end.model, end.loss, end.batches))
        self.anchors.append(parameters_of(end.model))

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        if not self.fishers:
            return None
        return self.strength * torch.stack([quadratic_penalty(model, f, a)
                                            for f, a in zip(self.fishers, self.anchors)]).sum()

    def state_dict(self) -> dict:
        return {"fishers": self.fishers, "anchors": self.anchors}

    def load_state_dict(self, state: dict) -> None:
        self.fishers, self.anchors = list(state["fishers"]), list(state["anchors"])


class OnlineEWC(EWC):
    """One running Fisher, ``F <- decay * F + F_new``, anchored at the latest stage's parameters:
    memory stays constant however many stages there are."""

    name = "online_ewc"

    def __init__(self, strength: float, fisher: str = "per_sample", decay: float = 1.0,
                 **_: object) -> None:
        super().__init__(strength, fisher)
        self.decay = decay

    def stage_ended(self, end: StageEnd) -> None:
        new = self.estimate(end.model, end.loss, end.batches)
        if self.fishers:
            new = {n: self.decay * self.fishers[0][n] + f for n, f in new.items()}
        self.fishers = [new]
        self.anchors = [parameters_of(end.model)]
