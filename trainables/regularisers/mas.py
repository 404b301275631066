"""Memory Aware Synapses (Aljundi et al. 2018): importance is the sensitivity of the squared
norm of the model's output to each parameter, accumulated over stages."""

from __future__ import annotations

from trainables.regularisers.base import AnchoredImportance, StageEnd
from trainables.regularisers.importance import output_sensitivity


class MemoryAwareSynapses(AnchoredImportance):
    name = "mas"

    def __init__(self, strength: float, **_: object) -> None:
        super().__init__(strength)

    def stage_ended(self, end: StageEnd) -> None:
        self.consolidate(output_sensitivity(end.model, end.batches), end.model)
