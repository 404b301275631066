"""The Ray Tune trainable that trains one attacker through its plan's stages, or computes a
per-example baseline (``trainables.transfer_attacks``) and records it the same way."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

import numpy as np
import ray
import torch
from ray import tune
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from trainables import metric_keys as keys
from trainables.audio_export import adversarial_examples, log_examples, write_examples
from trainables.builders import attack_settings_for, build_attacker, build_target
from trainables.device import Runtime, place, runtime
from trainables.evaluation import Split, evaluate
from trainables.figures import figure2, figure_inputs, figure_to_array, save_figure_data
from trainables.regularisers import build_regulariser
from trainables.settings import BaselineSettings, TrialSettings
from trainables.stage_loop import LoopCallbacks, LoopSettings, StageLoop, freeze
from trainables.metrics import snr_db, uar
from trainables.query_attacks import flat_eps, query_curve
from trainables.stages import BASELINES, QUERY_ATTACKS
from trainables.transfer_attacks import (AttackParameters, TransferAttack, calibrate_eps,
                                         data_range)
from trainables.stage_record import StageRecord
from trainables.trial_folder import AUDIO_FOLDER, FIGURE_FILE, QUERY_FILE, record_path
from trainables.trials import AttackTrial, TrialData
from trainables.tune_io import final_stage_state, publish, report, restore, split_tensors, trial_dir

log = logging.getLogger(__name__)


def train_attack_trial(config: dict, data: TrialData, defences: dict, settings: TrialSettings,
                       trials: dict[str, AttackTrial], first_stages: dict | None = None,
                       resume_from: dict | None = None,
                       generator_snr: dict[str, float] | None = None,
                       query_targets: dict[str, tuple[str, float]] | None = None,
                       first_records: dict[str, StageRecord] | None = None) -> None:
    """``config["trial"]``: the id of this trial's spec in ``trials``; ``data``: the run's
    features (from the object store); ``defences``: by grid seed, a reference in the object
    store to that seed's defences' weights (a trial fetches its own seed's only);
    ``first_stages``: by trial id, the final checkpoint of a one-stage trial, for a trial that
    ``starts_from`` it; ``generator_snr``: by trial id, the dev SNR a generator trial recorded,
    for a per-example baseline calibrated to it (``snr_from``); ``query_targets``: by query
    trial id, the generator whose dev SNR it takes and that SNR; ``first_records``: by trial
    id, the stage record a one-stage trial of ``first_stages`` wrote of its final state, which a
    trial that starts from that state takes as its own first stage's instead of evaluating the
    same weights again; ``resume_from``: by trial id, a checkpoint to continue from when Tune
    has none (an experiment run again after its saved state could not be restored).

    Reports training losses every ``log_every`` iterations, checkpoints every
    ``checkpoint_every``, and after each stage the evaluation of every defence, as a stage
    record (``trainables.stage_record``) and to Tune."""
    trial = trials[config["trial"]]
    rt = runtime(settings.performance, settings.attack_cpus)
    models = _defences(settings, ray.get(defences[trial.seed]), len(data.classes), rt)
    splits = {s: split_tensors(data, s, rt) for s in ("train", *keys.SPLITS)}
    fallback = (resume_from or {}).get(trial.id)
    if trial.strategy in QUERY_ATTACKS:
        run_query_trial(trial, settings, rt, models, splits, (query_targets or {}).get(trial.id),
                        first_stages or {})
        return
    if trial.strategy in BASELINES:
        stage_reports = StageReports(trial, settings, rt, models, splits, data)
        run_baseline(trial, settings, rt, models, splits, stage_reports, fallback,
                     target_of(trial, settings, generator_snr or {}))
        stage_reports.close()
        return
    loop = build_stage_loop(trial, settings, rt, models, splits)
    took_first = _start(loop, trial, first_stages or {}, fallback)
    stage_reports = StageReports(trial, settings, rt, models, splits, data,
                                 (first_records or {}).get(trial.starts_from) if took_first
                                 else None)
    loop.run(stage_reports.callbacks())
    stage_reports.close()


def _defences(settings: TrialSettings, weights: dict, num_classes: int, rt: Runtime
              ) -> dict[str, nn.Module]:
    defences = {}
    for name, spec in settings.defences.items():
        defences[name] = place(build_target(spec, num_classes, weights[name]), rt)
    return defences


def build_stage_loop(trial: AttackTrial, settings: TrialSettings, rt: Runtime,
                     defences: dict[str, nn.Module], splits: dict[str, Split]) -> StageLoop:
    """The trial's stage loop, as its trainable runs it: the plan's attacker (the universal
    perturbation at ``attack.universal_lr``), its regulariser, against the trial's defences, on
    the train split of ``splits`` (its minibatches and the regulariser's importance alike)."""
    attack = attack_settings_for(trial.plan.attacker, settings.attack)
    lifelong = settings.lifelong
    train = splits["train"]
    torch.manual_seed(trial.seed)
    attacker = place(build_attacker(trial.plan.attacker, attack, tuple(train[0].shape[1:])), rt)
    regulariser = build_regulariser(trial.regulariser, trial.lam or 0.0, fisher=lifelong.fisher,
                                    decay=lifelong.decay)
    loop_settings = LoopSettings(attack, lifelong, seed=trial.seed, amp=rt.amp,
                                 compile=rt.compile)
    return StageLoop(attacker, {d: defences[d] for d in trial.defences}, trial.plan, regulariser,
                     *train, loop_settings)


def attack_parameters(baselines: BaselineSettings) -> AttackParameters:
    """What ``trainables.transfer_attacks`` runs with, from the configured settings."""
    return AttackParameters(steps=baselines.steps, step_factor=baselines.step_factor,
                            decay=baselines.decay, loss=baselines.loss,
                            di_probability=baselines.di_probability,
                            di_min_scale=baselines.di_min_scale,
                            vmi_samples=baselines.vmi_samples, vmi_radius=baselines.vmi_radius)


def target_of(trial: AttackTrial, settings: TrialSettings,
              generator_snr: dict[str, float]) -> float | None:
    """The dev SNR a baseline's eps is calibrated to: that of its generator (``snr_from``),
    else ``baselines.target_snr_db``; ``None`` for a given eps. ``RuntimeError`` naming the
    generator when it recorded none (it failed: ``--resume`` retries both)."""
    baselines = settings.baselines
    if baselines.eps != "calibrate":
        return None
    if trial.snr_from:
        if trial.snr_from not in generator_snr:
            raise RuntimeError(f"{trial.snr_from} recorded no dev SNR for {trial.id} to be "
                               "calibrated to (it failed or was damaged); --resume retries it")
        return float(generator_snr[trial.snr_from])
    if baselines.target_snr_db == "generator":
        raise RuntimeError(f"{trial.id}: target_snr_db is 'generator' but the trial names none")
    return float(baselines.target_snr_db)


def build_baseline(trial: AttackTrial, settings: TrialSettings, rt: Runtime,
                   defences: dict[str, nn.Module], splits: dict[str, Split],
                   eps: float | None = None, target_db: float | None = None) -> TransferAttack:
    """The trial's per-example attack on its surrogates (``trial.defences``), clamped to each
    band's training range, with ``eps``: given, else ``baselines.eps``, else calibrated on
    ``baselines.calibration_utterances`` dev utterances (drawn by the trial's seed) to
    ``target_db`` (``target_of``), under the numerics the evaluation uses (bf16 with
    ``amp``)."""
    baselines = settings.baselines
    parameters = attack_parameters(baselines)
    surrogates = [freeze(defences[d]) for d in trial.defences]
    bounds = data_range(splits["train"][0])
    if eps is None and baselines.eps != "calibrate":
        eps = float(baselines.eps)
    if eps is None:
        if target_db is None:
            raise ValueError(f"{trial.id}: eps is calibrated, but no target SNR was given")
        x, y = splits["dev"]
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(trial.seed))
        subset = order[: baselines.calibration_utterances].to(x.device)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=rt.amp):
            found = calibrate_eps(trial.strategy, x[subset], y[subset], surrogates, target_db,
                                  parameters, bounds, trial.seed, baselines.tolerance_db,
                                  settings.attack.eval_batch_size)
        # Debug, not info: the record keeps eps and the target (training/train/eps,
        # target_snr_db), and a line per trial on the console is nothing to act on.
        log.debug(f"{trial.id}: eps {found.eps:.4g} gives {found.snr_db:.2f} dB SNR on "
                 f"{len(subset)} dev utterances (target {target_db:.2f} dB, "
                 f"{found.evaluations} attacks)")
        eps = found.eps
    return TransferAttack(trial.strategy, surrogates, eps, parameters, bounds, seed=trial.seed)


