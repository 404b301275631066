"""What one trial is asked to do: the specs the driver's grid (``orchestrator.grid``) expands a
config into and each Tune trial receives whole."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from trainables.stages import Plan

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class TrialData:
    """The data every trial of a run shares (sent once to Ray's object store): standardised
    features ``x[split]`` ``(n, 1, T, F)`` and labels ``y[split]`` of train, dev and test, the
    class names, and for the audio examples the test utterances' names and the per-band
    statistics the features were standardised with."""

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    classes: list[str]
    test_names: list[str] = field(default_factory=list)
    mean: np.ndarray | None = None
    std: np.ndarray | None = None


@dataclass(frozen=True)
class DefenceTrial:
    """Train one defence from scratch."""

    id: str
    defence: str  # the key under ``defences`` in the config
    seed: int  # the grid seed, as for an attack trial: the attack trials of that seed attack it
    training_seed: int  # what its weights' initialisation and sampling are drawn from


@dataclass(frozen=True)
class AttackTrial:
    """Train one attacker through ``plan`` (a strategy over defences, in training order)."""

    id: str
    plan: Plan
    sequence: str  # the sequence's name ("" for single- and multi-task)
    defences: tuple[str, ...]  # every defence the plan attacks, in training order
    lam: float | None  # the regulariser's strength (lifelong only)
    seed: int
    starts_from: str = ""  # the id of the one-stage trial whose final weights replace stage 1
    # A per-example baseline calibrated to a generator's SNR: the id of the generator trial
    # (single-task on its one surrogate, multi-task on its set) whose dev SNR is its target.
    snr_from: str = ""
    in_table: bool = True  # False for a helper that only trains a shared first stage

    @property
    def strategy(self) -> str:
        return self.plan.strategy

    @property
    def regulariser(self) -> str:
        return self.plan.regulariser

    @property
    def first_stage(self) -> tuple[int, str, tuple[str, ...], int]:
        """(seed, attacker model, defences, iterations) of stage 1: equal for trials that train
        it identically."""
        first = self.plan.stages[0]
        return self.seed, self.plan.attacker, first.defences, first.iterations

    def rows(self) -> dict[int, tuple[str, tuple[str, ...]]]:
        """(method, defences in training order) of each Table-1 row this trial yields, by the
        stages done when it is reported (from 1): ``rows()[2]`` is the row after stage 2."""
        return {k: (self.strategy, self.plan.trained_after(k))
                for k in range(1, len(self.plan.stages) + 1)}
