"""The grid: a pure function from a config to trial specs, and the Table-1 rows they yield.

Reading it should feel like reading Table 1: single-task rows (one per defence), multi-task rows
(every prefix of two or more defences of each sequence, each set once), and transfer and
lifelong rows (one trial per sequence, and per lambda for lifelong, reporting after every stage
so that one 3-defence trial gives both its 2-defence and its 3-defence rows).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from orchestrator.config import ExperimentConfig
from trainables.stages import make_plan


@dataclass(frozen=True)
class DefenceTrial:
    """Train one defence from scratch."""

    id: str
    defence: str  # the key under ``defences`` in the config
    seed: int


@dataclass(frozen=True)
class AttackTrial:
    """Train one attacker: a strategy over defences (in training order), a lambda, a seed."""

    id: str
    strategy: str
    sequence: str  # the sequence's name ("" for single-task)
    defences: tuple[str, ...]
    stage_iterations: tuple[int, ...]
    stage_defences: tuple[tuple[str, ...], ...]
    regulariser: str
    lam: float | None
    seed: int

    def rows(self) -> list[tuple[str, tuple[str, ...]]]:
        """(method, defences in training order) of each Table-1 row this trial yields, by stage:
        ``rows()[k]`` is the row reported after stage ``k`` (``None`` where none is)."""
        if self.strategy in ("transfer", "lifelong"):
            return [(self.strategy, self.defences[: k + 1]) for k in range(len(self.defences))]
        return [(self.strategy, self.defences)]

    def as_dict(self) -> dict:
        return asdict(self)


def _lambda_tag(lam: float) -> str:
    return f"lam{lam:.0e}".replace("+0", "").replace("+", "")


def defence_trials(config: ExperimentConfig) -> list[DefenceTrial]:
    """One trial per defence that any attack trial needs."""
    needed = set(config.defences) if "single-task" in config.grid.strategies else set()
    for sequence in config.grid.sequences.values():
        needed.update(sequence)
    return [DefenceTrial(id=f"defence-{name}", defence=name, seed=config.seed)
            for name in config.defences if name in needed]


def attack_trials(config: ExperimentConfig) -> list[AttackTrial]:
    """One trial per strategy x sequence x lambda x seed (lambda for lifelong only)."""
    grid, attack = config.grid, config.attack
    trials: list[AttackTrial] = []

    def add(strategy: str, sequence: str, defences: tuple[str, ...], lam: float | None,
            seed: int) -> None:
        plan = make_plan(strategy, defences, attack.first_stage_iterations,
                         attack.later_stage_iterations, config.lifelong.regulariser,
                         attack.multi_task_iterations)
        name = sequence if strategy != "multi-task" else "+".join(defences)
        parts = [strategy, name or defences[0], _lambda_tag(lam) if lam else "", f"seed{seed}"]
        trials.append(AttackTrial(
            id="-".join(p for p in parts if p), strategy=strategy, sequence=sequence,
            defences=defences, stage_iterations=tuple(s.iterations for s in plan.stages),
            stage_defences=tuple(s.defences for s in plan.stages),
            regulariser=plan.regulariser, lam=lam, seed=seed))

    for seed in grid.seeds:
        if "single-task" in grid.strategies:
            for name in config.defences:
                add("single-task", "", (name,), None, seed)
        if "multi-task" in grid.strategies:
            seen: set[frozenset[str]] = set()
            for sequence in grid.sequences.values():
                for k in range(2, len(sequence) + 1):
                    if frozenset(sequence[:k]) not in seen:
                        seen.add(frozenset(sequence[:k]))
                        add("multi-task", "", tuple(sequence[:k]), None, seed)
        for name, sequence in grid.sequences.items():
            if "transfer" in grid.strategies:
                add("transfer", name, tuple(sequence), None, seed)
            if "lifelong" in grid.strategies:
                for lam in grid.lambdas:
                    add("lifelong", name, tuple(sequence), lam, seed)
    return trials