def run_baseline(trial: AttackTrial, settings: TrialSettings, rt: Runtime,
                 defences: dict[str, nn.Module], splits: dict[str, Split],
                 reports: StageReports, fallback: tune.Checkpoint | None,
                 target_db: float | None) -> None:
    """A per-example baseline as a trial: its budget (from a checkpoint of a try before, else
    calibrated or given, then checkpointed so that a retry does not calibrate again), then its
    one stage record, the evaluation of every defence on the attack computed per utterance, as
    any trial's stage is recorded."""
    state = restore(fallback)
    attack = build_baseline(trial, settings, rt, defences, splits,
                            float(state["eps"]) if state and "eps" in state else None, target_db)
    budget = {"eps": attack.eps, "stage_index": 0, "iteration": 0}
    report({keys.KIND: keys.CHECKPOINT, keys.STEP: 0, keys.SCORE: 1.0}, budget)
    reports.record_stage(1, attack, 0, True, {**budget, "stage_index": 1},
                         {keys.training("penalty_share"): 0.0, keys.training("eps"): attack.eps,
                          keys.training("target_snr_db"):
                              float("nan") if target_db is None else target_db})


def generator_on(checkpoint: tune.Checkpoint | None, settings: TrialSettings, rt: Runtime,
                 model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict | None:
    """The held-out ``model``'s UAR on ``x`` perturbed by the generator whose final
    ``checkpoint`` this is (a single- or multi-task trial's atrous attacker), and that
    perturbation's SNR: the zero-query point of a query attack, on its own utterances. ``None``
    without a usable checkpoint."""
    state = final_stage_state(checkpoint) if checkpoint is not None else None
    if state is None:
        return None
    attacker = build_attacker("atrous", settings.attack, tuple(x.shape[1:]))
    attacker.load_state_dict(state["attacker"])
    attacker = place(attacker, rt).eval()
    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=rt.amp):
        eta = attacker(x).float()
        predicted = model(x + eta).argmax(1)
    return {"uar": uar(y.cpu().numpy(), predicted.cpu().numpy()),
            "snr_db": snr_db(x.pow(2).sum().item(), eta.pow(2).sum().item()),
            "linf": eta.abs().max().item()}


