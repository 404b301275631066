"""Checks made before any trial starts, for what would otherwise fail in every trial, be retried,
and surface minutes later in Ray's logs: each model on one batch of this run's features, each
trial's resources against what the Ray instance offers, and on a cluster that every node sees
the run's storage."""

from __future__ import annotations

import logging
import secrets

from orchestrator.config import ExperimentConfig, Resources
from orchestrator.storage import Storage
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


# Seconds the nodes may take to write their probe files (a task each, needing no CPU).
PROBE_TIMEOUT_S = 60


def check_shared_storage(storage: Storage) -> None:
    """On a cluster of more than one node, ``ConfigError`` if ``storage`` is not the same
    folder on every node, or a bucket some node cannot write (no credentials there): a task on
    each node writes a probe file there, which this driver must read back. A head-local path
    otherwise fails at a trial's first checkpoint, minutes in, or leaves each node's trials on
    its own disk where the report cannot see them."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from trainables.storage_probe import write_probe

    nodes = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}
    if len(nodes) < 2:
        return
    token = secrets.token_hex(8)
    probe = ray.remote(num_cpus=0, max_retries=0)(write_probe)
    paths = {node: f".storage-probe-{token}-{i}" for i, node in enumerate(nodes)}
    pending = {node: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        node, soft=False)).remote(storage.filesystem, storage.path(path), f"{token} {node}")
        for node, path in paths.items()}
    unseen = []
    for node, path in paths.items():
        where = f"node {nodes[node]} ({node[:8]})"
        try:
            ray.get(pending[node], timeout=PROBE_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001  (a node that cannot write there at all)
            cause = (str(error).strip().splitlines() or [type(error).__name__])[-1]
            raise ConfigError(f"{storage} (the trials' storage, tune.storage_path) cannot be "
                              f"written on {where}: {cause[:200]}") from None
        try:
            seen = storage.read_text(path) == f"{token} {node}"
            storage.delete(path)
        except OSError:
            seen = False
        if not seen:
            unseen.append(where)
    if unseen:
        more = f" (and {len(unseen) - 1} other node(s))" if len(unseen) > 1 else ""
        raise ConfigError(f"{storage} (the trials' storage, tune.storage_path) is not shared "
                          f"by every node of this cluster: {unseen[0]}{more} wrote a file there "
                          "that this driver cannot read; set tune.storage_path to a folder "
                          "that every node mounts at the same path (NFS, EFS)")
