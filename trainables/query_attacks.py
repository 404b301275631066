"""The query-only black-box baseline: the Square attack (Andriushchenko et al. 2020), l_inf, as
the Adversarial Robustness Toolbox 1.20.1 implements it, on one defence that it may only
*query* (its predicted log-probabilities, no gradient): beside transfer (zero queries to the
attacked model), the other black-box family a reviewer asks for.

What ART needs and does, and what this module adds:

- its input must be 4-D: our features ``(N, 1, T, F)`` are, channels first;
- the side of its squares is ``round(sqrt(p x T x F))`` and must stay below both ``T`` and
  ``F``, so ``p_init`` must be below ``min(T, F)^2 / (T x F)``: about 0.17 for the paper's
  373 x 64 input (``max_p_init``; a larger one fails inside ART with a bare numpy error, so it
  is refused here first);
- its clamp is ``clip_values``, which also clips the *clean* input: each band's training range
  is widened to the attacked inputs' own values (as ``transfer_attacks.project`` does), so a
  clean value is never moved and the budget ``eps`` (standardised feature units) holds;
- it draws from numpy's global generator: ``square_attack`` seeds it for the call and puts
  the caller's state back after;
- its margin loss is on the defence's outputs, our log-probabilities, with the true class's
  own value excluded by sorting (right for inputs still correctly classified, the only ones
  it keeps attacking);
- ``max_iter`` is the attack's query budget per utterance as the Square attack counts it (one
  new candidate per iteration; an utterance already misclassified is not queried further).
  ART evaluates the model about three times per iteration (it recomputes the current loss),
  so its forward passes are about three times the queries counted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trainables.metrics import snr_db, uar
from trainables.transfer_attacks import DataRange


def max_p_init(frames: int, bands: int) -> float:
    """The bound ``p_init`` must stay below for the first square to fit a ``frames x bands``
    input: its side ``round(sqrt(p frames bands))`` below both (0.169 for 373 x 64)."""
    return (min(frames, bands) - 0.5) ** 2 / (frames * bands)


@dataclass(frozen=True)
class QueryPoint:
    """The attacked defence's UAR after ``queries`` queries per utterance (at most), the
    perturbation's SNR and largest value, and the attack's wall time per utterance."""

    queries: int
    uar: float
    snr_db: float
    linf: float
    ms_per_utterance: float


def square_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                  queries: int, bounds: DataRange | None = None, seed: int = 0,
                  p_init: float = 0.1, batch_size: int = 256) -> torch.Tensor:
    """The adversarial inputs of ART's l_inf Square attack on ``model`` (log-probabilities out,
    in eval mode) for inputs ``x`` ``(N, 1, T, F)`` of true classes ``y``, with at most
    ``queries`` iterations per utterance, ``||x_adv - x||_inf <= eps`` and each band within
    ``bounds`` widened to ``x``'s own values. ``ValueError`` for a ``p_init`` whose square
    does not fit the input."""
    from art.attacks.evasion import SquareAttack
    from art.estimators.classification import PyTorchClassifier

    if x.dim() != 4:
        raise ValueError(f"the Square attack needs 4-D inputs (N, C, T, F), got {tuple(x.shape)}")
    frames, bands = x.shape[-2:]
    if not 0 < p_init < max_p_init(frames, bands):
        raise ValueError(f"p_init must be in (0, {max_p_init(frames, bands):.3f}) for a "
                         f"{frames} x {bands} input (its first square must fit), got {p_init}")
    if not eps > 0 or queries < 1:
        raise ValueError(f"eps must be > 0 and queries >= 1, got {eps} and {queries}")
    if model.training:
        raise ValueError("the attacked model must be in eval mode")
    clean = x.detach().float().cpu().numpy()
    low, high = clean.min(axis=0), clean.max(axis=0)  # (C, T, F)
    if bounds is not None:
        low = np.minimum(low, bounds[0].cpu().numpy().reshape(1, 1, -1))
        high = np.maximum(high, bounds[1].cpu().numpy().reshape(1, 1, -1))
    device = next(model.parameters()).device
    classifier = PyTorchClassifier(
        model, loss=nn.NLLLoss(), input_shape=tuple(clean.shape[1:]),
        nb_classes=int(model(x[:1].float().to(device)).shape[1]),
        clip_values=(low.astype(np.float32), high.astype(np.float32)),
        device_type="gpu" if device.type == "cuda" else "cpu")
    attack = SquareAttack(classifier, norm=np.inf, eps=eps, max_iter=queries, p_init=p_init,
                          nb_restarts=1, batch_size=batch_size, verbose=False)
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        adversarial = attack.generate(clean, y=y.cpu().numpy())
    finally:
        np.random.set_state(state)
    return torch.from_numpy(adversarial).to(x.device)


def query_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                budgets: Sequence[int], bounds: DataRange | None = None, seed: int = 0,
                p_init: float = 0.1, batch_size: int = 256) -> list[QueryPoint]:
    """The attacked defence's UAR against the query budget: one Square attack per budget
    (each from the same seed, so a larger budget continues the same random search), with the
    perturbation's SNR (``trainables.metrics.snr_db``, as every attack is sized)."""
    points = []
    truth = y.cpu().numpy()
    for queries in sorted(budgets):
        start = time.perf_counter()
        adversarial = square_attack(model, x, y, eps, queries, bounds, seed, p_init, batch_size)
        seconds = time.perf_counter() - start
        eta = adversarial - x.float()
        with torch.no_grad():
            predicted = torch.cat([model(chunk).argmax(1) for chunk in
                                   adversarial.split(batch_size)]).cpu().numpy()
        points.append(QueryPoint(queries, uar(truth, predicted),
                                 snr_db(x.float().pow(2).sum().item(), eta.pow(2).sum().item()),
                                 eta.abs().max().item(), 1000 * seconds / len(x)))
    return points


def flat_eps(x: torch.Tensor, target_db: float) -> float:
    """The eps at which a perturbation of +-eps at every position of ``x`` has SNR
    ``target_db``: the Square attack's start (vertical stripes of +-eps) is that loud, and its
    squares never exceed it, so its SNR is at or above the target."""
    return math.sqrt(x.float().pow(2).mean().item() / 10 ** (target_db / 10))
