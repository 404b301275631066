"""Clean and adversarial UAR of each defence, and the size of the perturbation."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from trainables.metrics import confusion_matrix, uar

Split = tuple[torch.Tensor, torch.Tensor]


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Predicted classes of ``model`` on ``x``."""
    predictions = []
    for chunk in x.split(batch_size):
        predictions.append(model(chunk).argmax(dim=1))
    return torch.cat(predictions).cpu().numpy()


@torch.no_grad()
def adversarial_predictions(attacker: nn.Module, defences: Mapping[str, nn.Module],
                            x: torch.Tensor, batch_size: int = 256
                            ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Each defence's predicted classes on ``x + attacker(x)``, and the perturbation's size (MSE
    of ``x' - x``, SNR in dB of ``x`` against it). The attacker runs once per chunk, whatever the
    number of defences: it costs more than any defence (its dilated convolutions keep the
    input's full resolution)."""
    predictions: dict[str, list[torch.Tensor]] = {name: [] for name in defences}
    signal = noise = 0.0
    for chunk in x.split(batch_size):
        eta = attacker(chunk)
        adversarial = chunk + eta
        for name, model in defences.items():
            predictions[name].append(model(adversarial).argmax(dim=1))
        signal += chunk.float().pow(2).sum().item()
        noise += eta.float().pow(2).sum().item()
    size = {"mse": noise / x.numel(), "snr_db": float(10 * np.log10(signal / max(noise, 1e-30)))}
    return {name: torch.cat(p).cpu().numpy() for name, p in predictions.items()}, size


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
    for model in defences.values():
        model.eval()
    metrics: dict = {}
    confusion: dict = {}
    try:
        for split, (x, y) in splits.items():
            truth = y.cpu().numpy()
            num_classes = int(truth.max()) + 1
            adversarial: dict[str, np.ndarray] = {}
            if attacker is not None:
                adversarial, size = adversarial_predictions(attacker, defences, x, batch_size)
                for key, value in size.items():
                    metrics[f"perturbation/{split}/{key}"] = value
            for name, model in defences.items():
                key = f"{name}/{split}"
                if key not in clean_cache:
                    clean_cache[key] = predict(model, x, batch_size)
                metrics[f"{key}/clean_uar"] = uar(truth, clean_cache[key])
                if attacker is not None:
                    metrics[f"{key}/adv_uar"] = uar(truth, adversarial[name])
                shown = adversarial.get(name, clean_cache[key])
                confusion[key] = confusion_matrix(truth, shown, num_classes).tolist()
    finally:
        if attacker is not None:
            attacker.train(was_training)
    metrics["confusion"] = confusion
    return metrics
