"""The experiment config: typed dataclasses, loaded from YAML and validated at load time.

Every key has a default here; a YAML file states what differs (configs/smoke.yaml is the default
run, configs/paper.yaml the paper's setup). ``--set key.sub=value`` overrides any key. Errors name
the key and the allowed values, and stop the run before anything starts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from orchestrator.storage_location import check_scheme, is_uri
from orchestrator.typed_load import from_dict, to_dict
from trainables.data.corpora import CORPUS_KINDS
from trainables.data.settings import FeatureSettings, SplitSpec, SyntheticSpec
from trainables.errors import ConfigError
from trainables.settings import (AttackSettings, AudioSettings, BaselineSettings, DefenceSpec,
                                 DefenceTrainingSettings, LifelongSettings, PerformanceSettings,
                                 QuerySettings, TrialSettings)
from trainables.stages import BASELINES, PAPER_STRATEGIES, QUERY_ATTACKS, STRATEGIES, Strategy
from trainables.validation import positive


NAME = re.compile(r"[A-Za-z0-9_.-]+")


def check_name(key: str, name: str) -> None:
    """Defence and sequence names go into trial names, and those name folders: letters, digits,
    ``_``, ``.`` and ``-`` only. ``+`` joins defences in a name (``multi-task-cnn4+vgg16``):
    with it in a defence's name two trials could get one name; ``/`` would make a folder."""
    if not NAME.fullmatch(name):
        raise ConfigError(f"{key}: the name {name!r} may hold only letters, digits, '_', '.' "
                          "and '-' (it names trials and their folders)")


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
            raise ConfigError(f"corpus: {self.corpus!r} is not allowed; allowed: "
                              + ", ".join(CORPUS_KINDS))
        if self.corpus != "synthetic" and not self.root:
            raise ConfigError(f"root: corpus {self.corpus!r} needs its folder "
                              "(--data-root DIR)")
        if self.workers < 0:
            raise ConfigError("workers: 0 (every core) or a positive count")


@dataclass
class GridConfig:
    """The attack grid: one trial per strategy x sequence x lambda x seed (lambda for lifelong)."""

    strategies: list[Strategy] = field(
        default_factory=lambda: list(PAPER_STRATEGIES))
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
            raise ConfigError("strategies: empty; allowed: " + ", ".join(STRATEGIES))
        if not self.seeds:
            raise ConfigError("seeds: empty; give at least one seed")
        repeated = sorted({s for s in self.seeds if self.seeds.count(s) > 1})
        if repeated:
            # A repeated seed would run identical trials twice and report a spread of one draw.
            raise ConfigError(f"seeds: seed {repeated[0]} is given twice; seeds must differ")
        for i, seed in enumerate(self.seeds):
            positive(f"seeds[{i}]", seed, allow_zero=True)
        if "lifelong" in self.strategies and not self.lambdas:
            raise ConfigError("lambdas: empty, but the lifelong strategy needs lambda values")
        for i, value in enumerate(self.lambdas):
            positive(f"lambdas[{i}]", value)
        repeated = sorted({v for v in self.lambdas if self.lambdas.count(v) > 1})
        if repeated:
            # Like a repeated seed: the same trial twice, under one name (one folder).
            raise ConfigError(f"lambdas: {repeated[0]:g} is given twice; lambdas must differ")
        # Single-task and the per-example baselines can attack each defence alone.
        if any(s not in ("single-task", *BASELINES, *QUERY_ATTACKS) for s in self.strategies) \
                and not self.sequences:
            raise ConfigError("sequences: empty; name at least one sequence of defences")
        for name, sequence in self.sequences.items():
            check_name(f"sequences.{name}", name)
            if len(sequence) < 2 or len(set(sequence)) != len(sequence):
                raise ConfigError(f"sequences.{name}: needs two or more distinct defences")


@dataclass
class Resources:
    """Ray resources of one trial; fractional GPUs let several trials share one."""

    cpu: float = 1.0
    gpu: float = 0.0

    def __post_init__(self) -> None:
        positive("cpu", self.cpu)
        positive("gpu", self.gpu, allow_zero=True)


