"""The grid: a pure function from a config to trial specs, and the Table-1 rows they yield.

Reading it should feel like reading Table 1: single-task rows (one per defence), multi-task rows
(every prefix of two or more defences of each sequence, each set once), and transfer and
lifelong rows (one trial per sequence, and per lambda for lifelong, reporting after every stage
so that one 3-defence trial gives both its 2-defence and its 3-defence rows), and the
per-example baselines (one trial per method and surrogate set; they train nothing, and run in
the continued experiment when their budget is calibrated to the SNR the generator on the same
defences recorded, ``snr_from``).

A transfer or lifelong trial trains its first stage exactly as the single-task trial on its first
defence does (same seed, same iterations). With ``grid.share_first_stage`` it starts from that
trial's final weights instead (``starts_from``), so the attack grid runs as two Tune
experiments: the trials that start from scratch, then those that continue one of them. Where the
grid has no such single-task trial but two or more trials share a first stage, a helper trial
(``first-stage-...``, not a Table-1 row) trains it once for them.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from orchestrator.config import ExperimentConfig
from trainables.regularisers import REGULARISERS
from trainables.errors import ConfigError
from trainables.stages import BASELINES, QUERY_ATTACKS, Plan, Stage, make_plan
from trainables.trials import AttackTrial, DefenceTrial

# The Tune experiments of a run, in its storage: the defences, the attack trials that start from
# scratch, and those that continue one of them.
DEFENCE_EXPERIMENT, ATTACK_EXPERIMENT, CONTINUED_EXPERIMENT = (
    "defences", "attacks", "attacks-continued")
ATTACK_EXPERIMENTS = (ATTACK_EXPERIMENT, CONTINUED_EXPERIMENT)
EXPERIMENTS = (DEFENCE_EXPERIMENT, *ATTACK_EXPERIMENTS)


# A query attack's snr_from when its target is the generator that transfers best to its
# defence: which one is known only once the first experiment has run.
GENERATOR_TARGET = "best-generator"

def experiment_of(trial: AttackTrial) -> str:
    """The Tune experiment that runs ``trial``: the continued experiment's trials start from
    the final state of a trial of the first, or (a per-example baseline) take its SNR."""
    return CONTINUED_EXPERIMENT if trial.starts_from or trial.snr_from else ATTACK_EXPERIMENT


def longest_first(trials: list[AttackTrial]) -> list[AttackTrial]:
    """``trials`` in the order an experiment starts them: the costliest first, by the defences
    an attack runs through at each step (a multi-task set, a baseline's ensemble), then by the
    iterations of its plan; ties keep the grid's order. Tune starts trials in the order given,
    and an experiment ends with its last trial: a long one started last runs on while the other
    cores idle. In the grid's own order the default run's first experiment (2 cores) started
    its three-defence multi-task trial (114 s) fifth and its short universal trials last."""
    def cost(trial: AttackTrial) -> tuple[int, int]:
        stages = trial.plan.stages
        return max(len(s.defences) for s in stages), sum(s.iterations for s in stages)
    return sorted(trials, key=cost, reverse=True)


def _lambda_tag(lam: float) -> str:
    """``lam`` in trial names, with every significant digit its float has (the shortest that
    reads back as it): ``lam1e4``, ``lam1.2e2``, ``lam5e-01``. Two lambdas give two names; a
    one-digit lambda keeps the name it had when names were rounded to one digit (``lam1e2``),
    so that runs started then still resume."""
    sign, digits, exponent = Decimal(repr(float(lam))).normalize().as_tuple()
    mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    power = len(digits) - 1 + exponent
    return f"lam{'-' if sign else ''}{mantissa}e{power if power >= 0 else f'-{-power:02d}'}"


# A trial's id names its folder (Tune's, results/audio/<trial>/): no file system takes a
# component much longer.
MAX_ID_LENGTH = 200


def _check_unique(trials: list) -> None:
    """``ConfigError`` for two trials of one name (one folder, one row of records: the report
    would give one trial's numbers for both) or a name too long for a folder. The grid's names
    are unique by construction (``_lambda_tag``; the config refuses repeated seeds and lambdas
    and names with ``+`` or ``/``): this keeps it so."""
    seen: set[str] = set()
    for trial in trials:
        if trial.id in seen:
            raise ConfigError(f"grid: two trials would both be named {trial.id!r}; make the "
                              "grid's values (lambdas, seeds, sequences) differ")
        if len(trial.id) > MAX_ID_LENGTH:
            raise ConfigError(f"grid: trial name {trial.id[:60]!r}... is {len(trial.id)} "
                              f"characters, more than a folder name takes ({MAX_ID_LENGTH}); "
                              "give the defences or sequences shorter names")
        seen.add(trial.id)


def defence_seed(config: ExperimentConfig, seed: int) -> int:
    """The training seed of the defences that the attack trials of grid seed ``seed`` attack:
    each grid seed draws its own defences (the split stays), so that seeds measure the spread
    over defences as well as attackers. The first grid seed 0 keeps ``config.seed``."""
    return config.seed + seed


def defence_trials(config: ExperimentConfig) -> list[DefenceTrial]:
    """One trial per defence and grid seed: every attack trial is evaluated on every defence,
    the held-out ones included."""
    trials = [DefenceTrial(id=f"defence-{name}-seed{seed}", defence=name, seed=seed,
                           training_seed=defence_seed(config, seed))
              for seed in config.grid.seeds for name in config.defences]
    _check_unique(trials)
    return trials


def defence_sets(config: ExperimentConfig) -> list[tuple[str, ...]]:
    """Each attacked defence alone (beside single-task) and each sequence's defences together
    (beside multi-task), each set once: what the universal perturbation is trained on, and by
    default what the per-example baselines are computed on."""
    sets = {frozenset([name]): (name,) for name in config.attacked_defences}
    for sequence in config.grid.sequences.values():
        sets.setdefault(frozenset(sequence), tuple(sequence))
    return list(sets.values())


def surrogate_sets(config: ExperimentConfig) -> list[tuple[str, ...]]:
    """The surrogate sets of the per-example baselines: ``baselines.surrogates`` as given, or
    by default ``defence_sets``."""
    return [tuple(s) for s in config.baselines.surrogates] or defence_sets(config)


def attack_trials(config: ExperimentConfig) -> list[AttackTrial]:
    """One trial per strategy x sequence x lambda x seed (lambda for lifelong only), and per
    baseline method x surrogate set x seed. Held-out defences are never attacked: single-task
    and universal trials attack each of the others, the sequences and surrogate sets hold none
    (the config checks)."""
    grid, attack = config.grid, config.attack
    trials: list[AttackTrial] = []

    def add(strategy: str, sequence: str, defences: tuple[str, ...], lam: float | None,
            seed: int) -> None:
        plan = make_plan(strategy, defences, attack.first_stage_iterations,
                         attack.later_stage_iterations, config.lifelong.regulariser,
                         attack.multi_task_iterations)
        name = sequence or "+".join(defences)
        parts = [strategy, name, _lambda_tag(lam) if lam else "", f"seed{seed}"]
        trials.append(AttackTrial(id="-".join(p for p in parts if p), plan=plan,
                                  sequence=sequence, defences=defences, lam=lam, seed=seed))

    for seed in grid.seeds:
        if "single-task" in grid.strategies:
            for name in config.attacked_defences:
                add("single-task", "", (name,), None, seed)
        if "multi-task" in grid.strategies:
            seen: set[frozenset[str]] = set()
            for sequence in grid.sequences.values():
                for k in range(2, len(sequence) + 1):
                    if frozenset(sequence[:k]) not in seen:
                        seen.add(frozenset(sequence[:k]))
                        add("multi-task", "", tuple(sequence[:k]), None, seed)
        if "universal" in grid.strategies:
            for defences in defence_sets(config):
                add("universal", "", defences, None, seed)
        for method in (s for s in BASELINES if s in grid.strategies):
            for defences in surrogate_sets(config):
                add(method, "", defences, None, seed)
                if config.baselines.eps == "calibrate" and \
                        config.baselines.target_snr_db == "generator":
                    trials[-1] = replace(trials[-1],
                                         snr_from=_generator_of(trials, defences, seed).id)
        for method in (s for s in QUERY_ATTACKS if s in grid.strategies):
            for held in config.held_out_defences:
                # Scored on the defence it queries, so not a row of Table 1.
                trials.append(AttackTrial(
                    id=f"{method}-{held}-seed{seed}", plan=make_plan(method, (held,), 0, 0),
                    sequence="", defences=(held,), lam=None, seed=seed, in_table=False,
                    snr_from=GENERATOR_TARGET if config.query.target_snr_db == "generator"
                    else ""))
        for name, sequence in grid.sequences.items():
            if "transfer" in grid.strategies:
                add("transfer", name, tuple(sequence), None, seed)
            if "lifelong" in grid.strategies:
                for lam in grid.lambdas:
                    add("lifelong", name, tuple(sequence), lam, seed)
    trials = _share_first_stages(trials) if grid.share_first_stage else trials
    _check_unique(trials)
    return trials


def _generator_of(trials: list[AttackTrial], defences: tuple[str, ...],
                  seed: int) -> AttackTrial:
    """The generator trained on ``defences`` (in any order) with ``seed``: single-task for one
    defence, multi-task for a set; ``ConfigError`` if the grid has none."""
    strategy = "single-task" if len(defences) == 1 else "multi-task"
    for trial in trials:
        if trial.strategy == strategy and trial.seed == seed and \
                frozenset(trial.defences) == frozenset(defences):
            return trial
    raise ConfigError(
        f"baselines.target_snr_db: 'generator' calibrates each baseline to the SNR of the "
        f"{strategy} generator on {' + '.join(defences)}, which this grid does not train; add "
        f"{strategy} to grid.strategies, or give the target in dB (--set "
        "baselines.target_snr_db=16)")


def _share_first_stages(trials: list[AttackTrial]) -> list[AttackTrial]:
    """Point every multi-stage trial whose regulariser does not need the training path at a
    one-stage trial with its first stage and seed, adding helpers where the grid has none."""
    leaders = {t.first_stage: t.id for t in trials if len(t.plan.stages) == 1}
    followers: dict[tuple, list[int]] = {}
    for index, trial in enumerate(trials):
        if len(trial.plan.stages) > 1 and not REGULARISERS[trial.regulariser].needs_path:
            followers.setdefault(trial.first_stage, []).append(index)
    shared = list(trials)
    for key, indices in followers.items():
        if key not in leaders:
            if len(indices) < 2:
                continue  # a helper would save nothing
            seed, _, defences, iterations = key
            leaders[key] = f"first-stage-{'+'.join(defences)}-seed{seed}"
            strategy = "single-task" if len(defences) == 1 else "multi-task"
            shared.append(AttackTrial(
                id=leaders[key], plan=Plan(strategy, (Stage(defences, iterations),)),
                sequence="", defences=defences, lam=None, seed=seed, in_table=False))
        for index in indices:
            shared[index] = replace(shared[index], starts_from=leaders[key])
    return shared
