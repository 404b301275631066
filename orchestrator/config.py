"""The experiment config: typed dataclasses, loaded from YAML and validated at load time.

Every key has a default here; a YAML file states what differs (configs/smoke.yaml is the default
run, configs/paper.yaml the paper's setup). ``--set key.sub=value`` overrides any key. Errors name
the key and the allowed values, and stop the run before anything starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from orchestrator.typed_load import from_dict, to_dict
from trainables.corpora import CORPUS_KINDS
from trainables.errors import ConfigError
from trainables.features import FeatureSettings
from trainables.splits import SplitSpec
from trainables.synthetic import SyntheticSpec

STRATEGIES = ("single-task", "multi-task", "transfer", "lifelong")
DEFENCE_MODELS = ("cnn4", "vgg16", "resnet50")
REGULARISERS = ("ewc", "online_ewc", "si", "mas")


def _positive(key: str, value: float, allow_zero: bool = False) -> None:
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")


@dataclass
class DataConfig:
    """Where the utterances come from and how they become features."""

    corpus: str = "synthetic"
    root: str | None = None  # the corpus folder (a manifest CSV for corpus: manifest)
    cache_dir: str | None = None  # default: $SER_CACHE_DIR or ~/.cache/ser-lifelong-attacks
    on_bad_file: Literal["error", "skip"] = "error"
    workers: int = 0  # feature extraction processes; 0: every core
    split: SplitSpec = field(default_factory=SplitSpec)
    synthetic: SyntheticSpec = field(default_factory=SyntheticSpec)
    features: FeatureSettings = field(default_factory=FeatureSettings)

    def __post_init__(self) -> None:
        if self.corpus not in CORPUS_KINDS:
            raise ConfigError(f"data.corpus: {self.corpus!r} is not allowed; allowed: "
                              + ", ".join(CORPUS_KINDS))
        if self.corpus != "synthetic" and not self.root:
            raise ConfigError(f"data.root: corpus {self.corpus!r} needs its folder "
                              "(--data-root DIR)")
        _positive("data.split.seed", self.split.seed, allow_zero=True)
        if len(self.split.fractions) != 3 or min(self.split.fractions) <= 0:
            raise ConfigError("data.split.fractions: three positive numbers (train, dev, test)")
        _positive("data.synthetic.speakers", self.synthetic.speakers)
        if self.synthetic.speakers < 3:
            raise ConfigError("data.synthetic.speakers: at least 3 (one per split)")
        _positive("data.synthetic.utterances_per_emotion", self.synthetic.utterances_per_emotion)
        if not 0 < self.synthetic.min_seconds <= self.synthetic.max_seconds:
            raise ConfigError("data.synthetic.min_seconds/max_seconds: need "
                              "0 < min_seconds <= max_seconds")
        _positive("data.features.frames", self.features.frames)
        if self.workers < 0:
            raise ConfigError("data.workers: 0 (every core) or a positive count")


@dataclass
class DefenceConfig:
    """One target model: its architecture and the name it has in tables."""

    model: Literal["cnn4", "vgg16", "resnet50"]
    label: str = ""
    width: float = 1.0  # channel multiplier; 1.0 is the paper's size

    def __post_init__(self) -> None:
        _positive("defences.*.width", self.width)
        self.label = self.label or {"cnn4": "CNN-4", "vgg16": "VGG-16",
                                    "resnet50": "ResNet-50"}[self.model]


@dataclass
class DefenceTrainingConfig:
    """How the defences are trained from scratch before the attacks (Adam, model selection on
    dev UAR, class-balanced sampling)."""

    iterations: int = 4000
    batch_size: int = 32
    lr: float = 1e-3
    eval_every: int = 250
    balanced: bool = True

    def __post_init__(self) -> None:
        for key in ("iterations", "batch_size", "lr", "eval_every"):
            _positive(f"defence_training.{key}", getattr(self, key))


@dataclass
class AttackConfig:
    """The attacker and its schedule (DESIGN.md section 2)."""

    model: Literal["atrous"] = "atrous"
    width: float = 1.0
    # The perturbation the attacker starts from (its last batch norm's bias is logit(eta_init));
    # PyTorch's default, 0.5, leaves a floor the paper's schedule cannot train away.
    eta_init: float = 0.01
    alpha: float = 0.02  # weight of the C&W margin against the MSE
    # How the margin is reduced over a batch: "mean", or "sum" as the released code does (the
    # MSE is a mean either way, so "sum" weighs the margin batch_size times more).
    margin_reduction: Literal["mean", "sum"] = "mean"
    lr: float = 1e-4
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
        _positive("attack.width", self.width)
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"attack.alpha: must be in [0, 1], got {self.alpha}")
        if not 0 < self.eta_init < 1:
            raise ConfigError(f"attack.eta_init: must be in (0, 1), got {self.eta_init}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"attack.lr_decay: must be in (0, 1], got {self.lr_decay}")
        for key in ("lr", "lr_decay_every", "batch_size", "first_stage_iterations",
                    "later_stage_iterations", "log_every", "checkpoint_every", "eval_batch_size"):
            _positive(f"attack.{key}", getattr(self, key))


@dataclass
class LifelongConfig:
    """The lifelong strategy's regulariser (EWC by default, as in the paper)."""

    regulariser: Literal["ewc", "online_ewc", "si", "mas"] = "ewc"
    # per_sample: mean of squared per-sample gradients (the textbook Fisher, the default);
    # minibatch: squared minibatch gradients, as the paper's released code does.
    fisher: Literal["per_sample", "minibatch"] = "per_sample"
    fisher_samples: int = 1024  # training samples the importance is estimated on
    fisher_batch_size: int = 64
    decay: float = 1.0  # online_ewc: the old Fisher's weight at each new stage

    def __post_init__(self) -> None:
        _positive("lifelong.fisher_samples", self.fisher_samples)
        _positive("lifelong.fisher_batch_size", self.fisher_batch_size)
        if not 0 <= self.decay <= 1:
            raise ConfigError(f"lifelong.decay: must be in [0, 1], got {self.decay}")


