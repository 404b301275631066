"""Preparing a corpus on the driver: bad files named in one line through the real CLI (no
traceback, no table), files left out by class or by option listed with their reason."""


from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile

from orchestrator.config import load_config
from orchestrator.data_prep import prepare_data
from tests.helpers import ROOT, demos_folder, demos_with_neutral, run_cli, write_wav


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


def _too_short(root: Path) -> str:
    demos_folder(root)
    write_wav(root / "PR_f_01_rab00a.wav", seconds=0.01)  # would be repeated 100 times
    return ("PR_f_01_rab00a.wav is 0.01 s long, shorter than data.features.min_seconds "
            "(0.25 s)")


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


@pytest.mark.slow
@pytest.mark.parametrize("make", [_corrupt, _empty_wav, _nan, _too_short, _unknown_code,
                                  _no_names, _empty,
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
    config = load_config(None, [f"data.root={root}", "data.corpus=demos",
                                "data.on_bad_file=skip", "data.features.frames=16"])
    prepared = prepare_data(config.data, tmp_path / "r", progress=False)
    listed = (tmp_path / "r" / "skipped_files.txt").read_text()
    assert "PR_f_01_rab00a.wav" in listed and len(prepared.skipped) == 1


def test_a_clip_too_short_is_skipped_with_its_length_and_the_setting_lowers_the_minimum(
        tmp_path):
    from orchestrator.config import load_config
    from orchestrator.data_prep import prepare_data
    root = tmp_path / "corpus"
    demos_folder(root, per_class=2)
    short = write_wav(root / "PR_f_01_rab00a.wav", seconds=0.1)
    settings = [f"data.root={root}", "data.corpus=demos", "data.features.frames=16"]
    config = load_config(None, [*settings, "data.on_bad_file=skip"])
    prepared = prepare_data(config.data, tmp_path / "r", progress=False)
    listed = (tmp_path / "r" / "skipped_files.txt").read_text()
    assert f"{short}\t{short} is 0.1 s long, shorter than data.features.min_seconds" in listed
    assert prepared.left_out() == "1 bad file(s) skipped (data.on_bad_file: skip)"
    config = load_config(None, [*settings, "data.features.min_seconds=0.05"])
    assert prepare_data(config.data, tmp_path / "r2", progress=False).skipped == []


@pytest.mark.slow
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


@pytest.mark.slow
def test_after_a_data_error_the_same_folder_can_be_used_again(tmp_path):
    """A run stopped by bad input saves no config, so it does not block the next run."""
    root = tmp_path / "corpus"
    root.mkdir()
    _corrupt(root)
    result = run_cli("--corpus", "demos", "--data-root", str(root), "--results",
                     str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 2
    assert not (tmp_path / "r" / "config.yaml").exists()
