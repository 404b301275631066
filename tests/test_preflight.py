"""Checks made before any trial starts (``orchestrator.preflight``): every model on this run's
features, every trial's resources against the Ray instance."""


from __future__ import annotations


import pytest

from orchestrator.config import load_config
from orchestrator.preflight import check_resources
from trainables.errors import ConfigError
from tests.helpers import TINY, run_cli


@pytest.mark.slow
def test_a_model_that_cannot_take_the_features_stops_the_run_before_ray(tmp_path):
    """One Mel band leaves CNN-4 nothing to pool: said in one line naming the model's key,
    before Ray starts, rather than by every defence trial failing three times."""
    result = run_cli("--config", str(TINY), "--results", str(tmp_path / "r"), "--set",
                     "data.features.n_mels=1", "--set", "grid.strategies=[single-task]",
                     cwd=tmp_path)  # without Square, whose own check of the input comes first
    assert result.returncode == 2, result.stdout + result.stderr
    assert "defences.cnn4 (cnn4) cannot train on this run's features" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Ray instance" not in result.stdout


def test_a_trial_larger_than_the_ray_instance_is_refused_locally_and_warned_on_a_cluster(
        capsys):
    config = load_config(TINY, ["tune.attack_resources.cpu=4096"])
    check_resources(load_config(TINY), {"CPU": 2.0}, local=True)  # fits: nothing said
    with pytest.raises(ConfigError, match="tune.attack_resources: a trial asks for 4096 CPU"):
        check_resources(config, {"CPU": 2.0, "GPU": 0.0}, local=True)
    check_resources(config, {"CPU": 2.0}, local=False)  # a cluster may scale up
    assert "its trials wait until the cluster scales up" in capsys.readouterr().err
