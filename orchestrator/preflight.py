"""Checks made before any trial starts, for what would otherwise fail in every trial, be retried,
and surface minutes later in Ray's logs: each model on one batch of this run's features, and
each trial's resources against what the Ray instance offers."""

from __future__ import annotations

import logging
from orchestrator.config import ExperimentConfig, Resources
from trainables.errors import ConfigError

log = logging.getLogger(__name__)


def check_models(config: ExperimentConfig, num_classes: int) -> None:
    """Build every defence and the attacker and run each, as it trains (train mode), on a dummy
    batch of the configured feature size; ``ConfigError`` naming the model's key if one
    cannot."""
    import torch

    from trainables.builders import build_attacker, build_defence

    frames, bands = config.data.features.frames, config.data.features.n_mels
    x = torch.randn(2, 1, frames, bands, generator=torch.Generator().manual_seed(0))
    models = {f"defences.{name}": (spec.model, lambda spec=spec: build_defence(spec, num_classes),
                                   (2, num_classes))
              for name, spec in config.defences.items()}
    models["attack"] = (config.attack.model,
                        lambda: build_attacker(config.attack.model, config.attack,
                                               tuple(x.shape[1:])), tuple(x.shape))
    for key, (model, make, shape) in models.items():
        try:
            with torch.no_grad():
                out = make().train()(x)
            problem = None if tuple(out.shape) == shape else \
                f"it returns shape {tuple(out.shape)}, not {shape}"
        except Exception as error:  # noqa: BLE001  (whatever it is, every trial would hit it)
            problem = (str(error).strip().splitlines() or [type(error).__name__])[-1]
        if problem:
            raise ConfigError(f"{key} ({model}) cannot train on this run's features ({frames} "
                              f"frames x {bands} Mel bands): {problem}; change data.features "
                              "or the model")


def check_resources(config: ExperimentConfig, available: dict[str, float],
                    local: bool) -> None:
    """``ConfigError`` if a trial asks for more CPUs or GPUs than the Ray instance has: on a
    local instance it would wait for ever. A cluster may scale up, so there it is a warning."""
    cpus, gpus = available.get("CPU", 0.0), available.get("GPU", 0.0)
    wanted: dict[str, Resources] = {"tune.defence_resources": config.tune.defence_resources,
                                    "tune.attack_resources": config.tune.attack_resources}
    for key, resources in wanted.items():
        if resources.cpu <= cpus and resources.gpu <= gpus:
            continue
        message = (f"{key}: a trial asks for {resources.cpu:g} CPU and {resources.gpu:g} GPU, "
                   f"but this Ray instance has {cpus:g} CPUs and {gpus:g} GPUs")
        if local:
            raise ConfigError(message + "; no trial could ever start. Lower it (--set "
                              f"{key}.cpu=1) or join a larger cluster (--address)")
        log.warning(f"warning: {message}; its trials wait until the cluster scales up")
