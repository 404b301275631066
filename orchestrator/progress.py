"""One line per event that matters on the console while a Tune experiment runs.

Tune's own console output repeats the whole flattened config in a box for every finished trial
(hundreds of lines for the smoke grid); this callback replaces it with a line per evaluated
stage, finished trial, retry and failure. Everything else is in TensorBoard and ``results/``.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from ray import tune

from trainables import metric_keys as keys

log = logging.getLogger(__name__)


def _uar_summary(result: dict, labels: dict[str, str]) -> str:
    """``adversarial dev UAR: CNN-4 42.1, ...`` (clean UAR where there is no attack)."""
    for kind in ("adv_uar", "clean_uar"):
        values = [f"{label} {100 * result[keys.uar(name, 'dev', kind)]:.1f}"
                  for name, label in labels.items() if keys.uar(name, "dev", kind) in result]
        if values:
            return f"{'adversarial' if kind == 'adv_uar' else 'clean'} dev UAR %: " + \
                ", ".join(values)
    return ""


class Progress(tune.Callback):
    """Prints ``[experiment done/total] trial: what happened`` lines; ``labels`` maps defence
    names to the names printed (``cnn4`` -> ``CNN-4``), ``specs`` trial ids to their specs."""

    def __init__(self, experiment: str, labels: dict[str, str], specs: dict) -> None:
        self.experiment, self.labels, self.specs = experiment, labels, specs
        self.started: dict[str, float] = {}
        self.where: dict[str, tuple[str, str]] = {}  # trial -> (node address, node id)

    def _say(self, trials: list, trial, message: str, ended: bool = False) -> None:
        # Tune calls the end hooks before it marks the trial's own status.
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials if t is not trial) + \
            (ended or trial.status in ("TERMINATED", "ERROR"))
        log.info(f"[{self.experiment} {done}/{len(trials)}] {trial.config['trial']}: {message}")

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self.started[trial.trial_id] = time.monotonic()

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict,
                        **info) -> None:
        if keys.NODE in result:
            self.where[trial.trial_id] = (str(result.get("node_ip", "?")), result[keys.NODE])
        if result.get(keys.KIND) == keys.STAGE:
            stages = len(self.specs[trial.config["trial"]].plan.stages)
            self._say(trials, trial, f"stage {int(result[keys.STAGE_NUMBER])}/{stages} at step "
                      f"{result[keys.STEP]}, {_uar_summary(result, self.labels)}")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        started = self.started.get(trial.trial_id)
        message = "finished" if started is None else \
            f"finished in {time.monotonic() - started:.0f} s"
        summary = _uar_summary(trial.last_result or {}, self.labels)
        self._say(trials, trial, message + (f"; {summary}" if summary else ""), ended=True)

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        where = self.where.get(trial.trial_id)
        if where is not None and _worker_lost(trial):
            # Ray marks a lost node dead only once its heartbeats are missed, seconds later:
            # by then the trial is already being retried.
            address, node = where
            self._say(trials, trial, f"its worker on node {address} ({node[:8]}) was lost "
                      f"({'the node is down' if not _alive(node) else 'the node or the process'}"
                      f" died); retrying from its last checkpoint (Ray's account: "
                      f"{trial.error_file})")
            return
        self._say(trials, trial, f"failed ({_cause(trial)}); retrying from its last checkpoint")

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._say(trials, trial, f"FAILED for good ({_cause(trial)}; --resume retries it)",
                  ended=True)


def _worker_lost(trial) -> bool:
    """Whether the trial failed because its worker process or node went away, not because of
    an error raised in the trial: Ray's actor errors, as Tune wrote them in its error file
    (read as text: unpickling Tune's error.pkl would run whatever the file holds)."""
    try:
        text = Path(trial.error_file).read_text().rsplit("Failure # ", 1)[-1]  # the latest
    except (OSError, TypeError):
        return False
    return re.search(r"The actor \S* ?(is unavailable|died|is dead)", text) is not None


def _alive(node: str) -> bool:
    """Whether Ray still counts the node among the living (it notices a lost node's missed
    heartbeats some seconds after the trial's worker stopped answering)."""
    import ray

    return any(n["NodeID"] == node and n.get("Alive") for n in ray.nodes())


def _cause(trial) -> str:
    """The last line of the trial's error as Tune recorded it, and where the whole is."""
    path = trial.error_file
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, TypeError):
        lines = []
    if not lines:  # nothing recorded: the disk may have been full
        return "its error could not be recorded"
    return f"{lines[-1].strip()[:300]}; traceback in {path}"
