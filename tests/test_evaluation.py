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
        assert np.array(metrics["confusion"][f"{name}/dev"]).sum() == 50
    assert np.isclose(metrics["perturbation/dev/mse"], eta.pow(2).mean().item())
    snr = 10 * np.log10(x.pow(2).sum().item() / eta.pow(2).sum().item())
    assert np.isclose(metrics["perturbation/dev/snr_db"], snr)
    assert set(cache) == {"a/dev", "b/dev", "c/dev"}

    clean_only = evaluate(None, defences, {"dev": (x, y)})
    assert "a/dev/adv_uar" not in clean_only and "perturbation/dev/mse" not in clean_only