@dataclass
class TuneConfig:
    """How Ray Tune runs the two stages of trials."""

    scheduler: Literal["fifo", "asha"] = "fifo"
    max_failures: int = 2  # retries of a failed trial, from its last checkpoint
    # Default <results>/runs. On a cluster: a folder every node mounts, or a bucket's URI
    # (s3://, gs://; orchestrator.storage).
    storage_path: str | None = None
    max_concurrent_trials: int = 0  # 0: as many as the resources allow
    defence_resources: Resources = field(default_factory=Resources)
    attack_resources: Resources = field(default_factory=Resources)

    def __post_init__(self) -> None:
        if self.max_failures < 0 or self.max_concurrent_trials < 0:
            raise ConfigError("max_failures / max_concurrent_trials: must be >= 0")
        if self.storage_path and is_uri(self.storage_path):
            check_scheme(self.storage_path)


@dataclass
class ExperimentConfig:
    """Everything one run needs. ``defences`` maps a short name used in sequences to a model."""

    name: str = "experiment"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    defences: dict[str, DefenceSpec] = field(default_factory=lambda: {
        m: DefenceSpec(model=m) for m in ("cnn4", "vgg16", "resnet50")})
    defence_training: DefenceTrainingSettings = field(default_factory=DefenceTrainingSettings)
    attack: AttackSettings = field(default_factory=AttackSettings)
    lifelong: LifelongSettings = field(default_factory=LifelongSettings)
    baselines: BaselineSettings = field(default_factory=BaselineSettings)
    query: QuerySettings = field(default_factory=QuerySettings)
    grid: GridConfig = field(default_factory=GridConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    performance: PerformanceSettings = field(default_factory=PerformanceSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)

    def __post_init__(self) -> None:
        positive("seed", self.seed, allow_zero=True)
        if not self.defences:
            raise ConfigError("defences: empty; define at least one defence")
        if not self.attacked_defences:
            raise ConfigError("defences: every defence is held out; leave at least one to attack")
        for name in self.defences:
            check_name(f"defences.{name}", name)
        for name, sequence in self.grid.sequences.items():
            self._check_attackable(f"grid.sequences.{name}", sequence, ", so never attacked")
        if any(s in QUERY_ATTACKS for s in self.grid.strategies):
            if not self.held_out_defences:
                raise ConfigError("grid.strategies: the square attack queries each held-out "
                                  "defence, but no defence is held out (defences.<name>."
                                  "held_out: true)")
            frames, bands = self.data.features.frames, self.data.features.n_mels
            # The Square attack's first square, of side round(sqrt(p T F)), must fit the input.
            limit = (min(frames, bands) - 0.5) ** 2 / (frames * bands)
            if self.query.p_init >= limit:
                raise ConfigError(f"query.p_init: {self.query.p_init:g} makes the Square "
                                  f"attack's first square larger than a {frames} x {bands} "
                                  f"input allows; give one below {limit:.3f}")
        for i, surrogates in enumerate(self.baselines.surrogates):
            self._check_attackable(f"baselines.surrogates[{i}]", surrogates,
                                   ": a transfer attack may not be computed on the model it "
                                   "is evaluated to transfer to")

    def _check_attackable(self, key: str, defences: Sequence[str], why_not_held_out: str) -> None:
        """Raise ``ConfigError`` naming ``key`` unless every one of ``defences`` is defined and
        not held out (``why_not_held_out`` ends that message)."""
        for defence in defences:
            if defence not in self.defences:
                raise ConfigError(f"{key}: {defence!r} is not a defined defence; defined: "
                                  f"{', '.join(self.defences)}")
            if self.defences[defence].held_out:
                raise ConfigError(f"{key}: {defence!r} is held out "
                                  f"(defences.{defence}.held_out){why_not_held_out}")

    @property
    def attacked_defences(self) -> list[str]:
        """The defences the attacks train on, in config order."""
        return [name for name, spec in self.defences.items() if not spec.held_out]

    @property
    def held_out_defences(self) -> list[str]:
        """The defences only evaluated, never attacked: black-box transfer targets."""
        return [name for name, spec in self.defences.items() if spec.held_out]

    def trial_settings(self) -> TrialSettings:
        """What every trial of this run is given (``trainables.settings``)."""
        return TrialSettings(defences=dict(self.defences), defence_training=self.defence_training,
                             attack=self.attack, lifelong=self.lifelong,
                             baselines=self.baselines, query=self.query, performance=self.performance, audio=self.audio,
                             features=self.data.features,
                             defence_cpus=self.tune.defence_resources.cpu,
                             attack_cpus=self.tune.attack_resources.cpu)


def _repeated_key(node: yaml.Node | None, path: str = "",
                  seen: set[int] | None = None) -> tuple[str, int, int] | None:
    """The first key given twice in one mapping of a composed YAML tree: its dotted path and
    both lines. YAML keeps the last of equal keys, so a second ``attack:`` block would replace
    the first without a word."""
    seen = set() if seen is None else seen
    if node is None or id(node) in seen:  # an alias met again
        return None
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            where = f"{path}.{key.value}" if path else key.value
            line = key.start_mark.line + 1
            if (key.tag, key.value) in lines:
                return where, lines[(key.tag, key.value)], line
            lines[(key.tag, key.value)] = line
            found = _repeated_key(value, where, seen)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found = _repeated_key(item, f"{path}[{index}]", seen)
            if found:
                return found
    return None


def _parse_override(item: str) -> tuple[list[str], object]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key.sub=value")
    key, raw = item.split("=", 1)
    try:
        repeated = _repeated_key(yaml.compose(raw, Loader=yaml.SafeLoader))
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        repeated, value = None, raw
    if repeated:
        raise ConfigError(f"--set {item!r}: key {repeated[0]!r} is given twice")
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
        raw = Path(path).read_bytes()
        text = raw.decode("utf-8")
        repeated = _repeated_key(yaml.compose(text, Loader=yaml.SafeLoader))
        data = yaml.safe_load(text)
    except OSError as error:
        raise ConfigError(f"config file {path}: cannot read it ({error.strerror})") from None
    except UnicodeDecodeError as error:
        # Another encoding (Latin-1, UTF-16) or a binary file: say where, not a traceback.
        line = raw[:error.start].count(b"\n") + 1
        raise ConfigError(f"config file {path}: not UTF-8 text (byte 0x{raw[error.start]:02x} "
                          f"at line {line}); save it as UTF-8") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path}: malformed YAML{where}") from None
    if repeated:
        where, first, second = repeated
        raise ConfigError(f"config file {path}: key {where!r} is given twice (lines {first} and "
                          f"{second}); the second would replace the first: keep one")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of keys")
    return data