@dataclass
class GridConfig:
    """The attack grid: one trial per strategy x sequence x lambda x seed (lambda for lifelong)."""

    strategies: list[Literal["single-task", "multi-task", "transfer", "lifelong"]] = field(
        default_factory=lambda: list(STRATEGIES))
    sequences: dict[str, list[str]] = field(default_factory=lambda: {
        "clockwise": ["cnn4", "vgg16", "resnet50"],
        "counterclockwise": ["resnet50", "vgg16", "cnn4"]})
    lambdas: list[float] = field(default_factory=lambda: [1e4, 1e5, 1e6, 1e7])
    seeds: list[int] = field(default_factory=lambda: [0])
    # Transfer and lifelong trials start from the single-task trial's weights on their first
    # defence instead of training that identical stage again (at paper scale: about half the
    # grid's attacker steps). Not for SI, which needs the first stage's training path.
    share_first_stage: bool = True

    def __post_init__(self) -> None:
        if not self.strategies:
            raise ConfigError("grid.strategies: empty; allowed: " + ", ".join(STRATEGIES))
        if not self.seeds:
            raise ConfigError("grid.seeds: empty; give at least one seed")
        repeated = sorted({s for s in self.seeds if self.seeds.count(s) > 1})
        if repeated:
            # A repeated seed would run identical trials twice and report a spread of one draw.
            raise ConfigError(f"grid.seeds: seed {repeated[0]} is given twice; seeds must differ")
        for i, seed in enumerate(self.seeds):
            _positive(f"grid.seeds[{i}]", seed, allow_zero=True)
        if "lifelong" in self.strategies and not self.lambdas:
            raise ConfigError("grid.lambdas: empty, but the lifelong strategy needs lambda values")
        for i, value in enumerate(self.lambdas):
            _positive(f"grid.lambdas[{i}]", value)
        if any(s != "single-task" for s in self.strategies) and not self.sequences:
            raise ConfigError("grid.sequences: empty; name at least one sequence of defences")
        for name, sequence in self.sequences.items():
            if len(sequence) < 2 or len(set(sequence)) != len(sequence):
                raise ConfigError(f"grid.sequences.{name}: needs two or more distinct defences")


