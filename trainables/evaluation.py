"""Clean and adversarial UAR of each defence, and the size of the perturbation."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from trainables.metrics import confusion_matrix, uar

Split = tuple[torch.Tensor, torch.Tensor]


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256,
            attacker: nn.Module | None = None) -> np.ndarray:
    """Predicted classes of ``model`` on ``x`` (or on ``x + attacker(x)``)."""
    predictions = []
    for chunk in x.split(batch_size):
        if attacker is not None:
            chunk = chunk + attacker(chunk)
        predictions.append(model(chunk).argmax(dim=1))
    return torch.cat(predictions).cpu().numpy()


@torch.no_grad()
def perturbation_size(attacker: nn.Module, x: torch.Tensor, batch_size: int = 256) -> dict:
    """MSE of ``x' - x`` and SNR in dB of ``x`` against the perturbation ``x' - x``."""
    signal = noise = 0.0
    for chunk in x.split(batch_size):
        eta = attacker(chunk).float()
        signal += chunk.float().pow(2).sum().item()
        noise += eta.pow(2).sum().item()
    return {"mse": noise / x.numel(), "snr_db": float(10 * np.log10(signal / max(noise, 1e-30)))}


def evaluate(attacker: nn.Module | None, defences: Mapping[str, nn.Module],
             splits: Mapping[str, Split], batch_size: int = 256,
             clean_cache: dict[str, np.ndarray] | None = None) -> dict:
    """Metrics of every defence on every split, flat, ready to report:
    ``{defence}/{split}/clean_uar`` and, with an attacker, ``/adv_uar`` (UAR in [0, 1]),
    ``perturbation/{split}/mse`` and ``/snr_db``; ``confusion`` holds the adversarial (or clean)
    confusion matrices as nested lists. Clean predictions do not depend on the attacker: pass
    the same ``clean_cache`` dict at every call to compute them once."""
    clean_cache = {} if clean_cache is None else clean_cache
    was_training = attacker.training if attacker is not None else False
    if attacker is not None:
        attacker.eval()
    metrics: dict = {}
    confusion: dict = {}
    try:
        for split, (x, y) in splits.items():
            truth = y.cpu().numpy()
            num_classes = int(truth.max()) + 1
            for name, model in defences.items():
                model.eval()
                key = f"{name}/{split}"
                if key not in clean_cache:
                    clean_cache[key] = predict(model, x, batch_size)
                clean = clean_cache[key]
                metrics[f"{name}/{split}/clean_uar"] = uar(truth, clean)
                shown = clean
                if attacker is not None:
                    shown = predict(model, x, batch_size, attacker)
                    metrics[f"{name}/{split}/adv_uar"] = uar(truth, shown)
                confusion[key] = confusion_matrix(truth, shown, num_classes).tolist()
            if attacker is not None:
                for key, value in perturbation_size(attacker, x, batch_size).items():
                    metrics[f"perturbation/{split}/{key}"] = value
    finally:
        if attacker is not None:
            attacker.train(was_training)
    metrics["confusion"] = confusion
    return metrics
