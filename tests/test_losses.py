import numpy as np
import pytest
import torch

from trainables.losses import attack_loss, cw_margin
from trainables.metrics import confusion_matrix, uar


def reference_margin(log_probs: np.ndarray, target: np.ndarray) -> np.ndarray:
    out = []
    for row, t in zip(log_probs, target):
        others = [v for c, v in enumerate(row) if c != t]
        out.append(max(row[t] - max(others), 0.0))
    return np.array(out)


def test_cw_margin_matches_numpy_on_strongly_negative_log_probs():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 30, size=(64, 7))
    peak = logits.max(1, keepdims=True)
    log_probs = logits - peak - np.log(np.exp(logits - peak).sum(1, keepdims=True))
    assert (log_probs <= 0).all() and log_probs.min() < -50
    target = np.where(np.arange(64) % 2 == 0, logits.argmax(1), rng.integers(0, 7, size=64))
    ours = cw_margin(torch.tensor(log_probs), torch.tensor(target)).numpy()
    np.testing.assert_allclose(ours, reference_margin(log_probs, target), rtol=1e-6)
    assert (ours > 0).sum() >= 32  # masking the true class with zero would give zero everywhere
    mean = cw_margin(torch.tensor(log_probs), torch.tensor(target), "mean").item()
    assert mean == pytest.approx(ours.mean())


def test_cw_margin_is_zero_once_the_prediction_is_wrong():
    log_probs = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1]]))
    margin = cw_margin(log_probs, torch.tensor([0, 0]))
    torch.testing.assert_close(margin, torch.tensor([np.log(0.7 / 0.2), 0.0], dtype=torch.float32))


def test_attack_loss_weighs_mean_margin_against_mse():
    x = torch.zeros(2, 1, 2, 2)
    eta = torch.full((2, 1, 2, 2), 0.5)
    target = torch.tensor([0, 1])
    fixed = [lambda z, v=v: torch.log(torch.tensor([[v, 1 - v]] * 2)) for v in (0.8, 0.6)]
    margins = np.mean([[np.log(0.8 / 0.2), 0.0], [np.log(0.6 / 0.4), 0.0]], axis=0)
    expected = 0.02 * margins + 0.98 * 0.25
    torch.testing.assert_close(attack_loss(eta, x, target, fixed, 0.02),
                               torch.tensor(expected, dtype=torch.float32))


def test_uar_is_the_mean_of_per_class_recalls():
    y_true = [0, 0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 0, 1, 1, 0, 0]
    assert uar(y_true, y_pred) == np.mean([0.75, 0.5, 0.0])
    assert uar([3, 3, 5], [3, 3, 5]) == 1.0  # absent classes are skipped
    assert confusion_matrix(y_true, y_pred, 3).tolist() == [[3, 1, 0], [1, 1, 0], [1, 0, 0]]
