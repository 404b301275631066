"""The Ray Tune trainable that trains one attacker through its strategy's stages."""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from trainables.atomic import write_atomically
from trainables.device import place, runtime
from trainables.evaluation import evaluate
from trainables.figures import figure2, figure_to_array
from trainables.models import build
from trainables.regularisers import build_regulariser
from trainables.stage_loop import LoopCallbacks, LoopSettings, StageLoop
from trainables.stages import Plan, Stage
from trainables.tune_io import report, restore, split_tensors, trial_dir


def plan_of(trial: dict) -> Plan:
    """The trial spec's stages as a ``Plan``."""
    stages = tuple(Stage(tuple(d), n) for d, n in zip(trial["stage_defences"],
                                                      trial["stage_iterations"]))
    return Plan(trial["strategy"], stages, trial["regulariser"])


def _figure_data(attacker, defences, x, label, classes, amp: bool) -> dict:
    attacker.eval()
    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        eta = attacker(x[None])
        predictions = {name: (classes[int(m(x[None]).argmax())],
                              classes[int(m(x[None] + eta).argmax())])
                       for name, m in defences.items()}
    attacker.train()
    return {"real": x[0].float().cpu().numpy(), "perturbation": eta[0, 0].float().cpu().numpy(),
            "label": classes[label], "predictions": predictions}


def _save_figure(path, figure: dict) -> None:
    with open(path, "wb") as handle:  # a handle: np.savez would add ".npz" to a bare name
        np.savez(handle, real=figure["real"], perturbation=figure["perturbation"],
                 label=figure["label"], predictions=json.dumps(figure["predictions"]))


def train_attack_trial(config: dict, data: dict, defence_weights: dict,
                       first_stages: dict | None = None) -> None:
    """``config["trial"]``: an ``AttackTrial`` as a dict; ``defence_weights``: by grid seed, each
    defence's trained ``state_dict`` (a trial attacks the defences of its own seed); ``first_stages``: final stage-loop states of one-stage trials by id,
    for a trial that ``starts_from`` one of them. Reports training losses every ``log_every``
    iterations, checkpoints every ``checkpoint_every``, and the full evaluation of every defence
    after each stage."""
    trial, experiment = config["trial"], config["experiment"]
    if trial["id"] in os.environ.get("SER_FAIL_TRIALS", "").split(","):
        # A fault-injection hook for reliability tests: this trial fails on every attempt.
        raise RuntimeError(f"failure injected into {trial['id']} by SER_FAIL_TRIALS")
    attack, lifelong = experiment["attack"], experiment["lifelong"]
    rt = runtime(experiment["performance"], experiment["tune"]["attack_resources"]["cpu"])
    classes = data["classes"]
    defences = {}
    for name, spec in experiment["defences"].items():
        model = build(spec["model"], num_classes=len(classes), width=spec["width"])
        model.load_state_dict(defence_weights[trial["seed"]][name])
        defences[name] = place(model, rt).eval()
    splits = {s: split_tensors(data, s, rt) for s in ("train", "dev", "test")}

    torch.manual_seed(trial["seed"])
    attacker = place(build(attack["model"], width=attack["width"], eta_init=attack["eta_init"]),
                     rt)
    plan = plan_of(trial)
    regulariser = build_regulariser(plan.regulariser, trial["lam"] or 0.0,
                                    fisher=lifelong["fisher"], decay=lifelong["decay"])
    settings = LoopSettings(
        alpha=attack["alpha"], margin_reduction=attack["margin_reduction"], lr=attack["lr"],
        lr_decay=attack["lr_decay"],
        lr_decay_every=attack["lr_decay_every"], batch_size=attack["batch_size"],
        log_every=attack["log_every"], fisher_samples=lifelong["fisher_samples"],
        fisher_batch_size=lifelong["fisher_batch_size"], seed=trial["seed"], amp=rt.amp,
        compile=rt.compile)
    loop = StageLoop(attacker, {d: defences[d] for d in trial["defences"]}, plan, regulariser,
                     *splits["train"], settings)
    state = restore()
    first_stage = (first_stages or {}).get(trial.get("starts_from", ""))
    if state is not None:
        loop.load_state_dict(state)
    elif first_stage is not None:
        loop.start_after_first_stage(first_stage)
    elif trial.get("starts_from"):
        print(f"{trial['id']}: {trial['starts_from']} left no final state; training the first "
              "stage here", flush=True)

    writer = SummaryWriter(str(trial_dir() / "tensorboard"))
    clean_predictions: dict = {}  # filled at the first evaluation, reused after every stage
    score = {"score": 1.0}  # mean adversarial dev UAR of the latest evaluation (ASHA's metric)
    figure_x, figure_y = splits["test"][0][0], int(splits["test"][1][0])

    def on_log(metrics: dict) -> None:
        for key in ("attack_loss", "penalty", "total_loss", "lr"):
            writer.add_scalar(f"train/{key}", metrics[key], metrics["global_step"])
        report({**metrics, **score, "kind": "train"})

    def on_step(loop: StageLoop) -> None:
        if loop.global_step % attack["checkpoint_every"] == 0:
            report({"kind": "checkpoint", "stage": loop.stage_index,
                    "global_step": loop.global_step, **score}, loop.state_dict())

    def on_stage_end(stage: int, loop: StageLoop) -> None:
        metrics = evaluate(attacker, defences, {"dev": splits["dev"], "test": splits["test"]},
                           attack["eval_batch_size"], clean_predictions, amp=rt.amp,
                           noise_seed=trial["seed"])
        confusion = metrics.pop("confusion")
        step = loop.global_step
        for key, value in metrics.items():
            writer.add_scalar(f"eval/{key}", value, step)
        trained = plan.trained_after(stage)
        score["score"] = float(np.mean([metrics[f"{d}/dev/adv_uar"] for d in trained]))
        figure = _figure_data(attacker, defences, figure_x, figure_y, classes, rt.amp)
        writer.add_image("figure2", figure_to_array(figure2(**figure)), step, dataformats="HWC")
        writer.flush()
        if loop.finished:  # atomically: the reporter reads it, a killed worker must not cut it
            write_atomically(trial_dir() / "figure2.npz", lambda tmp: _save_figure(tmp, figure))
        report({**metrics, **score, "kind": "stage", "stage": stage, "global_step": step,
                "trained_defences": " + ".join(trained), "confusion": json.dumps(confusion),
                "classes": list(classes),
                "finished": loop.finished}, loop.state_dict())

    loop.run(LoopCallbacks(on_log=on_log, on_step=on_step, on_stage_end=on_stage_end))
    writer.close()
