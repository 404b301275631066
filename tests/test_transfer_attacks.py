"""The per-example transfer attacks (``trainables.transfer_attacks``) against hand computations on
a linear softmax model, whose input gradient is known in closed form:
``d CE / d x = W^T (softmax(W x + b) - onehot(y))``."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from trainables.losses import cw_margin
from trainables.metrics import snr_db
from trainables.transfer_attacks import (METHODS, AttackParameters, TransferAttack, bisect_eps,
                                         calibrate_eps, data_range, diverse_input,
                                         iterative_attack, momentum_update, objective, project,
                                         variance_term)

SHAPE = (1, 3, 5)  # (C, T, F): non-square on purpose
CLASSES = 4


def linear(seed: int) -> nn.Sequential:
    """A frozen linear classifier of (N, 1, 3, 5) inputs returning log-probabilities."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(15, CLASSES), nn.LogSoftmax(dim=1)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def ce_gradient(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The closed-form input gradient of the cross-entropy of ``linear``'s model."""
    weight, bias = model[1].weight.double(), model[1].bias.double()
    p = torch.softmax(x.double().flatten(1) @ weight.T + bias, dim=1)
    return ((p - F.one_hot(y, CLASSES).double()) @ weight).view_as(x)


def inputs(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *SHAPE, generator=g), torch.randint(0, CLASSES, (n,), generator=g)


def clip(x_adv, x, eps):
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps)


def test_one_pgd_step_is_the_signed_gradient_from_the_seeded_random_start():
    model, (x, y), eps = linear(0), inputs(), 0.3
    parameters = AttackParameters(steps=1, step_factor=0.5)
    out = iterative_attack("pgd", x, y, [model], eps, parameters,
                           generator=torch.Generator().manual_seed(7))
    start = torch.rand(x.shape, generator=torch.Generator().manual_seed(7)) * 2 - 1
    x0 = x + eps * start
    expected = clip(x0 + 0.5 * eps * ce_gradient(model, x0, y).sign(), x, eps)
    torch.testing.assert_close(out, expected.float())
    # The start really is random (a PGD without it would be one FGSM step from x).
    fgsm = clip(x + 0.5 * eps * ce_gradient(model, x, y).sign(), x, eps)
    assert not torch.allclose(out, fgsm.float())


def test_momentum_is_decayed_and_adds_the_l1_normalised_gradient():
    momentum = torch.tensor([[1.0, -2.0]])
    gradient = torch.tensor([[3.0, -1.0]])  # ||.||_1 = 4
    torch.testing.assert_close(momentum_update(momentum, gradient, 0.5),
                               torch.tensor([[0.5 + 0.75, -1.0 - 0.25]]))
    # Per example: each row by its own norm; a zero gradient stays zero.
    rows = momentum_update(torch.zeros(2, 2), torch.tensor([[2.0, 2.0], [0.0, 0.0]]), 1.0)
    torch.testing.assert_close(rows, torch.tensor([[0.5, 0.5], [0.0, 0.0]]))


def test_two_mi_fgsm_steps_follow_the_momentum_not_the_latest_gradient():
    # eps large enough that the second gradient turns against the first somewhere.
    model, (x, y), eps, decay = linear(0), inputs(seed=0), 2.0, 1.0
    step = eps / 2
    g0 = ce_gradient(model, x, y)
    momentum = g0 / g0.abs().flatten(1).sum(1).view(-1, 1, 1, 1)
    x1 = clip(x + step * momentum.sign(), x, eps)
    g1 = ce_gradient(model, x1, y)
    momentum = decay * momentum + g1 / g1.abs().flatten(1).sum(1).view(-1, 1, 1, 1)
    x2 = clip(x1 + step * momentum.sign(), x, eps)
    # The test can tell momentum from plain signed steps: their directions differ somewhere.
    assert (momentum.sign() != g1.sign()).any()
    out = iterative_attack("mi-fgsm", x, y, [model], eps, AttackParameters(steps=2, decay=decay))
    torch.testing.assert_close(out, x2.float())


