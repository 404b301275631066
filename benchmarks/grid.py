"""The paper grid's work in attacker steps, with and without a shared first stage, and its wall
time on this device projected from the measured throughputs."""

from __future__ import annotations

from orchestrator.config import load_config
from orchestrator.grid import attack_trials
from orchestrator.paths import PROJECT_ROOT
from trainables.stages import PAPER_STRATEGIES

PAPER = PROJECT_ROOT / "configs" / "paper.yaml"


def paper_grid(samples_per_s: dict[str, float], fisher_s_per_1024: float) -> dict:
    """``samples_per_s``: measured training throughput per defence name, and under
    ``multi-task`` for a stage attacking several defences at once (the 3-defence figure, so
    2-defence stages are projected a little slow). Projects one device running one trial at a
    time, without Tune's start-up or evaluation: a floor, not a promise."""
    out = {}
    for shared in (True, False):
        # data.root is never read here; the config only needs one to load.
        # The paper's own grid: its four methods (paper.yaml adds the universal baseline).
        config = load_config(PAPER, ["data.root=.", f"grid.share_first_stage={shared}".lower(),
                                     f"grid.strategies=[{', '.join(PAPER_STRATEGIES)}]"])
        batch, fisher_samples = config.attack.batch_size, config.lifelong.fisher_samples
        steps = seconds = 0.0
        for trial in attack_trials(config):
            stages = trial.plan.stages
            for stage in stages[1 if trial.starts_from else 0:]:
                defences = stage.defences
                rate = samples_per_s[defences[0] if len(defences) == 1 else "multi-task"]
                steps += stage.iterations
                seconds += stage.iterations * batch / rate
            if trial.regulariser != "none":
                seconds += (len(stages) - 1) * fisher_samples / 1024 * fisher_s_per_1024
        tag = "shared_first_stage" if shared else "unshared"
        out[f"{tag}_attacker_steps"] = int(steps)
        out[f"{tag}_projected_min"] = seconds / 60
    return out