def run_query_trial(trial: AttackTrial, settings: TrialSettings, rt: Runtime,
                    defences: dict[str, nn.Module], splits: dict[str, Split],
                    target: tuple[str, float] | None,
                    checkpoints: dict[str, tune.Checkpoint]) -> None:
    """The query-only Square attack on the trial's held-out defence: on
    ``query.utterances`` test utterances (drawn by the trial's seed), at the eps whose +-eps
    everywhere has the target SNR (the generator's that transfers best to the defence, or
    ``query.target_snr_db``), one point per query budget, and that generator's own transfer on
    the same utterances (from its final checkpoint in ``checkpoints``), written to the trial's
    ``QUERY_FILE`` (the report's query_attack.csv) and reported to Tune."""
    query = settings.query
    held = trial.defences[0]
    if query.target_snr_db == "generator":
        if target is None:
            raise RuntimeError(f"{trial.id}: no single- or multi-task trial of seed {trial.seed} "
                               f"recorded a dev UAR on {held} to take the SNR of; --resume "
                               "retries it")
        source, target_db = target
    else:
        source, target_db = "", float(query.target_snr_db)
    model = freeze(defences[held])
    x, y = splits["test"]
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(trial.seed))
    subset = order[: query.utterances].to(x.device)
    x, y = x[subset].float().contiguous(), y[subset]
    eps = flat_eps(x, target_db)
    bounds = tuple(b.to(x.device) for b in data_range(splits["train"][0]))
    points = query_curve(model, x, y, eps, query.budgets, bounds, trial.seed, query.p_init,
                         settings.attack.eval_batch_size)
    curve = {"trial_id": trial.id, "defence": held, "seed": trial.seed, "eps": eps,
             "target_snr_db": target_db, "target_from": source, "utterances": len(x),
             "clean_uar": uar(y.cpu().numpy(), model(x).argmax(1).cpu().numpy()),
             "generator": generator_on(checkpoints.get(source), settings, rt, model, x, y)
             if source else None,
             "points": [asdict(p) for p in points]}
    publish(lambda path: path.write_text(json.dumps(curve, indent=2) + "\n"), QUERY_FILE)
    last = points[-1]
    report({keys.KIND: keys.STAGE, keys.STAGE_NUMBER: 1, keys.STEP: last.queries,
            keys.SCORE: last.uar, keys.uar(held, "test"): last.uar, "finished": True})


