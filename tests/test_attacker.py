"""The attacker can make a small perturbation: no floor from its last batch norm."""

from dataclasses import replace

import pytest
import torch

from orchestrator.config import load_config
from orchestrator.paths import PROJECT_ROOT
from trainables.losses import attack_loss
from trainables.models import build
from trainables.regularisers import build_regulariser
from trainables.stage_loop import LoopSettings, StageLoop
from trainables.stages import Plan, Stage


def _mean_eta(attacker, x, training: bool) -> float:
    attacker.train(training)
    with torch.no_grad():
        return attacker(x).mean().item()


def test_the_default_attacker_trained_on_distortion_alone_outputs_a_near_zero_perturbation():
    """alpha = 0 is the strongest push towards eta = 0. With PyTorch's default initialisation
    the default schedule left a mean eta of 0.36 (batch norm's bias moves ~lr per step)."""
    config = load_config(PROJECT_ROOT / "configs" / "smoke.yaml")
    attack = config.attack
    torch.manual_seed(0)
    x = torch.randn(256, 1, config.data.features.frames, 64)
    y = torch.randint(0, 7, (256,))
    attacker = build("atrous", width=attack.width, eta_init=attack.eta_init)
    defence = build("cnn4", width=0.0625)
    plan = Plan("distortion-only", (Stage(("d",), attack.first_stage_iterations),), "none")
    settings = LoopSettings(replace(attack, alpha=0.0))
    StageLoop(attacker, {"d": defence}, plan, build_regulariser("none", 0.0), x, y,
              settings).run()
    assert _mean_eta(attacker, x, training=True) <= 0.02
    assert _mean_eta(attacker, x, training=False) <= 0.02


def test_the_attacker_starts_at_eta_init_with_the_papers_parameters():
    x = torch.randn(8, 1, 40, 64)
    small, default = build("atrous", width=0.25), build("atrous", width=0.25, eta_init=0.5)
    assert _mean_eta(small, x, training=True) < 0.03
    assert 0.45 < _mean_eta(default, x, training=True) < 0.55
    assert sum(p.numel() for p in small.parameters()) == \
        sum(p.numel() for p in default.parameters())
    with pytest.raises(ValueError, match="eta_init"):
        build("atrous", eta_init=1.0)


def test_a_summed_margin_weighs_the_attack_term_batch_size_times_more():
    torch.manual_seed(0)
    defence = build("cnn4", width=0.0625).eval()
    x, eta = torch.randn(6, 1, 32, 64), 0.1 * torch.rand(6, 1, 32, 64)
    y = torch.randint(0, 7, (6,))
    mean = attack_loss(eta, x, y, [defence], alpha=0.3)
    summed = attack_loss(eta, x, y, [defence], alpha=0.3, margin_scale=6)
    mse = eta.pow(2).flatten(1).mean(1)
    margin = (mean - 0.7 * mse) / 0.3
    assert margin.sum() > 0
    # Averaged over the batch: alpha x (sum of margins) + (1 - alpha) x (mean MSE).
    assert torch.allclose(summed.mean(), 0.3 * margin.sum() + 0.7 * mse.mean(), rtol=1e-5)
