"""Bad data and unsafe input through the real CLI: a short message naming what is wrong, no
traceback, no table."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

from orchestrator.config import config_to_dict, load_config
from orchestrator.data_prep import prepare_data
from orchestrator.resume import check_resumable, check_same_data
from orchestrator.run import CONFIG_FILE
from orchestrator.preflight import check_resources
from trainables.errors import ConfigError, ProjectError
from tests.helpers import TINY, ROOT, demos_folder, demos_with_neutral, run_cli, write_wav


def _corrupt(root: Path) -> str:
    demos_folder(root)
    (root / "PR_f_01_rab00a.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    return "PR_f_01_rab00a.wav: cannot read audio"


def _empty_wav(root: Path) -> str:
    demos_folder(root)
    (root / "PR_f_01_rab00a.wav").write_bytes(b"")
    return "PR_f_01_rab00a.wav: cannot read audio"


def _nan(root: Path) -> str:
    demos_folder(root)
    soundfile.write(root / "PR_f_01_rab00a.wav", np.full(800, np.nan, np.float32), 16_000,
                    subtype="FLOAT")
    return "NaN"


def _unknown_code(root: Path) -> str:
    demos_folder(root)
    write_wav(root / "PR_f_01_xyz00a.wav")
    return "unknown DEMoS emotion code 'xyz'"


def _no_names(root: Path) -> str:
    write_wav(root / "recording1.wav")
    return "is named as demos names its files"


def _empty(root: Path) -> str:
    root.mkdir()
    return "holds no audio files"


def _class_missing(root: Path) -> str:
    demos_folder(root)
    for path in root.glob("*_sor*.wav"):
        if "_01_" not in path.name:
            path.unlink()
    return "class 'surprise'"


def _class_absent(root: Path) -> str:
    demos_folder(root)
    for path in root.glob("*_sor*.wav"):
        path.unlink()
    return "the corpus has no usable utterance of surprise"


def _misnamed_beside_neutral(root: Path) -> str:
    demos_with_neutral(root)
    write_wav(root / "NEU" / "f_03_gio01a.wav")  # an emotion needs the PR_/NP_ prefix
    return "1 audio file(s) in"


@pytest.mark.parametrize("make", [_corrupt, _empty_wav, _nan, _unknown_code, _no_names, _empty,
                                  _class_missing, _class_absent, _misnamed_beside_neutral])
def test_bad_corpus_gives_a_clear_error_and_no_table(tmp_path, make):
    root = tmp_path / "corpus"
    root.mkdir(exist_ok=True) if make is not _empty else None
    message = make(root)
    result = run_cli("--corpus", "demos", "--data-root", str(root), "--results",
                     str(tmp_path / "r"), "--set", "data.features.frames=16", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r" / "table1.csv").exists()


def test_skip_option_lists_bad_files_in_the_run_output(tmp_path):
    root = tmp_path / "corpus"
    demos_folder(root, per_class=2)
    (root / "PR_f_01_rab00a.wav").write_bytes(b"")
    from orchestrator.config import load_config
    from orchestrator.data_prep import prepare_data
    config = load_config(None, [f"data.root={root}", "data.corpus=demos",
                                "data.on_bad_file=skip", "data.features.frames=16"])
    prepared = prepare_data(config.data, tmp_path / "r", progress=False)
    listed = (tmp_path / "r" / "skipped_files.txt").read_text()
    assert "PR_f_01_rab00a.wav" in listed and len(prepared.skipped) == 1


def test_neutral_recordings_are_counted_on_the_console_and_listed_with_the_reason(tmp_path):
    """Through the real command line, stopped once the data is prepared: the grid after it is
    not what this checks."""
    root = tmp_path / "corpus"
    neutral = demos_with_neutral(root)
    results = tmp_path / "r"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    with (tmp_path / "stderr.txt").open("w") as stderr:
        driver = subprocess.Popen(
            [sys.executable, str(ROOT / "run_grid.py"), "--corpus", "demos", "--data-root",
             str(root), "--results", str(results), "--set", "data.features.frames=16"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        watchdog = threading.Timer(240, driver.kill)
        watchdog.start()
        lines = []
        try:
            # The count is printed right after the features line: read up to the line after it,
            # so that a driver that does not print it is stopped before it trains anything.
            for line in driver.stdout:
                lines.append(line)
                if len(lines) > 1 and lines[-2].startswith("features:"):
                    break
        finally:
            driver.kill()
            driver.wait()
            watchdog.cancel()
    console = "".join(lines)
    assert lines and lines[-1].startswith("left out:"), \
        console + (tmp_path / "stderr.txt").read_text()[-3000:]
    assert f"left out: 3 neutral (excluded, as in the paper); listed in {results}" in console
    assert "features: 42 utterances, 7 classes" in console
    listed = (results / "skipped_files.txt").read_text().splitlines()
    assert sorted(listed) == sorted(f"{p}\tneutral (excluded, as in the paper)" for p in neutral)


def test_the_list_of_left_out_files_is_this_scans_even_when_the_features_are_cached(tmp_path):
    """A neutral file added later changes no kept file, so the feature cache is reused; the
    listing must still name it."""
    from orchestrator.config import load_config
    from orchestrator.data_prep import prepare_data
    root = tmp_path / "corpus"
    demos_folder(root)
    config = load_config(None, [f"data.root={root}", "data.corpus=demos",
                                "data.features.frames=16"])
    first = prepare_data(config.data, tmp_path / "r1", progress=False)
    assert first.excluded == [] and not (tmp_path / "r1" / "skipped_files.txt").exists()
    added = write_wav(root / "NEU" / "f_01_neu01a.wav")
    second = prepare_data(config.data, tmp_path / "r2", progress=False)
    assert second.feature_cache == first.feature_cache
    assert second.excluded == [(str(added), "neutral (excluded, as in the paper)")]
    assert second.left_out() == "1 neutral (excluded, as in the paper)"
    assert str(added) in (tmp_path / "r2" / "skipped_files.txt").read_text()


def test_config_values_are_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    payload = f"name=!!python/object/apply:os.system ['touch {marker}']"
    run_cli("--set", payload, "--set", "grid.lamdas=1", cwd=tmp_path)
    (tmp_path / "c.yaml").write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    result = run_cli("--config", str(tmp_path / "c.yaml"), cwd=tmp_path)
    assert result.returncode == 2 and "malformed YAML" in result.stderr
    assert not marker.exists()


def test_every_checkpoint_load_is_weights_only():
    loads = []
    for path in [*(ROOT / "trainables").rglob("*.py"), *(ROOT / "orchestrator").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                loads.append({k.arg: ast.unparse(k.value) for k in node.keywords})
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("eval", "exec",
                                                                        "yaml.load"):
                raise AssertionError(f"{path}: {ast.unparse(node)}")
    # Two load sites since every checkpoint goes through tune_io.load_checkpoint (the other is
    # the defence cache); the floor only guards against a scan that finds nothing.
    assert len(loads) >= 2 and all(k.get("weights_only") == "True" for k in loads)


def test_after_a_data_error_the_same_folder_can_be_used_again(tmp_path):
    """A run stopped by bad input saves no config, so it does not block the next run."""
    root = tmp_path / "corpus"
    root.mkdir()
    _corrupt(root)
    result = run_cli("--corpus", "demos", "--data-root", str(root), "--results",
                     str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 2
    assert not (tmp_path / "r" / "config.yaml").exists()


def test_resume_refuses_a_corpus_that_changed_since_the_run_started(tmp_path):
    """Finished trials keep the numbers of the data they ran on: a --resume on other data (a
    file added after the crash) would mix two experiments in one table, so it stops at once,
    before it touches the run's records or starts Ray."""
    corpus = demos_folder(tmp_path / "data")
    results = tmp_path / "r"
    # A run's start as the driver makes it (data prepared and recorded, config saved), then
    # killed before any trial.
    config = load_config(None, ["data.corpus=demos", f"data.root={corpus}",
                                "data.features.frames=16", f"data.cache_dir={tmp_path / 'c'}"])
    results.mkdir()
    prepared = prepare_data(config.data, progress=False)
    check_same_data(results, prepared, resume=False)
    prepared.record(results)
    (results / CONFIG_FILE).write_text(yaml.safe_dump(config_to_dict(config)))
    split = (results / "split.json").read_text()

    write_wav(corpus / "PR_f_01_rab99a.wav", seed=5)
    resumed = run_cli("--results", str(results), "--resume", cwd=tmp_path)
    assert resumed.returncode == 2, resumed.stdout + resumed.stderr
    assert "the data changed since this run started" in resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert (results / "split.json").read_text() == split
    assert not (results / "runs").exists()


