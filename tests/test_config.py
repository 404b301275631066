import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.config import (ExperimentConfig, config_from_dict, config_to_dict, load_config)
from orchestrator.paths import PROJECT_ROOT
from tests.helpers import run_cli
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
    (["tune.storage_path=ftp://host/runs"], "has the scheme 'ftp', which pyarrow cannot open"),
    (["tune.storage_path=s3:///runs"], "names no bucket"),
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


def test_reproduce_is_the_default_run_over_five_seeds_with_every_baseline():
    smoke = config_to_dict(load_config(PROJECT_ROOT / "configs" / "smoke.yaml"))
    reproduce = config_to_dict(load_config(PROJECT_ROOT / "configs" / "reproduce.yaml"))
    assert reproduce["grid"].pop("seeds") == [0, 1, 2, 3, 4] and smoke["grid"].pop("seeds") == [0]
    assert reproduce.pop("name") == "reproduce" and smoke.pop("name") == "smoke"
    ours, theirs = reproduce["grid"].pop("strategies"), smoke["grid"].pop("strategies")
    assert set(ours) == set(theirs) | {"pgd", "vmi-fgsm"}
    # VMI-FGSM, which the default run leaves out, with fewer neighbours, to fit the hour.
    assert reproduce["baselines"].pop("vmi_samples") == 5
    smoke["baselines"].pop("vmi_samples")
    assert reproduce == smoke


def test_a_config_states_only_how_it_differs_from_the_one_it_extends(tmp_path):
    """``extends``: the base file's keys, with the extending file's laid over them (mappings
    merged key by key, lists replaced); a loop or a missing base is one clear error."""
    reproduce = load_config(PROJECT_ROOT / "configs" / "reproduce.yaml")
    smoke = load_config(PROJECT_ROOT / "configs" / "smoke.yaml")
    assert reproduce.grid.seeds == [0, 1, 2, 3, 4] and reproduce.name == "reproduce"
    assert reproduce.attack == smoke.attack and reproduce.defences == smoke.defences
    assert reproduce.grid.lambdas == smoke.grid.lambdas  # a sibling of the key it changed

    (tmp_path / "base.yaml").write_text("attack: {lr: 0.5, batch_size: 8}\ngrid: {seeds: [0, 1]}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nattack: {lr: 0.25}\n"
                                         "grid: {seeds: [3]}\n")
    child = load_config(tmp_path / "child.yaml")
    assert child.attack.lr == 0.25 and child.attack.batch_size == 8 and child.grid.seeds == [3]
    (tmp_path / "loop.yaml").write_text("extends: loop2.yaml\nname: a\n")
    (tmp_path / "loop2.yaml").write_text("extends: loop.yaml\nname: b\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text("extends: nowhere.yaml\nname: a\n")
    with pytest.raises(ConfigError, match="nowhere.yaml does not exist"):
        load_config(tmp_path / "orphan.yaml")


@pytest.mark.slow
def test_config_values_are_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    payload = f"name=!!python/object/apply:os.system ['touch {marker}']"
    run_cli("--set", payload, "--set", "grid.lamdas=1", cwd=tmp_path)
    (tmp_path / "c.yaml").write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    result = run_cli("--config", str(tmp_path / "c.yaml"), cwd=tmp_path)
    assert result.returncode == 2 and "malformed YAML" in result.stderr
    assert not marker.exists()
