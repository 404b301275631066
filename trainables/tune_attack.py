"""The Ray Tune trainable that trains one attacker through its plan's stages, and the reader of
its checkpoints that the driver needs."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import torch
from ray import tune
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from trainables import metric_keys as keys
from trainables.audio_export import AUDIO_FOLDER, adversarial_examples, write_examples
from trainables.device import Runtime, place, runtime
from trainables.errors import DamagedFile
from trainables.evaluation import Split, evaluate
from trainables.figures import FIGURE_FILE, figure2, figure_to_array, save_figure_data
from trainables.models import build
from trainables.regularisers import build_regulariser
from trainables.settings import AttackSettings, TrialSettings
from trainables.stage_loop import LoopCallbacks, LoopSettings, StageLoop
from trainables.trials import AttackTrial, TrialData
from trainables.tune_io import (load_checkpoint, publish, report, restore, split_tensors,
                                trial_dir)

def train_attack_trial(config: dict, data: TrialData, defence_weights: dict,
                       settings: TrialSettings, trials: dict[str, AttackTrial],
                       first_stages: dict | None = None,
                       resume_from: dict[str, str] | None = None) -> None:
    """``config["trial"]``: the id of this trial's spec in ``trials``; ``data``: the run's
    features (from the object store); ``defence_weights``: by grid seed, each defence's trained ``state_dict``
    (a trial attacks the defences of its own seed); ``first_stages``: final states of one-stage
    trials by id (``final_stage_state``), for a trial that ``starts_from`` one of them;
    ``resume_from``: checkpoint folders by trial id, for an experiment run again after its saved
    state could not be restored.

    Reports training losses every ``log_every`` iterations, checkpoints every
    ``checkpoint_every``, and the full evaluation of every defence after each stage."""
    trial = trials[config["trial"]]
    rt = runtime(settings.performance, settings.attack_cpus)
    defences = _defences(settings, defence_weights[trial.seed], len(data.classes), rt)
    splits = {s: split_tensors(data, s, rt) for s in ("train", *keys.SPLITS)}
    loop = _stage_loop(trial, settings, rt, defences, splits["train"])
    _start(loop, trial, first_stages or {}, (resume_from or {}).get(trial.id))
    stage_reports = StageReports(trial, settings, rt, defences, splits, data)
    loop.run(stage_reports.callbacks())
    stage_reports.close()


def final_stage_state(checkpoint: tune.Checkpoint) -> dict | None:
    """What a trial that ``starts_from`` this one needs of its last checkpoint (the weights and
    the sampler), or ``None`` when the checkpoint is not the end of a finished one-stage plan."""
    try:
        state = load_checkpoint(checkpoint)
    except DamagedFile as error:  # the trials that start from it train their first stage
        print(f"{error}: not continuing from it", flush=True)
        return None
    if int(state["iteration"]) != 0 or int(state["stage_index"]) < 1:
        return None
    return {k: state[k] for k in ("attacker", "generator", "stage_index", "iteration")}


def _defences(settings: TrialSettings, weights: dict, num_classes: int, rt: Runtime
              ) -> dict[str, nn.Module]:
    defences = {}
    for name, spec in settings.defences.items():
        model = build(spec.model, num_classes=num_classes, width=spec.width)
        model.load_state_dict(weights[name])
        defences[name] = place(model, rt).eval()
    return defences


def _stage_loop(trial: AttackTrial, settings: TrialSettings, rt: Runtime,
                defences: dict[str, nn.Module], train: Split) -> StageLoop:
    attack, lifelong = settings.attack, settings.lifelong
    if trial.plan.attacker == "universal":
        attack = replace(attack, lr=attack.universal_lr)
    torch.manual_seed(trial.seed)
    attacker = place(attacker_for(trial.plan.attacker, attack, tuple(train[0].shape[1:])), rt)
    regulariser = build_regulariser(trial.regulariser, trial.lam or 0.0, fisher=lifelong.fisher,
                                    decay=lifelong.decay)
    loop_settings = LoopSettings(attack, lifelong, seed=trial.seed, amp=rt.amp,
                                 compile=rt.compile)
    return StageLoop(attacker, {d: defences[d] for d in trial.defences}, trial.plan, regulariser,
                     *train, loop_settings)


def attacker_for(model: str, attack: AttackSettings, input_shape: tuple[int, ...]) -> nn.Module:
    """A plan's attacker: the atrous network (``attack.model``, its width) or the universal
    perturbation of the inputs' shape, both starting at ``attack.eta_init``."""
    if model == "universal":
        return build("universal", input_shape=input_shape, eta_init=attack.eta_init)
    return build(model, width=attack.width, eta_init=attack.eta_init)


