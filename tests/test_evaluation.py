import numpy as np
import torch

from tests.helpers import TinyAttacker, data, defence
from trainables.evaluation import evaluate, predict
from trainables.metrics import uar


def test_evaluation_runs_the_attacker_once_per_chunk_and_scores_every_defence():
    torch.manual_seed(0)
    attacker = TinyAttacker().train()
    defences = {"a": defence(1), "b": defence(2), "c": defence(3)}
    x, y = data(50)
    calls = []
    attacker.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))

    cache: dict = {}
    metrics = evaluate(attacker, defences, {"dev": (x, y)}, batch_size=16, clean_cache=cache)
    assert calls == [16, 16, 16, 2]  # once per chunk, not once per defence
    assert attacker.training  # given back in the mode it came in

    attacker.eval()
    with torch.no_grad():
        eta = attacker(x)
    truth = y.numpy()
    for name, model in defences.items():
        assert metrics[f"{name}/dev/adv_uar"] == uar(truth, predict(model, x + eta))
        assert metrics[f"{name}/dev/clean_uar"] == uar(truth, predict(model, x))
        assert np.array(metrics["confusion"][f"{name}/dev/confusion"]).sum() == 50
    assert np.isclose(metrics["perturbation/dev/mse"], eta.pow(2).mean().item())
    snr = 10 * np.log10(x.pow(2).sum().item() / eta.pow(2).sum().item())
    assert np.isclose(metrics["perturbation/dev/snr_db"], snr)
    assert set(cache) == {"a/dev/confusion", "b/dev/confusion", "c/dev/confusion"}

    clean_only = evaluate(None, defences, {"dev": (x, y)})
    assert "a/dev/adv_uar" not in clean_only and "perturbation/dev/mse" not in clean_only


def test_perturbation_specificity_and_the_noise_control_against_direct_computation():
    torch.manual_seed(1)
    attacker = TinyAttacker().eval()
    defences = {"a": defence(1)}
    x, y = data(40)
    metrics = evaluate(attacker, defences, {"dev": (x, y)}, batch_size=16, noise_seed=3)
    with torch.no_grad():
        eta = attacker(x)
    assert np.isclose(metrics["perturbation/dev/mean_eta"], eta.mean().item(), rtol=1e-5)
    shared = eta.mean(dim=0).pow(2).sum() / eta.pow(2).flatten(1).sum(dim=1).mean()
    assert np.isclose(metrics["perturbation/dev/shared_energy"], shared.item(), rtol=1e-5)
    assert 0 <= metrics["a/dev/noise_uar"] <= 1
    # The same seed gives the same control; another seed another one.
    again = evaluate(attacker, defences, {"dev": (x, y)}, batch_size=16, noise_seed=3)
    assert again["a/dev/noise_uar"] == metrics["a/dev/noise_uar"]


def test_a_fixed_offset_is_all_shared_and_an_input_specific_one_is_not():
    x, y = data(32)

    class Offset(torch.nn.Module):
        def __init__(self, specific: bool) -> None:
            super().__init__()
            self.specific = specific

        def forward(self, x):
            return x.sign() * 0.1 if self.specific else torch.full_like(x, 0.1)

    fixed = evaluate(Offset(False), {"a": defence(1)}, {"dev": (x, y)})
    specific = evaluate(Offset(True), {"a": defence(1)}, {"dev": (x, y)})
    assert np.isclose(fixed["perturbation/dev/shared_energy"], 1.0)
    assert specific["perturbation/dev/shared_energy"] < 0.1


def test_the_noise_control_keeps_each_samples_values_and_moves_them():
    from trainables.evaluation import shuffled_positions

    eta = torch.rand(4, 1, 8, 6)
    control = shuffled_positions(eta, torch.Generator().manual_seed(0))
    for original, moved in zip(eta, control):
        assert torch.equal(original.flatten().sort().values, moved.flatten().sort().values)
    assert not torch.equal(eta, control)
    assert torch.allclose(eta.pow(2).flatten(1).mean(1), control.pow(2).flatten(1).mean(1))
