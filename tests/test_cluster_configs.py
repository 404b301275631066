"""The cluster launcher configs pass Ray's own schema validation."""

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from orchestrator.paths import PROJECT_ROOT


@pytest.mark.parametrize("path", ["cluster.yaml", "configs/onprem-cluster.yaml"])
def test_cluster_config_is_valid_for_the_ray_launcher(path):
    config = yaml.safe_load((PROJECT_ROOT / path).read_text())
    validate_config(prepare_config(config))
    text = (PROJECT_ROOT / path).read_text().lower()
    assert "aws_secret_access_key" not in text and "password" not in text
    assert "--dashboard-host=127.0.0.1" in text