@dataclass
class Resources:
    """Ray resources of one trial; fractional GPUs let several trials share one."""

    cpu: float = 1.0
    gpu: float = 0.0

    def __post_init__(self) -> None:
        _positive("resources.cpu", self.cpu)
        _positive("resources.gpu", self.gpu, allow_zero=True)


@dataclass
class TuneConfig:
    """How Ray Tune runs the two stages of trials."""

    scheduler: Literal["fifo", "asha"] = "fifo"
    max_failures: int = 2  # retries of a failed trial, from its last checkpoint
    storage_path: str | None = None  # default: <results>/tune; a shared path for multi-node
    max_concurrent_trials: int = 0  # 0: as many as the resources allow
    defence_resources: Resources = field(default_factory=Resources)
    attack_resources: Resources = field(default_factory=Resources)

    def __post_init__(self) -> None:
        if self.max_failures < 0 or self.max_concurrent_trials < 0:
            raise ConfigError("tune.max_failures / tune.max_concurrent_trials: must be >= 0")
        if self.storage_path and "://" in self.storage_path:
            raise ConfigError("tune.storage_path: cloud URIs are not supported yet; mount shared "
                              "storage (NFS, EFS) on every node and give its path")


@dataclass
class PerformanceConfig:
    """Device and speed switches; each is safe to leave at its default."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["off", "bf16"] = "bf16"  # autocast on CUDA only; fp32 master weights
    channels_last: bool = True  # CUDA only
    cudnn_benchmark: bool = True
    compile: bool = False
    threads_per_trial: int = 0  # torch threads in a trial; 0: its CPU resources


@dataclass
class ExperimentConfig:
    """Everything one run needs. ``defences`` maps a short name used in sequences to a model."""

    name: str = "experiment"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    defences: dict[str, DefenceConfig] = field(default_factory=lambda: {
        m: DefenceConfig(model=m) for m in DEFENCE_MODELS})
    defence_training: DefenceTrainingConfig = field(default_factory=DefenceTrainingConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    lifelong: LifelongConfig = field(default_factory=LifelongConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    performance: PerformanceConfig = field(default_factory=PerformanceConfig)

    def __post_init__(self) -> None:
        _positive("seed", self.seed, allow_zero=True)
        if not self.defences:
            raise ConfigError("defences: empty; define at least one defence")
        for name, sequence in self.grid.sequences.items():
            for defence in sequence:
                if defence not in self.defences:
                    raise ConfigError(f"grid.sequences.{name}: {defence!r} is not a defined "
                                      f"defence; defined: {', '.join(self.defences)}")


def _parse_override(item: str) -> tuple[list[str], object]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key.sub=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set ``key.sub=value`` items (values parsed as YAML) in a nested dict."""
    for item in overrides:
        keys, value = _parse_override(item)
        node = data
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(keys[:depth + 1])} is not a mapping")
            node = child
        node[keys[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from ``path`` (safe_load), or ``ConfigError``."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise ConfigError(f"config file {path}: cannot read it ({error.strerror})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path}: malformed YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of keys")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> ExperimentConfig:
    """Load and validate a config; ``overrides`` are ``key.sub=value`` strings."""
    data = read_yaml(path) if path is not None else {}
    if path is not None and not data:
        # Every key has a default, and the defaults are the paper's full scale: an empty file
        # would start hours of work that nobody asked for.
        raise ConfigError(f"config file {path} is empty; start from configs/smoke.yaml or "
                          "configs/paper.yaml")
    return config_from_dict(apply_overrides(data, list(overrides)))


def config_from_dict(data: dict) -> ExperimentConfig:
    """Validate a plain mapping (as saved with every run) into an ``ExperimentConfig``."""
    return from_dict(ExperimentConfig, data)


def config_to_dict(config: ExperimentConfig) -> dict:
    """The resolved config as plain data (what every run saves)."""
    return to_dict(config)
