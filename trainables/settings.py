"""Every setting a trial runs with, declared once, with its default and its validation.

The driver's config (``orchestrator.config``) composes these classes under the YAML keys
``defences``, ``defence_training``, ``attack``, ``lifelong``, ``baselines`` and ``performance``,
and hands a trial the whole ``TrialSettings``; the worker reads typed fields, never a dict.
Nothing here imports torch, so the driver loads (and rejects) a config in a fraction of a
second.

Messages name the field (``alpha: must be in [0, 1]``); the config loader adds where the class
sits (``attack.alpha: ...``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from trainables.data.settings import FeatureSettings
from trainables.errors import ConfigError
from trainables.models import MODELS, names
from trainables.registry import check_name
from trainables.regularisers import NONE, REGULARISERS
from trainables.validation import positive, within


@dataclass(frozen=True)
class DefenceSpec:
    """One target model: its architecture and the name it has in tables."""

    model: str  # a defence of the model registry (``trainables.models``)
    label: str = ""
    width: float = 1.0  # channel multiplier; 1.0 is the paper's size
    # Trained and evaluated like the others, never attacked: true black-box transfer.
    held_out: bool = False

    def __post_init__(self) -> None:
        check_name("model", self.model, names("defence"))
        positive("width", self.width)
        if not self.label:
            object.__setattr__(self, "label", MODELS[self.model].label)


@dataclass(frozen=True)
class DefenceTrainingSettings:
    """How the defences are trained from scratch before the attacks (Adam, model selection on
    dev UAR, class-balanced sampling)."""

    iterations: int = 4000
    batch_size: int = 32
    lr: float = 1e-3
    eval_every: int = 250
    balanced: bool = True  # sample classes equally often (DEMoS is imbalanced)
    # Noise added to training inputs, as SER systems are trained on noisy speech: with
    # probability ``noise_probability`` an input gets ``s * |N(0, 1)|`` at each time-frequency
    # point, ``s`` drawn uniformly from [0, ``noise_rms``] (standardised feature units). It is
    # non-negative because the attacks' perturbations are (the attacker's output lies in
    # (0, 1)), so a defence trained with it is not fooled by mere noise of an attack's energy,
    # which the noise-control rows measure. 0 leaves the inputs as they are (the paper).
    noise_rms: float = 0.0
    noise_probability: float = 0.5

    def __post_init__(self) -> None:
        for key in ("iterations", "batch_size", "lr", "eval_every"):
            positive(key, getattr(self, key))
        positive("noise_rms", self.noise_rms, allow_zero=True)
        within("noise_probability", self.noise_probability, 0.0, 1.0)


@dataclass(frozen=True)
class AttackSettings:
    """The attacker and its schedule (DESIGN.md, "The method")."""

    model: str = "atrous"  # an attacker of the model registry
    width: float = 1.0
    # The perturbation the attacker starts from (its last batch norm's bias is logit(eta_init));
    # PyTorch's default, 0.5, leaves a floor the paper's schedule cannot train away.
    eta_init: float = 0.01
    alpha: float = 0.02  # weight of the C&W margin against the MSE
    # How the margin is reduced over a batch: "mean", or "sum" as the released code does (the
    # MSE is a mean either way, so "sum" weighs the margin batch_size times more).
    margin_reduction: Literal["mean", "sum"] = "mean"
    lr: float = 1e-4
    # The universal perturbation's learning rate: its parameters are the perturbation's logits
    # themselves, which Adam moves by about lr per step, so the attacker's rate would leave it
    # where it starts (at the smoke scale, lr 0.003 kept it at its initial 40 dB SNR; 0.03
    # reached the attacker's loudness, 13 dB against its 16).
    universal_lr: float = 0.03
    lr_decay: float = 0.9
    lr_decay_every: int = 1000
    batch_size: int = 32
    first_stage_iterations: int = 10_000
    later_stage_iterations: int = 1_000
    # multi-task trains one stage: "matched" gives it the sequential strategies' whole budget
    # (first + later x (k - 1)); "first" only the first stage's.
    multi_task_iterations: Literal["matched", "first"] = "matched"
    log_every: int = 100
    checkpoint_every: int = 500
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        check_name("model", self.model, names("attacker"))
        positive("width", self.width)
        within("alpha", self.alpha, 0, 1)
        within("eta_init", self.eta_init, 0, 1, open_low=True, open_high=True)
        within("lr_decay", self.lr_decay, 0, 1, open_low=True)
        for key in ("lr", "universal_lr", "lr_decay_every", "batch_size", "first_stage_iterations",
                    "later_stage_iterations", "log_every", "checkpoint_every", "eval_batch_size"):
            positive(key, getattr(self, key))

    @property
    def margin_scale(self) -> float:
        """The margin's weight from its batch reduction (see ``trainables.losses``)."""
        return float(self.batch_size) if self.margin_reduction == "sum" else 1.0


