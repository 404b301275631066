"""The schema of ``trials.parquet``: one row per attack trial and evaluated stage, tidy for pandas.

Columns (``results/README.md`` documents them for users):

- ``trial_id, strategy, sequence, lambda, seed, regulariser, starts_from, tune_experiment,
  status, error``: the trial (``sequence`` is empty for single- and multi-task, ``lambda`` NaN
  but for lifelong; ``status`` ``ok``, ``failed`` or ``missing``);
- ``stage``: stages done when the row was recorded, counted from 1 as the console counts (0: the
  trial recorded none), and ``global_step``, the attacker's iterations so far;
- ``defences``: the defences trained on by then, in training order (a list of config names);
- ``<defence>/<split>/clean_uar``, ``/adv_uar``, ``/noise_uar`` in [0, 1];
  ``perturbation/<split>/mse``, ``/snr_db``, ``/mean_eta``, ``/shared_energy``;
- ``<defence>/<split>/confusion``: the adversarial confusion matrix, rows the true class and
  columns the predicted one, both in the order of ``classes`` (a list of class names).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from trainables import metric_keys as keys

TRIAL_COLUMNS = ["trial_id", "strategy", "sequence", "lambda", "seed", "regulariser",
                 "starts_from", "tune_experiment", "status", "error", "stage", "global_step",
                 "defences"]


def tidy_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """``trials.parquet``'s frame from the reporter's working table (``reporter.trials_table``:
    stages from 0, -1 for none, the defences as names joined by commas, Tune's bookkeeping, the
    confusion matrices as one JSON string)."""
    frame = pd.DataFrame(index=trials.index)
    for column in TRIAL_COLUMNS:
        frame[column] = trials[column] if column in trials else None
    frame["stage"] = trials["stage"].astype("int64") + 1
    frame["global_step"] = trials.get("global_step", pd.Series(0, index=trials.index)) \
        .fillna(0).astype("int64")
    trained = trials.get("trained", pd.Series("", index=trials.index)).fillna("")
    frame["defences"] = [[d for d in names.split(",") if d] for names in trained]
    metrics = [c for c in trials.columns if keys.parse(c) is not None]
    frame[metrics] = trials[metrics]
    matrices = [json.loads(text) if isinstance(text, str) else {}
                for text in trials.get("confusion", pd.Series(None, index=trials.index))]
    for key in sorted({k for m in matrices for k in m}):
        frame[f"{key}/confusion"] = [m.get(key) for m in matrices]  # keys.confusion's keys
    # A run recorded before the classes were reported has none.
    frame["classes"] = [json.loads(c) if isinstance(c, str) else
                        list(c) if isinstance(c, (list, tuple, np.ndarray)) else None
                        for c in trials.get("classes", pd.Series(None, index=trials.index))]
    return frame.reset_index(drop=True)