def _start(loop: StageLoop, trial: AttackTrial, first_stages: dict[str, tune.Checkpoint],
           fallback: tune.Checkpoint | None) -> bool:
    """Continue from the trial's checkpoint (a retry or ``--resume``, else ``fallback``), else
    from the final state of the trial it ``starts_from``, else from scratch. Whether it took
    that final state as its first stage."""
    state = restore(fallback)
    if state is not None:
        loop.load_state_dict(state)
        return False
    first = final_stage_state(first_stages[trial.starts_from]) \
        if trial.starts_from in first_stages else None
    if first is not None:
        loop.start_after_first_stage(first)
        return True
    if trial.starts_from:
        log.info(f"{trial.id}: {trial.starts_from} left no usable final state; training the "
                 "first stage here")
    return False


class StageReports:
    """The stage loop's callbacks in a Tune trial: losses to TensorBoard and Tune, checkpoints,
    and after each stage the evaluation of every defence, Figure 2's data and the ASHA score.
    ``first_record``: the record another trial wrote of this trial's attacker at its first
    stage's end (the first stage taken from a one-stage trial): the same weights on the same
    data, so the same numbers, taken instead of evaluating again."""

    def __init__(self, trial: AttackTrial, settings: TrialSettings, rt: Runtime,
                 defences: dict[str, nn.Module], splits: dict[str, Split],
                 data: TrialData, first_record: StageRecord | None = None) -> None:
        self.trial, self.settings, self.rt = trial, settings, rt
        self.defences, self.classes, self.data = defences, data.classes, data
        self.evaluated = {s: splits[s] for s in keys.SPLITS}
        self.figure_input = splits["test"][0][0], int(splits["test"][1][0])
        self.writer = SummaryWriter(str(trial_dir() / "tensorboard"))
        self.clean_predictions: dict = {}  # filled at the first evaluation, reused after
        self.score = 1.0  # mean adversarial dev UAR of the latest evaluation
        self.last_log: dict = {}  # the losses of the latest logged steps
        self.first_record = first_record

    def callbacks(self) -> LoopCallbacks:
        return LoopCallbacks(on_log=self.on_log, on_step=self.on_step,
                             on_stage_end=self.on_stage_end)

    def on_log(self, metrics: dict) -> None:
        self.last_log = metrics
        for key in keys.LOSSES:
            self.writer.add_scalar(f"train/{key}", metrics[key], metrics[keys.STEP])
        report({**metrics, keys.SCORE: self.score, keys.KIND: keys.TRAIN})

    def on_step(self, loop: StageLoop) -> None:
        if loop.global_step % self.settings.attack.checkpoint_every == 0:
            report({keys.KIND: keys.CHECKPOINT, keys.STEP: loop.global_step,
                    keys.SCORE: self.score}, loop.state_dict())

    def on_stage_end(self, stages_done: int, loop: StageLoop) -> None:
        self.record_stage(stages_done, loop.attacker, loop.global_step, loop.finished,
                          loop.state_dict(),
                          {keys.training("penalty_share"): self.penalty_share(stages_done)})

    def record_stage(self, stages_done: int, attacker: nn.Module, step: int, finished: bool,
                     state: dict, training: dict[str, float]) -> None:
        """Evaluate ``attacker`` (a generator, or a per-example attack) on every defence, and
        record the stage: TensorBoard, Figure 2's data, the stage record, the audio examples of
        a finished trial, and a report to Tune with ``state`` as its checkpoint. ``training``:
        the ``metric_keys.training`` values of the stage."""
        if stages_done == 1 and self.first_record is not None:
            metrics = {**self.first_record.metrics, "confusion": self.first_record.confusion}
        else:
            metrics = evaluate(attacker, self.defences, self.evaluated,
                               self.settings.attack.eval_batch_size, self.clean_predictions,
                               amp=self.rt.amp, noise_seed=self.trial.seed)
        confusion = metrics.pop("confusion")
        metrics.update(training)
        for key, value in metrics.items():
            self.writer.add_scalar(f"eval/{key}", value, step)
        trained = self.trial.plan.trained_after(stages_done)
        self.score = float(np.mean([metrics[keys.uar(d, "dev")] for d in trained]))
        figure = figure_inputs(attacker, self.defences, *self.figure_input, self.classes,
                               self.rt.amp)
        self.writer.add_image("figure2", figure_to_array(figure2(**figure)), step,
                              dataformats="HWC")
        self.writer.flush()
        record = StageRecord(trial_id=self.trial.id, stage=stages_done, global_step=step,
                             defences=trained, finished=finished,
                             classes=tuple(self.classes), metrics=metrics, confusion=confusion,
                             node=ray.get_runtime_context().get_node_id())
        # Whole, and before the checkpoint whose sync carries it to the storage: the report
        # reads it, and a killed worker must not leave it cut.
        publish(record.save, record_path(record.stage))
        if finished:
            publish(lambda path: save_figure_data(path, **figure), FIGURE_FILE)
            self.listen(attacker, step)
        # Tune gets the numbers its scheduler, the progress lines and TensorBoard use.
        report({**metrics, keys.SCORE: self.score, keys.KIND: keys.STAGE,
                keys.STAGE_NUMBER: record.stage, keys.STEP: step, "finished": finished},
               state)

    def penalty_share(self, stages_done: int) -> float:
        """The regulariser's share of the loss over the stage's last logged steps (the stage
        loop logs at every stage's end): how strongly the constraint held the attacker back.
        A first stage has no penalty; a follower that took its first stage from another trial
        logged none of it."""
        last = self.last_log
        if stages_done == 1 or last.get(keys.STAGE_NUMBER) != stages_done:
            return 0.0 if stages_done == 1 else float("nan")
        total = last["total_loss"]
        return float(last["penalty"] / total) if total > 0 else 0.0

    def listen(self, attacker: nn.Module, step: int) -> None:
        """The audio examples of the finished attacker: WAV files and TensorBoard audio."""
        count = min(self.settings.audio.examples, len(self.data.test_names))
        if count == 0:
            return
        features = self.settings.features
        examples = adversarial_examples(
            attacker, self.evaluated["test"][0][:count], self.data.test_names[:count],
            self.data.mean, self.data.std, features, self.settings.audio.iterations,
            self.rt.amp, labels=self.evaluated["test"][1][:count])
        publish(lambda folder: write_examples(examples, folder, features.sample_rate),
                AUDIO_FOLDER)
        log_examples(self.writer, examples, step, features.sample_rate)

    def close(self) -> None:
        self.writer.close()
