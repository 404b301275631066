"""Per-example transfer attacks, the baselines a generator is compared with: PGD, MI-FGSM,
DI-FGSM and VMI-FGSM, each computed on a *surrogate set* (one defence, or several) and then
evaluated, like every attack of the grid, on every defence (the held-out ones included).

Inputs are the project's standardised log-Mel features ``(N, 1, T, F)`` (``F`` = 64 bands), so
the l_inf budget ``eps`` is in those units (one unit: one training standard deviation of a
band), and the clamp keeps each band within the range the training features span
(``data_range``), never [0, 1]. The clamp never moves a clean value: a dev or test value outside
the training range stays where it is, only the perturbation may not push it further out.

All four are one loop (``iterative_attack``) and differ only in data (``METHODS``):

- PGD (Madry et al. 2018): a uniform random start in the eps-ball, then signed gradient steps;
- MI-FGSM (Dong et al. 2018): no random start; the step follows the sign of a momentum
  ``g <- decay x g + grad / ||grad||_1`` (the gradient l1-normalised per example);
- DI-FGSM (Xie et al. 2019), with MI-FGSM's momentum as the benchmarks use it (M-DI2-FGSM):
  each gradient is taken at a random *input-diversity* transform of the current input
  (``diverse_input``), applied with probability ``di_probability``;
- VMI-FGSM (Wang and He 2021): MI-FGSM whose gradient is corrected by the variance term of the
  previous step, ``v = mean_i grad(x + r_i) - grad(x)``, ``r_i ~ U[-radius x eps, radius x
  eps]`` (``vmi_samples`` of them).

The step size is ``step_factor x eps / steps`` (MI-FGSM's rule at ``step_factor`` 1: a
momentum attack of ``steps`` steps can just reach the ball's surface).

**The loss.** ``cross_entropy`` (default; the loss of every paper above): the defences'
negative log-likelihood of the true class, ascended; or ``margin``, the project's C&W margin on
the same log-softmax outputs (``trainables.losses.cw_margin``, the true class masked with
-inf), descended. The margin is clamped at zero as ours is, so its gradient vanishes once a
surrogate is fooled: the attack then stops pushing past the surrogate's boundary, which is why
cross-entropy, which keeps pushing, is the default for attacks meant to *transfer*.

**An ensemble** (a surrogate set of several defences) is attacked through the *mean of its
members' losses*: that is the objective the project's multi-task generator is trained on
(``trainables.losses.attack_loss`` averages the margins), so a Table-1 row of a baseline and of
the generator on the same set differ by the method, not by the objective. For cross-entropy it
is also the loss of the mean log-probability (the negative log-likelihood is linear in the
log-probabilities); for the margin the two differ, and the mean of margins keeps each member's
own decision boundary in the objective.

**Why not torchattacks 3.5.1.** It implements all four, but (1) every attack clamps its input to
[0, 1]: our features are standardised, per band, with ranges of their own, so it would need an
affine map per band into [0, 1] around each model, which also rescales the l_inf budget per band
unless one global range is used; (2) its DI resizes to a *square* (a 1 x 373 x 64 spectrogram
comes out distorted) and enlarges the input, which a fixed-size defence may not accept, and its
TI assumes 3 channels; (3) its loss is cross-entropy only (no masked margin); (4) installing it
pulls torchvision and pins ``requests==2.25.1`` and ``urllib3<2`` (measured with ``uv pip
install --dry-run``), downgrading what Ray and the rest of the project run with. The loop is
forty lines; ours, tested against hand computations in ``tests/test_transfer_attacks.py``.

Every random draw (PGD's start, DI's transform, VMI's neighbours) comes from the
``torch.Generator`` passed in: the same seed gives the same perturbation.

**The same perturbation size.** Two attacks are compared at the same SNR, not the same eps
(the generator has no eps): ``calibrate_eps`` finds, by bisection on a dev subset, the eps at
which a baseline's mean SNR (``trainables.metrics.snr_db``, as every attack is sized) is within
a tolerance of a target.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from trainables.losses import cw_margin
from trainables.metrics import snr_db

Loss = Literal["cross_entropy", "margin"]
DataRange = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Method:
    """What tells the four attacks apart: PGD's random start, the momentum decay (0: none, the
    step is the sign of the gradient itself), input diversity, the variance correction."""

    random_start: bool = False
    momentum: bool = True
    diversity: bool = False
    variance: bool = False


METHODS: dict[str, Method] = {
    "pgd": Method(random_start=True, momentum=False),
    "mi-fgsm": Method(),
    "di-fgsm": Method(diversity=True),
    "vmi-fgsm": Method(variance=True),
}


@dataclass(frozen=True)
class AttackParameters:
    """How an attack runs, beside its method and budget (``trainables.settings.BaselineSettings``
    holds the configured values)."""

    steps: int = 10
    step_factor: float = 1.0  # step size = step_factor x eps / steps
    decay: float = 1.0  # momentum decay (MI, DI, VMI)
    loss: Loss = "cross_entropy"
    di_probability: float = 0.5  # DI: the chance that a gradient sees a transformed input
    di_min_scale: float = 0.9  # DI: frames and bands are each rescaled to [min_scale, 1] of theirs
    vmi_samples: int = 20  # VMI: neighbours per step for the variance term
    vmi_radius: float = 1.5  # VMI: neighbours within radius x eps


def data_range(x_train: torch.Tensor) -> DataRange:
    """Each band's smallest and largest value over the training features ``(N, C, T, F)``, each
    of shape ``(1, 1, 1, F)``: the range the attack keeps its inputs in (bands are standardised
    separately, so their ranges differ)."""
    return (x_train.amin(dim=(0, 1, 2), keepdim=True).float(),
            x_train.amax(dim=(0, 1, 2), keepdim=True).float())


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float,
            bounds: DataRange | None) -> torch.Tensor:
    """``x_adv`` moved into the l_inf ball of radius ``eps`` around ``x`` and into ``bounds``
    (``data_range``). Each clean value counts as inside the range (the range is widened to take
    it), so the box is never empty and the clamp never moves a clean value, nor a value of the
    ball that lies inside the range."""
    lower, upper = x - eps, x + eps
    if bounds is not None:
        low, high = bounds
        lower = torch.maximum(lower, torch.minimum(low, x))
        upper = torch.minimum(upper, torch.maximum(high, x))
    return torch.minimum(torch.maximum(x_adv, lower), upper)


def objective(x: torch.Tensor, y: torch.Tensor, surrogates: Sequence[nn.Module],
              loss: Loss = "cross_entropy") -> torch.Tensor:
    """Per-example objective ``(N,)`` the attack *ascends*: the mean over the surrogates of
    their cross-entropy on the true class, or of their negated C&W margin (see the module's
    docstring for both choices). Computed in fp32 from the defences' log-softmax outputs."""
    terms = []
    for model in surrogates:
        log_probs = model(x).float()
        if loss == "cross_entropy":
            terms.append(F.nll_loss(log_probs, y, reduction="none"))
        elif loss == "margin":
            terms.append(-cw_margin(log_probs, y))
        else:
            raise ValueError(f"loss must be 'cross_entropy' or 'margin', got {loss!r}")
    return torch.stack(terms).mean(dim=0)