@pytest.mark.parametrize("where", ["results", "tune state"])
def test_resume_refuses_folders_that_other_users_can_write(tmp_path, where):
    """--resume unpickles Tune's saved state: a folder (or state file) that another user could
    have written is refused in one line, before anything is read from it."""
    results = tmp_path / "r"
    config = load_config(TINY, [f"data.cache_dir={tmp_path / 'c'}"])
    (results / "runs" / "attacks").mkdir(parents=True)
    (results / CONFIG_FILE).write_text(yaml.safe_dump(config_to_dict(config)))
    planted = results / "runs" / "attacks" / "tuner.pkl"
    planted.write_bytes(b"not a pickle anyone should load")
    os.chmod(results, 0o700)
    os.chmod(planted, 0o600)
    check_resumable(results, results / "runs", ["attacks"])  # only this user can write it
    os.chmod(results if where == "results" else planted, 0o777 if where == "results" else 0o666)
    resumed = run_cli("--results", str(results), "--resume", cwd=tmp_path)
    assert resumed.returncode == 2, resumed.stdout + resumed.stderr
    assert "other users can write to it" in resumed.stderr and "Traceback" not in resumed.stderr
    assert str(results if where == "results" else planted) in resumed.stderr


def test_a_model_that_cannot_take_the_features_stops_the_run_before_ray(tmp_path):
    """One Mel band leaves CNN-4 nothing to pool: said in one line naming the model's key,
    before Ray starts, rather than by every defence trial failing three times."""
    result = run_cli("--config", str(TINY), "--results", str(tmp_path / "r"), "--set",
                     "data.features.n_mels=1", cwd=tmp_path)
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
    assert "its trials wait until the cluster scales up" in capsys.readouterr().out


def test_resume_refuses_defences_other_than_those_the_run_started_with():
    from orchestrator.grid import defence_trials
    from orchestrator.resume import check_same_defences

    config = load_config(TINY)
    trials = {t.id: t for t in defence_trials(config)}
    keys = {i: f"{t.defence}-{'0' * 16}" for i, t in trials.items()}
    recorded = {t.defence: {"per_seed": {str(t.grid_seed): {"cache": f"/c/{keys[i]}.pt"}}}
                for i, t in trials.items()}
    check_same_defences(recorded, trials, keys)  # the same: resumed
    check_same_defences({}, trials, keys)  # none recorded yet (stopped before they finished)
    changed = dict(keys, **{"defence-vgg16-seed0": "vgg16-" + "1" * 16})
    with pytest.raises(ProjectError, match="defence vgg16 .grid seed 0. is not the one"):
        check_same_defences(recorded, trials, changed)
