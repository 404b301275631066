"""A run's results folder: the config it saved, and the storage its Tune experiments live in.

Shared by the training run (``orchestrator.run``) and ``--report-only``
(``orchestrator.report_only``); nothing here imports torch or Ray.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.config import ExperimentConfig, config_from_dict, read_yaml
from orchestrator.grid import EXPERIMENTS
from orchestrator.storage import Storage, unreachable
from orchestrator.storage_location import is_uri
from trainables.errors import ProjectError

CONFIG_FILE = "config.yaml"


def storage_of(config: ExperimentConfig, results: Path) -> Storage:
    """Where Tune keeps trials, checkpoints, stage records and event files: ``<results>/runs``
    by default, or ``<tune.storage_path>/<results folder's name>`` (a folder or a bucket's
    URI): runs that share a storage path (a cluster's shared disk) keep their experiments
    apart."""
    if not config.tune.storage_path:
        return Storage.at(results / "runs")
    location = config.tune.storage_path
    return Storage.open(location if is_uri(location) else str(Path(location).expanduser()),
                        results.name)


def check_storage_unused(storage: Storage) -> None:
    """A new run's trials must not land beside another run's: Tune would add them to its
    experiments, and the report would read both. ``ConfigError`` in one line if the storage
    cannot be read at all (a bucket that does not exist, no credentials)."""
    try:
        taken = [name for name in EXPERIMENTS if storage.exists(name)]
    except OSError as error:
        raise unreachable(storage, error) from None
    if taken:
        raise ProjectError(f"{storage} already holds another run's trials ({', '.join(taken)}): "
                           "give this run a --results folder of another name, or another "
                           "tune.storage_path")


def saved_config(results: Path) -> ExperimentConfig:
    """The config a run in ``results`` saved when it started; ``ProjectError`` if none."""
    path = results / CONFIG_FILE
    if not path.exists():
        raise ProjectError(f"{results} holds no run ({CONFIG_FILE} is missing): nothing to "
                           "resume or report; start a run with this --results folder")
    return config_from_dict(read_yaml(path))