def input_gradient(x: torch.Tensor, y: torch.Tensor, surrogates: Sequence[nn.Module],
                   loss: Loss = "cross_entropy",
                   transform: Callable[[torch.Tensor], torch.Tensor] | None = None
                   ) -> torch.Tensor:
    """The gradient of the summed ``objective`` with respect to ``x`` (each example's own
    gradient: the sum couples none), taken at ``transform(x)`` when given (DI). Gradients are
    on even where the caller disabled them (evaluation runs under ``torch.no_grad``)."""
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        seen = transform(leaf) if transform is not None else leaf
        (gradient,) = torch.autograd.grad(objective(seen, y, surrogates, loss).sum(), leaf)
    return gradient


def l1_normalised(gradient: torch.Tensor) -> torch.Tensor:
    """Each example's gradient divided by its l1 norm (MI-FGSM's normalisation); a zero
    gradient (a clamped margin already at zero) stays zero."""
    norm = gradient.abs().flatten(1).sum(dim=1).clamp_min(1e-30)
    return gradient / norm.view(-1, *[1] * (gradient.dim() - 1))


def momentum_update(momentum: torch.Tensor, gradient: torch.Tensor,
                    decay: float) -> torch.Tensor:
    """MI-FGSM's accumulator: ``decay x momentum + gradient / ||gradient||_1``."""
    return decay * momentum + l1_normalised(gradient)


def diverse_input(x: torch.Tensor, generator: torch.Generator, probability: float = 0.5,
                  min_scale: float = 0.9) -> torch.Tensor:
    """DI's transform for a rectangular one-channel spectrogram ``(N, C, T, F)``: with
    ``probability``, the frames and the bands are rescaled *separately* (bilinear) to a random
    ``T' in [ceil(min_scale T), T]`` and ``F' in [ceil(min_scale F), F]``, then zero-padded (zero
    is each band's training mean) at a random offset back to ``(T, F)``; else ``x`` unchanged.
    The output always has the input's shape, so any defence accepts it. One transform per
    call, for the whole batch (as DI's reference implementation draws it); differentiable."""
    def draw(high: int) -> int:  # uniform in [0, high)
        return int(torch.randint(high, (), generator=generator, device=generator.device))

    if torch.rand((), generator=generator, device=generator.device).item() >= probability:
        return x
    frames, bands = x.shape[-2:]
    t = math.ceil(min_scale * frames) + draw(frames - math.ceil(min_scale * frames) + 1)
    f = math.ceil(min_scale * bands) + draw(bands - math.ceil(min_scale * bands) + 1)
    resized = F.interpolate(x, size=(t, f), mode="bilinear", align_corners=False)
    top, left = draw(frames - t + 1), draw(bands - f + 1)
    return F.pad(resized, (left, bands - f - left, top, frames - t - top))


