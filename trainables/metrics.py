"""Unweighted average recall, the confusion matrix, and the perturbation's signal-to-noise ratio."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts ``(num_classes, num_classes)``: rows are true classes, columns predictions."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def uar(y_true, y_pred) -> float:
    """Unweighted average recall in [0, 1]: the mean of per-class recalls over the classes present
    in ``y_true`` (a class absent from ``y_true`` has no recall and is skipped)."""
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.size == 0:
        raise ValueError("uar of an empty set")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.size} vs {y_pred.size}")
    recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
    return float(np.mean(recalls))


def snr_db(signal_energy: float, perturbation_energy: float) -> float:
    """The perturbation's SNR in dB, ``10 log10(sum x^2 / sum eta^2)`` over every input and
    position (the sums given): what ``perturbation/<split>/snr_db`` reports for every attack,
    and what a baseline's budget is calibrated to. A zero perturbation counts as energy 1e-30
    (about 300 dB), not as a division by zero."""
    return float(10 * np.log10(signal_energy / max(perturbation_energy, 1e-30)))