def test_vmi_variance_term_is_the_mean_neighbour_gradient_minus_the_gradient():
    model, (x, y), eps = linear(2), inputs(seed=2), 0.2
    parameters = AttackParameters(vmi_samples=3, vmi_radius=1.5)
    gradient = ce_gradient(model, x, y).float()
    out = variance_term(x, y, [model], gradient, eps, parameters,
                        torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    neighbours = [x + 0.3 * (torch.rand(x.shape, generator=g) * 2 - 1) for _ in range(3)]
    expected = sum(ce_gradient(model, n, y) for n in neighbours) / 3 - gradient.double()
    torch.testing.assert_close(out, expected.float())


def test_two_vmi_steps_use_the_previous_steps_variance():
    model, (x, y), eps = linear(0), inputs(seed=0), 2.0
    parameters = AttackParameters(steps=2, vmi_samples=2, vmi_radius=1.5)
    step, radius = eps / 2, 1.5 * eps
    g = torch.Generator().manual_seed(5)
    norm = lambda v: v / v.abs().flatten(1).sum(1).view(-1, 1, 1, 1)
    g0 = ce_gradient(model, x, y)
    momentum = norm(g0)  # v_0 = 0
    v1 = sum(ce_gradient(model, x + radius * (torch.rand(x.shape, generator=g) * 2 - 1), y)
             for _ in range(2)) / 2 - g0
    x1 = clip(x + step * momentum.sign(), x, eps)
    g1 = ce_gradient(model, x1, y)
    momentum = momentum + norm(g1 + v1)
    x2 = clip(x1 + step * momentum.sign(), x, eps)
    without_variance = clip(x1 + step * (momentum - norm(g1 + v1) + norm(g1)).sign(), x, eps)
    assert not torch.equal(x2, without_variance)  # the test can tell VMI from MI
    out = iterative_attack("vmi-fgsm", x, y, [model], eps, parameters,
                           generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(out, x2.float())


def test_the_ensemble_objective_is_the_mean_of_the_members_losses():
    a, b, (x, y) = linear(4), linear(5), inputs()
    ce = objective(x, y, [a, b])
    expected = (F.nll_loss(a(x), y, reduction="none") + F.nll_loss(b(x), y, reduction="none")) / 2
    torch.testing.assert_close(ce, expected)
    # For the margin the two readings differ: the mean of margins, not the margin of the mean
    # log-probability (for cross-entropy, linear in the log-probabilities, they coincide).
    margin = objective(x, y, [a, b], "margin")
    torch.testing.assert_close(margin, -(cw_margin(a(x), y) + cw_margin(b(x), y)) / 2)
    assert not torch.allclose(margin, -cw_margin((a(x) + b(x)) / 2, y))


def test_diverse_input_keeps_a_non_square_shape_rescales_each_axis_and_is_seeded():
    x = torch.ones(2, 1, 20, 64)
    sizes = set()
    for seed in range(12):
        out = diverse_input(x, torch.Generator().manual_seed(seed), probability=1.0,
                            min_scale=0.5)
        assert out.shape == x.shape
        torch.testing.assert_close(out, diverse_input(x, torch.Generator().manual_seed(seed),
                                                      1.0, 0.5))
        # A constant input stays constant where the image lands (no distortion), zero around it.
        kept = out[0, 0] != 0
        frames, bands = int(kept.any(1).sum()), int(kept.any(0).sum())
        assert torch.allclose(out[0, 0][kept], torch.tensor(1.0)) and kept.sum() == frames * bands
        assert 10 <= frames <= 20 and 32 <= bands <= 64
        sizes.add((frames / 20, bands / 64))
    # Each axis draws its own scale: a square (or one-scale) resize would give equal ratios.
    assert any(abs(t - f) > 0.1 for t, f in sizes) and len(sizes) > 3
    assert diverse_input(x, torch.Generator().manual_seed(0), probability=0.0) is x
    # The draw is part of the seed: different seeds give different transforms.
    outs = {diverse_input(x, torch.Generator().manual_seed(s), 1.0, 0.5).sum().item()
            for s in range(5)}
    assert len(outs) > 1


def test_di_fgsm_sees_transformed_inputs_and_mi_fgsm_does_not():
    _, y = inputs()
    x = torch.randn(4, 1, 12, 9, generator=torch.Generator().manual_seed(0))
    model = nn.Sequential(nn.AdaptiveAvgPool2d((3, 5)), *linear(6)).eval()
    seen = []
    model[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    parameters = AttackParameters(steps=3, di_probability=1.0, di_min_scale=0.5)
    iterative_attack("di-fgsm", x, y[:4], [model], 0.1, parameters)
    assert len(seen) == 3 and all(s.shape == x.shape for s in seen)
    assert any((s == 0).any() for s in seen)  # padded
    seen.clear()
    iterative_attack("mi-fgsm", x, y[:4], [model], 0.1, parameters)
    assert not (seen[0] == 0).any()


finite = st.floats(-4, 4, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(method=st.sampled_from(sorted(METHODS)), eps=st.floats(1e-3, 2.0),
       steps=st.integers(1, 3), step_factor=st.floats(0.5, 3.0), seed=st.integers(0, 2**16),
       low=st.floats(-2, 0), width=st.floats(0.1, 3))
def test_the_budget_and_the_data_range_are_never_exceeded(method, eps, steps, step_factor,
                                                          seed, low, width):
    x, y = inputs(n=3, seed=seed)
    x = x * 1.5  # some clean values outside the range: the clamp must not move them
    bounds = (torch.full((1, 1, 1, 5), low), torch.full((1, 1, 1, 5), low + width))
    parameters = AttackParameters(steps=steps, step_factor=step_factor, vmi_samples=2,
                                  di_probability=1.0)
    out = iterative_attack(method, x, y, [linear(seed % 7)], eps, parameters, bounds,
                           torch.Generator().manual_seed(seed))
    assert (out - x).abs().max() <= eps + 1e-5  # float32 rounding of x +- eps
    assert (out >= torch.minimum(bounds[0], x)).all() and (out <= torch.maximum(bounds[1], x)).all()


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.tuples(finite, finite), min_size=1, max_size=20), eps=st.floats(0.01, 3),
       low=st.floats(-3, 0), width=st.floats(0.01, 4))
def test_the_clamp_never_cuts_a_value_inside_the_ball_and_the_data_range(values, eps, low, width):
    clean = torch.tensor([v[0] for v in values])
    adversarial = torch.tensor([v[1] for v in values])
    bounds = (torch.tensor(low), torch.tensor(low + width))
    out = project(adversarial, clean, eps, bounds)
    inside = ((adversarial - clean).abs() <= eps) & (adversarial >= bounds[0]) & \
        (adversarial <= bounds[1])
    assert torch.equal(out[inside], adversarial[inside])
    # A clean value outside the training range is never moved by it.
    assert torch.equal(project(clean, clean, eps, bounds), clean)


def test_data_range_is_per_band_over_the_training_features():
    x = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).view(2, 1, 3, 4) - 10
    low, high = data_range(x)
    assert low.shape == high.shape == (1, 1, 1, 4)
    torch.testing.assert_close(low.flatten(), torch.tensor([-10.0, -9, -8, -7]))
    torch.testing.assert_close(high.flatten(), torch.tensor([10.0, 11, 12, 13]))


def test_every_attack_lowers_a_trained_models_accuracy_more_than_sign_noise_of_its_budget():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    centres = 0.6 * torch.randn(CLASSES, *SHAPE, generator=g)
    y = torch.randint(0, CLASSES, (400,), generator=g)
    x = centres[y] + 0.7 * torch.randn(400, *SHAPE, generator=g)
    model = nn.Sequential(nn.Flatten(), nn.Linear(15, 32), nn.ReLU(), nn.Linear(32, CLASSES),
                          nn.LogSoftmax(dim=1))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(200):
        optimiser.zero_grad()
        F.nll_loss(model(x[:300]), y[:300]).backward()
        optimiser.step()
    model.eval().requires_grad_(False)
    test_x, test_y = x[300:], y[300:]

    def accuracy(inputs):
        return (model(inputs).argmax(1) == test_y).float().mean().item()

    eps = 0.4
    clean = accuracy(test_x)
    noise = accuracy(test_x + eps * torch.randint(0, 2, test_x.shape, generator=g) * 2 - eps)
    assert clean > 0.85 and noise > clean - 0.15
    for method in METHODS:
        for loss in ("cross_entropy", "margin"):
            out = iterative_attack(method, test_x, test_y, [model], eps,
                                   AttackParameters(steps=5, loss=loss, vmi_samples=4))
            assert accuracy(out) < noise - 0.3, (method, loss, accuracy(out), noise)


def test_the_attack_as_an_attacker_gives_its_perturbation_and_its_cost():
    model, (x, y) = linear(0), inputs()
    attack = TransferAttack("di-fgsm", [model], 0.2, AttackParameters(steps=2), seed=4)
    eta = attack(x, y)
    torch.testing.assert_close(eta, iterative_attack(
        "di-fgsm", x, y, [model], 0.2, AttackParameters(steps=2),
        generator=torch.Generator().manual_seed(4)) - x)
    assert attack.utterances == 6 and attack.seconds_per_utterance > 0
    assert not list(attack.parameters()) and attack.needs_labels


def test_surrogates_in_training_mode_and_unknown_attacks_are_refused():
    model, (x, y) = linear(0), inputs()
    for bad, message in ((lambda: iterative_attack("pgd", x, y, [model.train()], 0.1),
                          "eval mode"),
                         (lambda: iterative_attack("fgsm", x, y, [model.eval()], 0.1),
                          "unknown attack"),
                         (lambda: iterative_attack("pgd", x, y, [model.eval()], 0.0), "eps")):
        try:
            bad()
        except ValueError as error:
            assert message in str(error)
        else:
            raise AssertionError(message)


def test_bisection_finds_the_budget_of_a_target_snr_from_either_side():
    calls = []

    def snr(eps):  # a sign perturbation of +-eps everywhere on unit-power inputs
        calls.append(eps)
        return -20 * math.log10(eps)

    for start in (1e-4, 0.05, 30.0):
        calls.clear()
        found = bisect_eps(snr, 20.0, start, tolerance_db=0.1)
        assert abs(found.snr_db - 20.0) <= 0.1 and abs(found.eps - 0.1) < 0.002
        assert found.evaluations == len(calls) <= 24
    with pytest.raises(ValueError, match="no eps reached"):
        bisect_eps(lambda eps: max(-20 * math.log10(eps), 15.0), 10.0, 0.1)  # a capped energy


def test_a_calibrated_attack_has_the_target_snr_on_its_subset_within_half_a_db():
    model, (x, y) = linear(0), inputs(n=16)
    bounds = (torch.full((1, 1, 1, 5), -2.0), torch.full((1, 1, 1, 5), 2.0))
    parameters = AttackParameters(steps=4, vmi_samples=2)
    for method in METHODS:
        found = calibrate_eps(method, x, y, [model], 18.0, parameters, bounds, seed=1)
        attack = TransferAttack(method, [model], found.eps, parameters, bounds, seed=1)
        eta = attack(x, y)
        measured = snr_db(x.pow(2).sum().item(), eta.pow(2).sum().item())
        assert abs(measured - 18.0) <= 0.5, (method, measured, found)
        assert found.evaluations < 12
