"""The Ray Tune trainable that trains one defence (config in; metrics and checkpoints out)."""

from __future__ import annotations

import torch

from trainables.defence_training import DefenceSettings, DefenceTrainer
from trainables.device import place, runtime
from trainables.evaluation import evaluate
from trainables.models import build
from trainables.tune_io import report, restore, split_tensors


def train_defence_trial(config: dict, data: dict) -> None:
    """``config["trial"]``: a ``DefenceTrial`` as a dict; ``config["experiment"]``: the run's
    config. ``data``: standardised features per split (from the object store)."""
    trial, experiment = config["trial"], config["experiment"]
    rt = runtime(experiment["performance"], experiment["tune"]["defence_resources"]["cpu"])
    torch.manual_seed(trial["seed"])
    spec = experiment["defences"][trial["defence"]]
    model = place(build(spec["model"], num_classes=len(data["classes"]), width=spec["width"]), rt)
    splits = {s: split_tensors(data, s, rt) for s in ("train", "dev", "test")}
    settings = DefenceSettings(**experiment["defence_training"], seed=trial["seed"], amp=rt.amp)
    trainer = DefenceTrainer(model, splits["train"], splits["dev"], settings)
    state = restore()
    if state is not None:
        trainer.load_state_dict(state)
    trainer.run(lambda metrics, t: report({**metrics, "finished": False}, t.state_dict()))
    final = evaluate(None, {trial["defence"]: model}, {"dev": splits["dev"], "test": splits["test"]},
                     amp=rt.amp)
    final.pop("confusion")
    report({**final, "iteration": trainer.iteration, "best_iteration": trainer.best_iteration,
            "best_dev_uar": trainer.best_uar, "finished": True},
           {**trainer.state_dict(), "defence": model.state_dict()})
