"""What ``--resume`` checks before it continues a run (``orchestrator.resume``): the same data,
the same defences, and folders only this user could have written."""


from __future__ import annotations

import os

import pytest
import yaml

from orchestrator.config import config_to_dict, load_config
from orchestrator.data_prep import prepare_data
from orchestrator.resume import check_resumable, check_same_data
from orchestrator.storage import Storage
from orchestrator.run_folder import CONFIG_FILE
from trainables.errors import ProjectError
from tests.helpers import TINY, demos_folder, run_cli, write_wav


@pytest.mark.slow
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


@pytest.mark.slow
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
    # Only this user can write it.
    check_resumable(results, Storage.at(results / "runs"), ["attacks"])
    os.chmod(results if where == "results" else planted, 0o777 if where == "results" else 0o666)
    resumed = run_cli("--results", str(results), "--resume", cwd=tmp_path)
    assert resumed.returncode == 2, resumed.stdout + resumed.stderr
    assert "other users can write to it" in resumed.stderr and "Traceback" not in resumed.stderr
    assert str(results if where == "results" else planted) in resumed.stderr


def test_resume_refuses_defences_other_than_those_the_run_started_with():
    from orchestrator.grid import defence_trials
    from orchestrator.resume import check_same_defences

    config = load_config(TINY)
    trials = {t.id: t for t in defence_trials(config)}
    keys = {i: f"{t.defence}-{'0' * 16}" for i, t in trials.items()}
    recorded = {t.defence: {str(t.seed): {"cache": f"/c/{keys[i]}.pt"}}
                for i, t in trials.items()}
    check_same_defences(recorded, trials, keys)  # the same: resumed
    check_same_defences({}, trials, keys)  # none recorded yet (stopped before they finished)
    changed = dict(keys, **{"defence-vgg16-seed0": "vgg16-" + "1" * 16})
    with pytest.raises(ProjectError, match="defence vgg16 .grid seed 0. is not the one"):
        check_same_defences(recorded, trials, changed)