def variance_term(x: torch.Tensor, y: torch.Tensor, surrogates: Sequence[nn.Module],
                  gradient: torch.Tensor, eps: float, parameters: AttackParameters,
                  generator: torch.Generator) -> torch.Tensor:
    """VMI-FGSM's ``v = mean_i grad(x + r_i) - grad(x)`` with ``r_i`` uniform in
    ``[-radius x eps, radius x eps]`` per element (``gradient`` is ``grad(x)``, already known)."""
    radius = parameters.vmi_radius * eps
    total = torch.zeros_like(gradient)
    for _ in range(parameters.vmi_samples):
        r = (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1)
        total += input_gradient(x + radius * r, y, surrogates, parameters.loss)
    return total / parameters.vmi_samples - gradient


def iterative_attack(method: str, x: torch.Tensor, y: torch.Tensor,
                     surrogates: Sequence[nn.Module], eps: float,
                     parameters: AttackParameters = AttackParameters(),
                     bounds: DataRange | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """The adversarial inputs ``x_adv`` ``(N, C, T, F)`` of ``method`` (a key of ``METHODS``)
    against ``surrogates`` (frozen, in eval mode) for inputs ``x`` of true classes ``y``, with
    ``||x_adv - x||_inf <= eps`` and ``x_adv`` within ``bounds`` (see ``project``).

    Each step: ``gradient`` of the objective (at a DI transform for DI), plus VMI's variance
    term of the step before; the direction is its sign (PGD) or the sign of the momentum; then
    a step of ``step_factor x eps / steps`` and the projection. ``generator`` (on ``x``'s
    device; default: seeded 0) draws every random number."""
    if method not in METHODS:
        raise ValueError(f"unknown attack {method!r}; known: {', '.join(METHODS)}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if any(m.training for m in surrogates):
        # Batch norm in training mode would update its statistics on the adversarial inputs.
        raise ValueError("surrogates must be in eval mode")
    kind = METHODS[method]
    generator = generator or torch.Generator(device=x.device).manual_seed(0)
    x = x.detach().float()
    step = parameters.step_factor * eps / parameters.steps
    x_adv = x
    if kind.random_start:
        start = torch.rand(x.shape, generator=generator, device=x.device) * 2 - 1
        x_adv = project(x + eps * start, x, eps, bounds)
    momentum = torch.zeros_like(x)
    variance = torch.zeros_like(x)
    transform = (lambda v: diverse_input(v, generator, parameters.di_probability,
                                         parameters.di_min_scale)) if kind.diversity else None
    for _ in range(parameters.steps):
        gradient = input_gradient(x_adv, y, surrogates, parameters.loss, transform)
        direction = gradient + variance
        if kind.momentum:
            momentum = momentum_update(momentum, direction, parameters.decay)
            direction = momentum
        if kind.variance:
            variance = variance_term(x_adv, y, surrogates, gradient, eps, parameters, generator)
        x_adv = project(x_adv + step * direction.sign(), x, eps, bounds)
    return x_adv.detach()


class TransferAttack(nn.Module):
    """A per-example attack seen as an attacker: ``forward(x, y)`` gives the perturbation
    ``x_adv - x`` of ``x`` (true classes ``y``) against the surrogates, so that the project's
    evaluation (``trainables.evaluation``) scores it, sizes it and builds its noise control as it
    does a generator's output. ``needs_labels`` tells the evaluation to pass ``y``.

    It keeps the wall time it spent and the utterances it perturbed (``seconds_per_utterance``):
    an iterative attack costs ``steps`` forward and backward passes through every surrogate
    (``vmi_samples + 1`` times that for VMI) where a generator costs one forward pass."""

    needs_labels = True

    def __init__(self, method: str, surrogates: Sequence[nn.Module], eps: float,
                 parameters: AttackParameters = AttackParameters(),
                 bounds: DataRange | None = None, seed: int = 0) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"unknown attack {method!r}; known: {', '.join(METHODS)}")
        self.method, self.eps, self.options, self.bounds = method, eps, parameters, bounds
        # A plain list, not a ModuleList: the surrogates are the trial's defences, owned (and
        # placed, frozen) there; registered here, ``.eval()``/``.train()`` would reach them.
        self.surrogates = list(surrogates)
        self.seed = seed
        self.generator: torch.Generator | None = None
        self.seconds, self.utterances = 0.0, 0

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.generator is None or self.generator.device != x.device:
            self.generator = torch.Generator(device=x.device).manual_seed(self.seed)
        start = time.perf_counter()
        x_adv = iterative_attack(self.method, x, y, self.surrogates, self.eps, self.options,
                                 self.bounds, self.generator)
        eta = x_adv - x.float()
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        self.seconds += time.perf_counter() - start
        self.utterances += len(x)
        return eta

    @property
    def seconds_per_utterance(self) -> float:
        return self.seconds / self.utterances if self.utterances else float("nan")


@dataclass(frozen=True)
class Calibration:
    """A calibrated budget: ``eps``, the SNR its attack had on the calibration subset, and the
    attacks run to find it."""

    eps: float
    snr_db: float
    evaluations: int


def bisect_eps(snr_of: Callable[[float], float], target_db: float, start: float,
               tolerance_db: float = 0.25, max_evaluations: int = 24) -> Calibration:
    """The first eps found with ``|snr_of(eps) - target_db| <= tolerance_db``, by bisection in
    log eps: from ``start`` the budget is doubled (or halved) until the SNR crosses the target,
    then the bracket is halved. SNR falls as eps grows (a larger ball, a louder sign step), so
    the bracket always holds a crossing; ``snr_of`` need not be smooth. ``ValueError`` if the
    target is not reached within ``max_evaluations`` attacks (e.g. the data range caps the
    perturbation's energy below what the target needs)."""
    if not start > 0:
        raise ValueError(f"start must be > 0, got {start}")
    evaluations = 0

    def measure(eps: float) -> float:
        nonlocal evaluations
        evaluations += 1
        return snr_of(eps)

    quiet: float | None = None  # an eps whose SNR is above the target
    loud: float | None = None  # ... below it
    eps = start
    while evaluations < max_evaluations:
        snr = measure(eps)
        if abs(snr - target_db) <= tolerance_db:
            return Calibration(eps, snr, evaluations)
        if snr > target_db:
            quiet = eps
        else:
            loud = eps
        if quiet is not None and loud is not None:
            eps = math.sqrt(quiet * loud)
        else:
            eps = eps * 2 if loud is None else eps / 2
    raise ValueError(f"no eps reached {target_db:.2f} dB SNR within {tolerance_db} dB in "
                     f"{max_evaluations} attacks (last: eps {eps:.4g}, between "
                     f"{quiet} (quieter) and {loud} (louder))")


def attack_snr_db(method: str, x: torch.Tensor, y: torch.Tensor,
                  surrogates: Sequence[nn.Module], eps: float,
                  parameters: AttackParameters = AttackParameters(),
                  bounds: DataRange | None = None, seed: int = 0,
                  batch_size: int = 256) -> float:
    """The SNR of ``method``'s perturbation of ``x`` at budget ``eps``, over every input and
    position as the evaluation sizes an attack (``trainables.metrics.snr_db``). Its draws start
    from ``seed`` each call, so it is a function of ``eps`` alone."""
    generator = torch.Generator(device=x.device).manual_seed(seed)
    signal = energy = 0.0
    for chunk, labels in zip(x.split(batch_size), y.split(batch_size)):
        x_adv = iterative_attack(method, chunk, labels, surrogates, eps, parameters, bounds,
                                 generator)
        signal += chunk.float().pow(2).sum().item()
        energy += (x_adv - chunk.float()).pow(2).sum().item()
    return snr_db(signal, energy)


def calibrate_eps(method: str, x: torch.Tensor, y: torch.Tensor,
                  surrogates: Sequence[nn.Module], target_db: float,
                  parameters: AttackParameters = AttackParameters(),
                  bounds: DataRange | None = None, seed: int = 0,
                  tolerance_db: float = 0.25, batch_size: int = 256) -> Calibration:
    """The eps at which ``method``'s mean SNR on ``x`` (a dev subset, true classes ``y``) is
    within ``tolerance_db`` of ``target_db``. The search starts where a perturbation of +-eps
    at every position would have the target SNR (sign steps spend most of the budget, so the
    answer is near it, a little above)."""
    start = math.sqrt(x.float().pow(2).mean().item() / 10 ** (target_db / 10))
    return bisect_eps(lambda eps: attack_snr_db(method, x, y, surrogates, eps, parameters,
                                                bounds, seed, batch_size),
                      target_db, start, tolerance_db)