@dataclass(frozen=True)
class BaselineSettings:
    """The per-example transfer attacks (``trainables.transfer_attacks``; strategies ``pgd``,
    ``mi-fgsm``, ``di-fgsm``, ``vmi-fgsm``): their schedule, their loss and their budget."""

    steps: int = 10
    step_factor: float = 1.0  # step size = step_factor x eps / steps (MI-FGSM's rule at 1)
    decay: float = 1.0  # momentum decay of MI-, DI- and VMI-FGSM
    # cross_entropy on the surrogates' log-softmax (keeps pushing past their boundary), or the
    # project's C&W margin, the true class masked with -inf (stops at it).
    loss: Literal["cross_entropy", "margin"] = "cross_entropy"
    di_probability: float = 0.5  # DI: chance that a gradient sees a transformed input
    di_min_scale: float = 0.9  # DI: frames and bands each rescaled to [min_scale, 1] of theirs
    vmi_samples: int = 20  # VMI: neighbours per step for the variance term
    vmi_radius: float = 1.5  # VMI: neighbours within radius x eps
    # The l_inf budget in standardised feature units, or "calibrate": found per surrogate set
    # by bisection on a dev subset so that the mean SNR is target_snr_db.
    eps: float | Literal["calibrate"] = "calibrate"
    # The SNR (dB, on dev) eps is calibrated to: "generator", that of the generator trained on
    # the same defences (single-task for one, multi-task for a set; the baseline trial then
    # runs after it, in the continued experiment), or a number.
    target_snr_db: float | Literal["generator"] = "generator"
    tolerance_db: float = 0.25  # the calibration's tolerance on the subset (the issue: 0.5)
    calibration_utterances: int = 64  # dev utterances, drawn by the trial's seed
    # The surrogate sets, each a list of defences attacked together; empty: each attacked
    # defence alone and each sequence's defences together (as the universal perturbation).
    surrogates: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        for key in ("steps", "step_factor", "vmi_samples", "vmi_radius", "tolerance_db",
                    "calibration_utterances"):
            positive(key, getattr(self, key))
        positive("decay", self.decay, allow_zero=True)
        within("di_probability", self.di_probability, 0, 1)
        within("di_min_scale", self.di_min_scale, 0, 1, open_low=True)
        if self.eps != "calibrate":
            positive("eps", self.eps)
        if self.target_snr_db != "generator" and not math.isfinite(self.target_snr_db):
            raise ConfigError(f"target_snr_db: must be a finite number of dB, got "
                              f"{self.target_snr_db}")
        for i, surrogates in enumerate(self.surrogates):
            if not surrogates or len(set(surrogates)) != len(surrogates):
                raise ConfigError(f"surrogates[{i}]: needs one or more distinct defences, got "
                                  f"{list(surrogates)}")