EXTENDS = "extends"


def _merged(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` laid over it: mappings merge key by key, anything else
    (a list, a value) is replaced whole."""
    merged = dict(base)
    for key, value in changes.items():
        merged[key] = _merged(base[key], value) if isinstance(value, dict) and \
            isinstance(base.get(key), dict) else value
    return merged


def read_config_file(path: str | Path, seen: tuple[Path, ...] = ()) -> dict:
    """A config file as one mapping: with ``extends: other.yaml`` (a path relative to the
    file), the other file's mapping with this one's keys laid over it, so that a config states
    only how it differs from the one it extends."""
    data = read_yaml(path)
    if EXTENDS not in data:
        return data
    base = data.pop(EXTENDS)
    if not isinstance(base, str):
        raise ConfigError(f"config file {path}: {EXTENDS} must name a config file, got {base!r}")
    base_path = (Path(path).parent / base).resolve()
    if base_path in seen or base_path == Path(path).resolve():
        raise ConfigError(f"config file {path}: {EXTENDS} loops back to {base_path}")
    if not base_path.is_file():
        raise ConfigError(f"config file {path}: {EXTENDS}: {base_path} does not exist")
    return _merged(read_config_file(base_path, (*seen, Path(path).resolve())), data)


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> ExperimentConfig:
    """Load and validate a config; ``overrides`` are ``key.sub=value`` strings."""
    data = read_config_file(path) if path is not None else {}
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