def _start(loop: StageLoop, trial: AttackTrial, first_stages: dict[str, dict],
           fallback: str | None) -> None:
    """Continue from the trial's checkpoint (a retry or ``--resume``, else ``fallback``), else
    from the final state of the trial it ``starts_from``, else from scratch."""
    state = restore(fallback)
    if state is not None:
        loop.load_state_dict(state)
    elif trial.starts_from in first_stages:
        loop.start_after_first_stage(first_stages[trial.starts_from])
    elif trial.starts_from:
        print(f"{trial.id}: {trial.starts_from} left no final state; training the first "
              "stage here", flush=True)


class StageReports:
    """The stage loop's callbacks in a Tune trial: losses to TensorBoard and Tune, checkpoints,
    and after each stage the evaluation of every defence, Figure 2's data and the ASHA score."""

    def __init__(self, trial: AttackTrial, settings: TrialSettings, rt: Runtime,
                 defences: dict[str, nn.Module], splits: dict[str, Split],
                 data: TrialData) -> None:
        self.trial, self.settings, self.rt = trial, settings, rt
        self.defences, self.classes, self.data = defences, data.classes, data
        self.evaluated = {s: splits[s] for s in keys.SPLITS}
        self.figure_input = splits["test"][0][0], int(splits["test"][1][0])
        self.writer = SummaryWriter(str(trial_dir() / "tensorboard"))
        self.clean_predictions: dict = {}  # filled at the first evaluation, reused after
        self.score = 1.0  # mean adversarial dev UAR of the latest evaluation

    def callbacks(self) -> LoopCallbacks:
        return LoopCallbacks(on_log=self.on_log, on_step=self.on_step,
                             on_stage_end=self.on_stage_end)

    def on_log(self, metrics: dict) -> None:
        for key in ("attack_loss", "penalty", "total_loss", "lr"):
            self.writer.add_scalar(f"train/{key}", metrics[key], metrics[keys.STEP])
        report({**metrics, keys.SCORE: self.score, keys.KIND: keys.TRAIN})

    def on_step(self, loop: StageLoop) -> None:
        if loop.global_step % self.settings.attack.checkpoint_every == 0:
            report({keys.KIND: keys.CHECKPOINT, "stage": loop.stage_index,
                    keys.STEP: loop.global_step, keys.SCORE: self.score}, loop.state_dict())

    def on_stage_end(self, stage: int, loop: StageLoop) -> None:
        metrics = evaluate(loop.attacker, self.defences, self.evaluated,
                           self.settings.attack.eval_batch_size, self.clean_predictions,
                           amp=self.rt.amp, noise_seed=self.trial.seed)
        confusion = metrics.pop("confusion")
        step = loop.global_step
        for key, value in metrics.items():
            self.writer.add_scalar(f"eval/{key}", value, step)
        trained = self.trial.plan.trained_after(stage)
        self.score = float(np.mean([metrics[keys.uar(d, "dev")] for d in trained]))
        figure = _figure_data(loop.attacker, self.defences, *self.figure_input, self.classes,
                              self.rt.amp)
        self.writer.add_image("figure2", figure_to_array(figure2(**figure)), step,
                              dataformats="HWC")
        self.writer.flush()
        if loop.finished:  # whole: the reporter reads it, a killed worker must not cut it
            publish(lambda path: save_figure_data(path, **figure), FIGURE_FILE)
            self.listen(loop.attacker, step)
        report({**metrics, keys.SCORE: self.score, keys.KIND: keys.STAGE, "stage": stage,
                keys.STEP: step, "trained_defences": " + ".join(trained),
                "confusion": json.dumps(confusion),
                # JSON text, as TensorBoard's logger takes only numbers and strings
                "classes": json.dumps(list(self.classes)),
                "finished": loop.finished}, loop.state_dict())

    def listen(self, attacker: nn.Module, step: int) -> None:
        """The audio examples of the finished attacker: WAV files and TensorBoard audio."""
        count = min(self.settings.audio.examples, len(self.data.test_names))
        if count == 0:
            return
        features = self.settings.features
        examples = adversarial_examples(
            attacker, self.evaluated["test"][0][:count], self.data.test_names[:count],
            self.data.mean, self.data.std, features, self.settings.audio.iterations,
            self.rt.amp)
        publish(lambda folder: write_examples(examples, folder, features.sample_rate),
                AUDIO_FOLDER)
        for example in examples:
            for kind, wave in zip(("clean", "adversarial"), example.scaled()):
                self.writer.add_audio(f"audio/{example.name}/{kind}", torch.from_numpy(wave),
                                      step, sample_rate=features.sample_rate)

    def close(self) -> None:
        self.writer.close()


def _figure_data(attacker: nn.Module, defences: dict[str, nn.Module], x: torch.Tensor,
                 label: int, classes: list[str], amp: bool) -> dict:
    attacker.eval()
    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        eta = attacker(x[None])
        predictions = {name: (classes[int(m(x[None]).argmax())],
                              classes[int(m(x[None] + eta).argmax())])
                       for name, m in defences.items()}
    attacker.train()
    return {"real": x[0].float().cpu().numpy(), "perturbation": eta[0, 0].float().cpu().numpy(),
            "label": classes[label], "predictions": predictions}