@dataclass(frozen=True)
class QuerySettings:
    """The query-only Square attack on each held-out defence (strategy ``square``,
    ``trainables.query_attacks``)."""

    budgets: tuple[int, ...] = (100, 1000, 10000)  # queries per utterance, one point each
    utterances: int = 128  # test utterances attacked, drawn by the trial's seed
    # Below min(T, F)^2 / (T F) (0.169 for the paper's 373 x 64): the first square must fit.
    p_init: float = 0.05
    # The SNR its eps is set to: "generator", that of the generator (single- or multi-task)
    # that transfers best to the held-out defence on dev; or a number (dB).
    target_snr_db: float | Literal["generator"] = "generator"

    def __post_init__(self) -> None:
        if not self.budgets:
            raise ConfigError("budgets: empty; give at least one query budget")
        for i, budget in enumerate(self.budgets):
            positive(f"budgets[{i}]", budget)
        if len(set(self.budgets)) != len(self.budgets):
            raise ConfigError(f"budgets: a budget is given twice in {list(self.budgets)}")
        positive("utterances", self.utterances)
        within("p_init", self.p_init, 0, 1, open_low=True)
        if self.target_snr_db != "generator" and not math.isfinite(self.target_snr_db):
            raise ConfigError(f"target_snr_db: must be a finite number of dB, got "
                              f"{self.target_snr_db}")


@dataclass(frozen=True)
class LifelongSettings:
    """The lifelong strategy's regulariser (EWC by default, as in the paper)."""

    regulariser: str = "ewc"  # a regulariser of the registry (``trainables.regularisers``)
    # per_sample: mean of squared per-sample gradients (the textbook Fisher, the default);
    # minibatch: squared minibatch gradients, as the paper's released code does.
    fisher: Literal["per_sample", "minibatch"] = "per_sample"
    fisher_samples: int = 1024  # training samples the importance is estimated on
    fisher_batch_size: int = 64
    decay: float = 1.0  # online_ewc: the old Fisher's weight at each new stage

    def __post_init__(self) -> None:
        check_name("regulariser", self.regulariser, [n for n in REGULARISERS if n != NONE])
        positive("fisher_samples", self.fisher_samples)
        positive("fisher_batch_size", self.fisher_batch_size)
        within("decay", self.decay, 0, 1)


@dataclass(frozen=True)
class PerformanceSettings:
    """Device and speed switches; each is safe to leave at its default (``trainables.device``
    says where each applies)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["off", "bf16"] = "bf16"  # fp32 master weights, losses and Fisher either way
    channels_last: bool = True
    cudnn_benchmark: bool = True
    compile: bool = False
    threads_per_trial: int = 0  # torch threads in a trial; 0: its CPU resources

    def __post_init__(self) -> None:
        positive("threads_per_trial", self.threads_per_trial, allow_zero=True)


@dataclass(frozen=True)
class AudioSettings:
    """Listening to the attacks: for each finished trial, WAV pairs (clean, adversarial) of the
    first test utterances, inverted from their log-Mel spectrograms
    (``trainables.audio_export``)."""

    examples: int = 4  # test utterances per finished trial; 0: none
    iterations: int = 32  # Griffin-Lim iterations of each inversion

    def __post_init__(self) -> None:
        positive("examples", self.examples, allow_zero=True)
        positive("iterations", self.iterations)


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a run is given: the defences, how they and the attackers train, the
    device switches, and the CPUs a trial holds (its torch threads)."""

    defences: dict[str, DefenceSpec] = field(default_factory=dict)
    defence_training: DefenceTrainingSettings = DefenceTrainingSettings()
    attack: AttackSettings = AttackSettings()
    lifelong: LifelongSettings = LifelongSettings()
    baselines: BaselineSettings = BaselineSettings()
    query: QuerySettings = QuerySettings()
    performance: PerformanceSettings = PerformanceSettings()
    audio: AudioSettings = AudioSettings()
    features: FeatureSettings = FeatureSettings()  # how the inputs were made (for the audio)
    defence_cpus: float = 1.0
    attack_cpus: float = 1.0
