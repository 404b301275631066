"""The seam between driver and workers: settings declared once and cheap to import, metric keys
built and parsed in one place."""

from __future__ import annotations

import pytest

import subprocess
import sys

from orchestrator.config import load_config
from tests.helpers import ROOT, TINY, TinyAttacker, data, defence
from trainables import metric_keys as keys
from trainables.evaluation import evaluate


@pytest.mark.slow
def test_the_config_loads_without_torch_pandas_or_audio_libraries():
    """The CLI rejects a bad key before any heavy import: the driver's config and every
    worker-side settings class it composes import none of them."""
    probe = ("import sys, orchestrator.config, trainables.settings, trainables.data.settings, "
             "trainables.trials, trainables.metric_keys; "
             "print(sorted(m for m in ('torch', 'pandas', 'librosa', 'soundfile', 'ray', "
             "'numpy', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_trial_gets_the_very_settings_the_config_holds():
    config = load_config(TINY, ["attack.lr=0.5", "lifelong.fisher_samples=3",
                                "performance.amp=off", "tune.attack_resources.cpu=2"])
    settings = config.trial_settings()
    assert settings.attack is config.attack and settings.attack.lr == 0.5
    assert settings.lifelong.fisher_samples == 3 and settings.performance.amp == "off"
    assert settings.defences == config.defences and settings.attack_cpus == 2.0


def test_every_reported_metric_is_named_by_the_keys_module():
    """What ``evaluate`` reports is exactly what ``metric_keys`` builds, and every key parses
    back: a metric renamed on one side only fails here, not as a silently empty column."""
    x, y = data(n=30)
    models = {"a": defence(seed=0), "b": defence(seed=1)}
    metrics = evaluate(TinyAttacker(), models, {"dev": (x, y), "test": (x, y)})
    metrics.pop("confusion")
    expected = {keys.uar(d, s, k) for d in models for s in keys.SPLITS for k in keys.UAR_KINDS}
    expected |= {keys.perturbation(s, m) for s in keys.SPLITS for m in keys.PERTURBATION_METRICS}
    assert set(metrics) == expected
    for key in metrics:
        parsed = keys.parse(key)
        assert parsed is not None and str(parsed) == key
    assert keys.parse("a/train/adv_uar") is None and keys.parse("global_step") is None
    assert keys.parse("perturbation/dev/adv_uar") is None
