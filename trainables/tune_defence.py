"""The Ray Tune trainable that trains one defence, and the readers of what it leaves that the
driver needs."""

from __future__ import annotations

import torch
from ray import tune

from trainables import metric_keys as keys
from trainables.defence_training import DefenceTrainer
from trainables.builders import build_defence
from trainables.device import Runtime, place, runtime
from trainables.evaluation import Split, evaluate
from trainables.settings import DefenceTrainingSettings, TrialSettings
from trainables.trials import DefenceTrial, TrialData
from trainables.tune_io import load_checkpoint, report, restore, split_tensors


def train_defence_trial(config: dict, data: TrialData, settings: TrialSettings,
                        trials: dict[str, DefenceTrial],
                        resume_from: dict | None = None) -> None:
    """``config["trial"]``: the id of this trial's spec in ``trials``; ``data``: the run's
    features (from the object store); ``resume_from``: by trial id, a checkpoint to continue
    from when Tune has none. Reports dev UAR at every evaluation point with a checkpoint, and
    at the end the clean UAR of the selected weights (``clean_uar``) with them in the
    checkpoint."""
    trial = trials[config["trial"]]
    rt = runtime(settings.performance, settings.defence_cpus)
    torch.manual_seed(trial.training_seed)
    spec = settings.defences[trial.defence]
    model = place(build_defence(spec, len(data.classes)), rt)
    splits = {s: split_tensors(data, s, rt) for s in ("train", *keys.SPLITS)}
    trainer = build_defence_trainer(model, splits, settings.defence_training,
                                    trial.training_seed, rt)
    state = restore((resume_from or {}).get(trial.id))
    if state is not None:
        trainer.load_state_dict(state)
    trainer.run(lambda metrics, t: report({**metrics, "finished": False}, t.state_dict()))
    final = evaluate(None, {trial.defence: model}, {s: splits[s] for s in keys.SPLITS},
                     amp=rt.amp)
    final.pop("confusion")
    report({**final, "iteration": trainer.iteration, "best_iteration": trainer.best_iteration,
            "best_dev_uar": trainer.best_uar, "finished": True},
           {**trainer.state_dict(), "defence": model.state_dict()})


def build_defence_trainer(model: torch.nn.Module, splits: dict[str, Split],
                          training: DefenceTrainingSettings, seed: int,
                          rt: Runtime) -> DefenceTrainer:
    """The trainer of one defence, as its trainable runs it: trained on the train split of
    ``splits``, its weights selected on dev (never on test, which Table 1 reports)."""
    return DefenceTrainer(model, splits["train"], splits["dev"], training, seed=seed, amp=rt.amp)


def trained_defence(checkpoint: tune.Checkpoint) -> dict:
    """The selected weights (a ``state_dict``) in a finished defence trial's checkpoint."""
    return load_checkpoint(checkpoint)["defence"]


def clean_uar(metrics: dict, defence: str) -> dict[str, float]:
    """The defence's clean UAR on dev and test (``cnn4/dev/clean_uar``, ...) from a finished
    defence trial's last report."""
    return {key: metrics[key] for key in (keys.uar(defence, split, "clean_uar")
                                          for split in keys.SPLITS)}
