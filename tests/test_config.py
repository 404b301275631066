import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.config import (ExperimentConfig, config_from_dict, config_to_dict, load_config)
from orchestrator.paths import PROJECT_ROOT
from trainables.errors import ConfigError


@pytest.mark.parametrize("name", sorted(p.name for p in (PROJECT_ROOT / "configs").glob("*.yaml")
                                        if p.name != "onprem-cluster.yaml"))
def test_shipped_configs_load(name):
    config = load_config(PROJECT_ROOT / "configs" / name,
                         ["data.root=/data"] if "paper" in name or "released" in name else [])
    assert isinstance(config, ExperimentConfig)


def test_saved_config_round_trips_through_yaml():
    config = load_config(PROJECT_ROOT / "configs" / "smoke.yaml")
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(config_to_dict(config)))) == config


@pytest.mark.parametrize("overrides, message", [
    (["grid.lamdas=[1]"], "unknown config key 'grid.lamdas'"),
    (["attack.alpha=2"], "attack.alpha: must be in [0, 1]"),
    (["grid.seeds=[]"], "grid.seeds: empty"),
    (["grid.sequences={a: [cnn4]}"], "needs two or more distinct defences"),
    (["data.corpus=timit"], "data.corpus: 'timit' is not allowed"),
    (["data.corpus=demos"], "data.root: corpus 'demos' needs its folder"),
    (["tune.attack_resources.gpu=-1"], "resources.gpu: must be >= 0"),
    (["lifelong.regulariser=l2"], "lifelong.regulariser"),
    (["grid=3"], "grid: expected a mapping"),
    (["nonsense"], "expected key.sub=value"),
    (["grid.seeds=[0,1,0]"], "grid.seeds: seed 0 is given twice"),
    (["grid.seeds=[-1]"], "grid.seeds[0]: must be >= 0"),
    (["data.split.seed=-1"], "data.split.seed: must be >= 0"),
    (["seed=-2"], "seed: must be >= 0"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_yaml_numbers_in_exponent_form_are_floats(tmp_path):
    (tmp_path / "c.yaml").write_text("grid: {lambdas: [1e4, 1.0e+5]}\n")
    assert load_config(tmp_path / "c.yaml").grid.lambdas == [1e4, 1e5]


values = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-1e3, 1e3)
                      | st.text(max_size=5),
                      lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(["grid", "attack", "lambdas", "seeds",
                                                         "width", "data", "cnn4", "x"]),
                                        inner, max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["grid", "attack", "data", "defences", "seed", "tune",
                                        "lifelong", "name", "typo"]), values, max_size=4))
def test_any_input_loads_or_raises_config_error(data):
    try:
        config = config_from_dict(data)
    except ConfigError:
        return
    assert isinstance(config, ExperimentConfig)


def test_an_unquoted_off_is_the_word_not_a_boolean(tmp_path):
    # YAML 1.1 reads `off` as false; `--set performance.amp=off` must still mean "off".
    assert load_config(None, ["performance.amp=off"]).performance.amp == "off"
    (tmp_path / "c.yaml").write_text("performance: {amp: off}\n")
    assert load_config(tmp_path / "c.yaml").performance.amp == "off"
    with pytest.raises(ConfigError, match="performance.amp: True is not allowed"):
        load_config(None, ["performance.amp=yes"])


def test_an_empty_config_file_is_refused_not_run_at_paper_scale(tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="empty.yaml is empty; start from configs/smoke.yaml"):
        load_config(tmp_path / "empty.yaml")


def test_reproduce_is_the_default_run_over_five_seeds():
    smoke = config_to_dict(load_config(PROJECT_ROOT / "configs" / "smoke.yaml"))
    reproduce = config_to_dict(load_config(PROJECT_ROOT / "configs" / "reproduce.yaml"))
    assert reproduce["grid"].pop("seeds") == [0, 1, 2, 3, 4] and smoke["grid"].pop("seeds") == [0]
    assert reproduce.pop("name") == "reproduce" and smoke.pop("name") == "smoke"
    assert reproduce == smoke
