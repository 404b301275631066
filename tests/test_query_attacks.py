"""The query-only Square attack (``trainables.query_attacks``, ART 1.20.1) on small models: its
budget, its clamp, its seed, and that more queries lower the attacked defence's UAR."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from trainables.query_attacks import flat_eps, max_p_init, query_curve, square_attack

SHAPE = (1, 12, 5)  # non-square, like a spectrogram's frames x bands


def trained_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    centres = 0.5 * torch.randn(3, *SHAPE, generator=g)
    y = torch.randint(0, 3, (260,), generator=g)
    x = centres[y] + 0.6 * torch.randn(260, *SHAPE, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(60, 16), nn.ReLU(), nn.Linear(16, 3),
                          nn.LogSoftmax(dim=1))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        optimiser.zero_grad()
        F.nll_loss(model(x[:200]), y[:200]).backward()
        optimiser.step()
    return model.eval().requires_grad_(False), x[200:], y[200:]


def test_p_init_must_let_the_first_square_fit_a_rectangular_input():
    # The paper's 373 x 64 spectrogram: below about 0.17, as ART's square side needs.
    assert 0.168 < max_p_init(373, 64) < 0.17
    assert max_p_init(64, 64) > 0.98 and max_p_init(12, 5) == pytest.approx(4.5 ** 2 / 60)
    model, x, y = trained_model()
    with pytest.raises(ValueError, match=r"p_init must be in \(0, 0.338\) for a 12 x 5 input"):
        square_attack(model, x[:4], y[:4], 0.1, 5, p_init=0.5)
    with pytest.raises(ValueError, match="4-D"):
        square_attack(model, x[:4, 0], y[:4], 0.1, 5)
    # Just below the bound ART runs (above it, numpy's randint fails inside ART).
    square_attack(model, x[:4], y[:4], 0.1, 20, p_init=max_p_init(12, 5) - 1e-3)


def test_the_budget_holds_and_no_clean_value_is_clipped():
    model, x, y = trained_model()
    x = x[:20] * 1.5  # values outside the training range
    bounds = (torch.full((1, 1, 1, 5), -0.5), torch.full((1, 1, 1, 5), 0.5))
    adversarial = square_attack(model, x, y[:20], 0.2, 30, bounds, p_init=0.3)
    # Clipped to the range itself, a clean value beyond it by more than eps would move further.
    assert ((x > 0.5 + 0.2) | (x < -0.5 - 0.2)).any()
    assert (adversarial - x).abs().max() <= 0.2 + 1e-6
    assert (adversarial != x).any()


def test_the_search_is_seeded_and_leaves_numpys_generator_as_it_was():
    model, x, y = trained_model()
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = square_attack(model, x[:10], y[:10], 0.3, 20, seed=4, p_init=0.3)
    assert np.array_equal(np.random.get_state()[1], before)
    assert torch.equal(first, square_attack(model, x[:10], y[:10], 0.3, 20, seed=4, p_init=0.3))
    assert not torch.equal(first, square_attack(model, x[:10], y[:10], 0.3, 20, seed=5,
                                                p_init=0.3))


def test_more_queries_lower_the_attacked_defences_uar_at_a_fixed_budget():
    model, x, y = trained_model()
    clean = (model(x).argmax(1) == y).float().mean().item()
    eps = flat_eps(x, 3.0)  # loud: this tiny model is robust to quieter ones
    points = query_curve(model, x, y, eps, [300, 3, 30], p_init=0.3)
    assert [p.queries for p in points] == [3, 30, 300]
    assert clean > 0.8
    assert points[0].uar >= points[1].uar >= points[2].uar and points[2].uar < clean - 0.3
    # A +-eps perturbation everywhere has the target SNR; the Square attack is never louder.
    assert all(p.snr_db >= 3.0 - 1e-6 and p.linf <= eps + 1e-6 for p in points)
    assert all(p.ms_per_utterance > 0 for p in points)
