"""Clean, adversarial and noise-control UAR of each defence, and the size and input-specificity
of the perturbation."""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from trainables import metric_keys as keys
from trainables.metrics import confusion_matrix, snr_db, uar

Split = tuple[torch.Tensor, torch.Tensor]


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Predicted classes of ``model`` on ``x``."""
    predictions = []
    for chunk in x.split(batch_size):
        predictions.append(model(chunk).argmax(dim=1))
    return torch.cat(predictions).cpu().numpy()


def shuffled_positions(eta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The noise control: each sample's ``eta`` ``(B, C, T, F)`` with its time-frequency
    positions permuted at random. Every sample keeps exactly its values, so its energy (the
    perturbation's MSE and SNR) and its mean; only where the attacker put them is lost."""
    flat = eta.flatten(1)
    order = torch.rand(flat.shape, generator=generator, device=eta.device).argsort(dim=1)
    return flat.gather(1, order).view_as(eta)


def perturbation_of(attacker: nn.Module, x: torch.Tensor,
                    y: torch.Tensor | None = None) -> torch.Tensor:
    """``attacker``'s perturbation of ``x`` in fp32: ``attacker(x)`` for a generator, or
    ``attacker(x, y)`` for one that ``needs_labels`` (a per-example attack,
    ``trainables.transfer_attacks.TransferAttack``, which needs the true classes ``y``)."""
    if getattr(attacker, "needs_labels", False):
        if y is None:
            raise ValueError(f"{type(attacker).__name__} needs the inputs' labels")
        return attacker(x, y).float()
    return attacker(x).float()


@torch.no_grad()
def adversarial_predictions(attacker: nn.Module, defences: Mapping[str, nn.Module],
                            x: torch.Tensor, batch_size: int = 256, noise_seed: int = 0,
                            y: torch.Tensor | None = None
                            ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                                       dict[str, float]]:
    """Each defence's predicted classes on ``x + attacker(x)`` (``attacker(x, y)`` for a
    per-example attack, see ``perturbation_of``) and on the noise control
    ``x + shuffled_positions(eta)``, and the perturbation's size, specificity and cost:

    - ``mse``: mean of ``eta ** 2``; ``snr_db``: ``10 log10(sum x^2 / sum eta^2)``;
      ``linf``: the largest ``|eta|``;
    - ``mean_eta``: mean of ``eta`` over samples, positions and time;
    - ``shared_energy``: ``||mean over inputs of eta||^2 / mean ||eta||^2``, the share of the
      perturbation's energy that is the same for every input (near 1: a fixed offset);
    - ``ms_per_utterance``: wall time of making ``eta``, per input (on CUDA, synchronised).

    The attacker runs once per chunk, whatever the number of defences: it costs more than any
    defence (its dilated convolutions keep the input's full resolution)."""
    adversarial: dict[str, list[torch.Tensor]] = {name: [] for name in defences}
    noise: dict[str, list[torch.Tensor]] = {name: [] for name in defences}
    generator = torch.Generator(device=x.device).manual_seed(noise_seed)
    signal = energy = total = largest = seconds = 0.0
    eta_sum = torch.zeros(x.shape[1:], device=x.device)
    labels = y.split(batch_size) if y is not None else itertools.repeat(None)
    for chunk, truth in zip(x.split(batch_size), labels):
        start = time.perf_counter()
        eta = perturbation_of(attacker, chunk, truth)
        if eta.device.type == "cuda":
            torch.cuda.synchronize(eta.device)
        seconds += time.perf_counter() - start
        control = shuffled_positions(eta, generator)
        for name, model in defences.items():
            adversarial[name].append(model(chunk + eta).argmax(dim=1))
            noise[name].append(model(chunk + control).argmax(dim=1))
        signal += chunk.float().pow(2).sum().item()
        energy += eta.pow(2).sum().item()
        total += eta.sum().item()
        largest = max(largest, eta.abs().max().item())
        eta_sum += eta.sum(dim=0)
    n = len(x)
    shared = (eta_sum / n).pow(2).sum().item() / max(energy / n, 1e-30)
    size = {"mse": energy / x.numel(), "snr_db": snr_db(signal, energy),
            "mean_eta": total / x.numel(), "shared_energy": shared, "linf": largest,
            "ms_per_utterance": 1000 * seconds / n}
    as_numpy = {name: torch.cat(p).cpu().numpy() for name, p in adversarial.items()}
    return as_numpy, {name: torch.cat(p).cpu().numpy() for name, p in noise.items()}, size


def evaluate(attacker: nn.Module | None, defences: Mapping[str, nn.Module],
             splits: Mapping[str, Split], batch_size: int = 256,
             clean_cache: dict[str, np.ndarray] | None = None, amp: bool = False,
             noise_seed: int = 0) -> dict:
    """Metrics of every defence on every split, flat, ready to report:
    ``{defence}/{split}/clean_uar`` and, with an attacker, ``/adv_uar`` and ``/noise_uar`` (the
    noise control, see ``shuffled_positions``; UAR in [0, 1]), and ``perturbation/{split}/mse``,
    ``/snr_db``, ``/mean_eta``, ``/shared_energy``; ``confusion`` holds the adversarial (or
    clean) confusion matrices as nested lists. Clean predictions do not depend on the attacker:
    pass the same ``clean_cache`` dict at every call to compute them once. ``amp``: the networks
    run under bf16 autocast, as they trained; sizes and metrics are computed in fp32."""
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
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
                metrics.update(_evaluate_split(attacker, defences, split, x, y, batch_size,
                                               clean_cache, confusion, noise_seed))
    finally:
        if attacker is not None:
            attacker.train(was_training)
    metrics["confusion"] = confusion
    return metrics


def _evaluate_split(attacker: nn.Module | None, defences: Mapping[str, nn.Module], split: str,
                    x: torch.Tensor, y: torch.Tensor, batch_size: int,
                    clean_cache: dict[str, np.ndarray], confusion: dict, noise_seed: int
                    ) -> dict:
    truth = y.cpu().numpy()
    num_classes = int(truth.max()) + 1
    metrics: dict = {}
    adversarial: dict[str, np.ndarray] = {}
    if attacker is not None:
        adversarial, noise, size = adversarial_predictions(attacker, defences, x, batch_size,
                                                           noise_seed, y)
        for metric, value in size.items():
            metrics[keys.perturbation(split, metric)] = value
    for name, model in defences.items():
        cached = keys.confusion(name, split)  # one entry per defence and split
        if cached not in clean_cache:
            clean_cache[cached] = predict(model, x, batch_size)
        metrics[keys.uar(name, split, "clean_uar")] = uar(truth, clean_cache[cached])
        if attacker is not None:
            metrics[keys.uar(name, split, "adv_uar")] = uar(truth, adversarial[name])
            metrics[keys.uar(name, split, "noise_uar")] = uar(truth, noise[name])
        shown = adversarial.get(name, clean_cache[cached])
        confusion[cached] = confusion_matrix(truth, shown, num_classes).tolist()
    return metrics
