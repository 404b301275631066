"""Strategies as data: each is a list of stages (the defences attacked together, for how long),
the name of a regulariser and the attacker model trained. One loop
(``trainables.stage_loop``) trains them all; a per-example baseline (PGD, MI-, DI-, VMI-FGSM)
is a plan of one untrained stage on its surrogates, computed when it is evaluated."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

# The paper's four, the universal perturbation (``trainables/models/universal.py``), and the
# per-example transfer attacks a reviewer compares a generator with
# (``trainables/transfer_attacks.py``: its ``METHODS`` has exactly these names).
Strategy = Literal["single-task", "multi-task", "transfer", "lifelong", "universal",
                   "pgd", "mi-fgsm", "di-fgsm", "vmi-fgsm", "square"]
STRATEGIES: tuple[str, ...] = typing.get_args(Strategy)
PAPER_STRATEGIES = STRATEGIES[:4]
BASELINES: tuple[str, ...] = STRATEGIES[5:9]
# The query-only attack on each held-out defence (``trainables/query_attacks.py``): not a row of
# Table 1 (it queries the model it is scored on), its UAR against the queries in
# query_attack.csv.
QUERY_ATTACKS: tuple[str, ...] = STRATEGIES[9:]


@dataclass(frozen=True)
class Stage:
    """Defences attacked together, by name, and the stage's iterations."""

    defences: tuple[str, ...]
    iterations: int


@dataclass(frozen=True)
class Plan:
    """A strategy made concrete: its stages, its regulariser (``none`` for no constraint) and the
    attacker model it trains (a name in ``trainables.models``)."""

    strategy: str
    stages: tuple[Stage, ...]
    regulariser: str = "none"
    attacker: str = "atrous"

    def trained_after(self, stages_done: int) -> tuple[str, ...]:
        """The defences attacked in the first ``stages_done`` stages (counted from 1), in
        training order, each once: what the attacker has been trained on then (its Table-1
        row's defences)."""
        return tuple(dict.fromkeys(d for s in self.stages[:stages_done] for d in s.defences))


def single_task(defence: str, iterations: int) -> Plan:
    """One stage, one defence."""
    return Plan("single-task", (Stage((defence,), iterations),))


def multi_task(defences: tuple[str, ...], iterations: int) -> Plan:
    """One stage, every defence at once (their margins averaged)."""
    return Plan("multi-task", (Stage(tuple(defences), iterations),))


def transfer(defences: tuple[str, ...], first: int, later: int) -> Plan:
    """One stage per defence in sequence, the attacker carried over, no constraint."""
    return Plan("transfer", tuple(Stage((d,), first if i == 0 else later)
                                  for i, d in enumerate(defences)))


def lifelong(defences: tuple[str, ...], first: int, later: int, regulariser: str = "ewc") -> Plan:
    """Transfer plus a regulariser (EWC by default) that protects what earlier stages learnt."""
    return Plan("lifelong", transfer(defences, first, later).stages, regulariser)


def universal(defences: tuple[str, ...], iterations: int) -> Plan:
    """One stage, one input-independent perturbation against one or several defences."""
    return Plan("universal", (Stage(tuple(defences), iterations),), attacker="universal")


def per_example(method: str, surrogates: tuple[str, ...]) -> Plan:
    """A per-example transfer attack (a name in ``BASELINES``) computed on ``surrogates``: one
    stage of no training (the attack is computed per utterance when it is evaluated), its
    "attacker" the method itself."""
    if method not in BASELINES:
        raise ValueError(f"unknown per-example attack {method!r}; allowed: {', '.join(BASELINES)}")
    return Plan(method, (Stage(tuple(surrogates), 0),), attacker=method)


def make_plan(strategy: str, defences: tuple[str, ...], first: int, later: int,
              regulariser: str = "ewc", multi_task_iterations: str = "matched") -> Plan:
    """The plan of ``strategy`` over ``defences`` (one defence for single-task). A one-stage plan
    on several defences (multi-task, universal) gets ``first + later x (k - 1)`` iterations with
    ``multi_task_iterations: matched``, the sequential strategies' whole budget."""
    one_stage = first + later * (len(defences) - 1) if multi_task_iterations == "matched" \
        else first
    if strategy == "single-task":
        if len(defences) != 1:
            raise ValueError(f"single-task attacks one defence, got {defences}")
        return single_task(defences[0], first)
    if strategy == "multi-task":
        return multi_task(defences, one_stage)
    if strategy == "universal":
        return universal(defences, one_stage)
    if strategy == "transfer":
        return transfer(defences, first, later)
    if strategy == "lifelong":
        return lifelong(defences, first, later, regulariser)
    if strategy in BASELINES:
        return per_example(strategy, defences)
    if strategy in QUERY_ATTACKS:
        return Plan(strategy, (Stage(tuple(defences), 0),), attacker=strategy)
    raise ValueError(f"unknown strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
