"""The schema of ``trials.parquet``, and the frame every report is computed from: one row per
attack trial and recorded stage, its spec beside its stage record (``trainables.stage_record``).

Columns (``results/README.md`` documents them for users):

- ``trial_id, strategy, sequence, lambda, seed, regulariser, starts_from, tune_experiment,
  status, error``: the trial (``sequence`` is empty for single- and multi-task, ``lambda`` NaN
  but for lifelong; ``status`` ``ok``, ``failed`` or ``missing``);
- ``stage``: the stages done when the row was recorded, counted from 1 as the console counts
  (0: the trial recorded none), and ``global_step``, the attacker's iterations so far;
- ``defences``: the defences trained on by then, in training order (config names);
- ``node``: the Ray node id of the worker that recorded the stage (empty in records older
  than this column);
- ``<defence>/<split>/clean_uar``, ``/adv_uar``, ``/noise_uar`` in [0, 1];
  ``perturbation/<split>/mse``, ``/snr_db``, ``/mean_eta``, ``/shared_energy``;
- ``<defence>/<split>/confusion``: the adversarial confusion matrix, rows the true class and
  columns the predicted one, both in the order of ``classes`` (the class names).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from trainables.stage_record import StageRecord
from trainables.trials import AttackTrial

TRIAL_COLUMNS = ["trial_id", "strategy", "sequence", "lambda", "seed", "regulariser",
                 "starts_from", "tune_experiment", "status", "error", "stage", "global_step",
                 "defences", "classes", "node"]


def trial_table(specs: Sequence[AttackTrial], records: Sequence[StageRecord],
                status: dict[str, str], experiment_of: Callable[[AttackTrial], str]
                ) -> tuple[pd.DataFrame, list[str]]:
    """The frame of the Table-1 trials in ``specs`` (``defences`` and ``classes`` as tuples),
    and why records that do not belong to them were left out: a record whose defences are not
    what its trial's plan trains by that stage is from another grid, and is not trusted."""
    by_trial: dict[str, dict[int, StageRecord]] = {}
    for record in records:  # the last of a stage's records wins (they are read in order)
        by_trial.setdefault(record.trial_id, {})[record.stage] = record
    rows, foreign = [], []
    for trial in (t for t in specs if t.in_table):
        state = status.get(trial.id, "missing")
        base = {"trial_id": trial.id, "strategy": trial.strategy, "sequence": trial.sequence,
                "lambda": trial.lam, "seed": trial.seed, "regulariser": trial.regulariser,
                "starts_from": trial.starts_from, "tune_experiment": experiment_of(trial),
                "status": "ok" if state == "ok" else state.split(":")[0],
                "error": "" if state == "ok" else state}
        expected = trial.rows()
        mine = []
        for stage, record in sorted(by_trial.get(trial.id, {}).items()):
            if stage not in expected or record.defences != expected[stage][1]:
                foreign.append(f"{trial.id} stage {stage}: trained on {record.defences}, but "
                               "this run's grid does not train it so")
                continue
            mine.append({**base, "stage": stage, "global_step": record.global_step,
                         "defences": record.defences, "classes": record.classes,
                         "node": record.node,
                         **record.metrics, **record.confusion})
        rows += mine or [{**base, "stage": 0, "global_step": 0, "defences": (),
                          "classes": (), "node": ""}]
    frame = pd.DataFrame(rows, columns=None if rows else TRIAL_COLUMNS)
    metrics = sorted(c for c in frame.columns if c not in TRIAL_COLUMNS)
    return frame.reindex(columns=TRIAL_COLUMNS + metrics), foreign


def trained_on(frame: pd.DataFrame, defences: Sequence[str]) -> pd.Series:
    """Which rows of a trial table were recorded after training on exactly ``defences``, in
    that order."""
    wanted = tuple(defences)
    return frame["defences"].map(lambda trained: tuple(trained) == wanted).astype(bool)
