"""The name of everything a trial reports, in one place: the workers build the keys here and the
driver (progress lines, records, report) finds and parses them here.

A metric key is ``<subject>/<split>/<name>``: a defence's UAR (``cnn4/dev/adv_uar``, in [0, 1])
or the perturbation's size (``perturbation/test/snr_db``). Every report also carries ``kind``:
``train`` (losses, every ``log_every`` iterations), ``checkpoint``, or ``stage`` (the full
evaluation after a stage, the records Table 1 is built from).
"""

from __future__ import annotations

from dataclasses import dataclass

SPLITS = ("dev", "test")  # the evaluated splits (train is never evaluated)
UAR_KINDS = ("clean_uar", "adv_uar", "noise_uar")  # noise: the shuffled-positions control
PERTURBATION = "perturbation"
# linf: the largest |eta|; ms_per_utterance: the wall time of making the perturbation (one
# forward pass of a generator; every step of a per-example attack), per utterance.
PERTURBATION_METRICS = ("snr_db", "mse", "mean_eta", "shared_energy", "linf", "ms_per_utterance")
# What the training itself was like at a stage's end: the regulariser's share of the loss over
# the stage's last logged steps (0 in a first stage or without a regulariser); for a per-example
# baseline, the l_inf budget it was computed with (calibrated or given) and the dev SNR it was
# calibrated to (NaN for a given budget).
TRAINING = "training"
TRAINING_METRICS = ("penalty_share", "eps", "target_snr_db")

# What a training report (kind ``train``) carries beside the step, as TensorBoard's train/...
LOSSES = ("attack_loss", "penalty", "total_loss", "lr")

KIND = "kind"
TRAIN, CHECKPOINT, STAGE = "train", "checkpoint", "stage"
# Mean adversarial dev UAR over the defences attacked so far: what ASHA minimises.
SCORE = "score"
STEP = "global_step"
# The stage a report belongs to, counted from 1 as the console counts: the one being trained
# (a train report) or the one just ended (a stage report).
STAGE_NUMBER = "stage"
# The Ray node id of the worker that reported (every report): which node the console names
# when a trial's worker is lost.
NODE = "node"


@dataclass(frozen=True)
class MetricKey:
    """A parsed key: ``subject`` is a defence's name or ``perturbation``."""

    subject: str
    split: str
    name: str

    def __str__(self) -> str:
        return f"{self.subject}/{self.split}/{self.name}"


def uar(defence: str, split: str, kind: str = "adv_uar") -> str:
    """``cnn4/dev/adv_uar``: a defence's clean, adversarial or noise-control UAR on a split."""
    return str(MetricKey(defence, split, kind))


def perturbation(split: str, metric: str) -> str:
    """``perturbation/test/snr_db``: the perturbation's size on a split."""
    return str(MetricKey(PERTURBATION, split, metric))


def confusion(defence: str, split: str) -> str:
    """``cnn4/dev/confusion``: a defence's confusion matrix on a split (a stage record's
    ``confusion``, a column of ``trials.parquet``)."""
    return f"{defence}/{split}/confusion"


def training(metric: str) -> str:
    """``training/train/penalty_share``: a property of the training at a stage's end."""
    return str(MetricKey(TRAINING, "train", metric))


def table_column(defence: str, split: str) -> str:
    """``cnn4_dev``: a defence's column in Table 1 and ``lambda_sweep.csv`` (UAR in percent)."""
    return f"{defence}_{split}"


def size_column(metric: str, split: str) -> str:
    """``snr_db_test``: a perturbation metric's column in ``perturbation.csv``."""
    return f"{metric}_{split}"


def parse(key: str) -> MetricKey | None:
    """The parts of a metric key, or ``None`` for any other reported field."""
    parts = key.split("/")
    if len(parts) != 3:
        return None
    subject, split, name = parts
    if subject == TRAINING:
        return MetricKey(subject, split, name) if split == "train" and \
            name in TRAINING_METRICS else None
    if split not in SPLITS:
        return None
    known = PERTURBATION_METRICS if subject == PERTURBATION else UAR_KINDS
    return MetricKey(subject, split, name) if name in known else None
