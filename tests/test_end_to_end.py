"""The whole pipeline through the real CLI: a subprocess, a real local Ray, real files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import soundfile
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from orchestrator.grid import ATTACK_EXPERIMENT, CONTINUED_EXPERIMENT
from orchestrator.trial_table import TRIAL_COLUMNS
from tests.helpers import PART, ROOT, TINY, assert_same_numbers, cli_env, run_cli

# Real Ray or a real subprocess in every test (``pytest -m "not slow"`` leaves them out).
pytestmark = pytest.mark.slow
COLUMNS = ["method", "defences", "lambda", "cnn4_dev", "cnn4_test", "vgg16_dev", "vgg16_test",
           "resnet50_dev", "resnet50_test", "crnn_dev", "crnn_test"]
# single-task, universal, multi-task, transfer, lifelong, and MI- and DI-FGSM on each surrogate
# set of a single- or three-defence generator: the trials of Table 1 and trials.parquet (the
# Square trial on the held-out CRNN is query_attack.csv's)
ATTACK_TRIALS = 3 + 4 + 2 + 1 + 2 + 2 * 4
@pytest.fixture
def run(tiny_grid):
    """The tiny grid, run once for the session (``conftest.tiny_grid``)."""
    return tiny_grid


def test_table1_has_every_row_of_the_grid(run):
    results, _ = run
    table = pd.read_csv(results / "table1.csv")
    assert list(table.columns[:len(COLUMNS)]) == COLUMNS
    rows = list(zip(table["method"], table["defences"]))
    assert rows == [
        ("clean", "CNN-4 + VGG-16 + ResNet-50 + CRNN"),
        ("single-task", "CNN-4"), ("single-task", "VGG-16"), ("single-task", "ResNet-50"),
        ("noise", "CNN-4"), ("noise", "VGG-16"), ("noise", "ResNet-50"),
        ("universal", "CNN-4"), ("universal", "VGG-16"), ("universal", "ResNet-50"),
        ("universal", "CNN-4 + VGG-16 + ResNet-50"),
        ("multi-task", "CNN-4 + VGG-16"), ("multi-task", "CNN-4 + VGG-16 + ResNet-50"),
        ("transfer", "CNN-4 + VGG-16"), ("transfer", "CNN-4 + VGG-16 + ResNet-50"),
        ("lifelong", "CNN-4 + VGG-16"), ("lifelong", "CNN-4 + VGG-16 + ResNet-50"),
        *[(method, defences) for method in ("mi-fgsm", "di-fgsm")
          for defences in ("CNN-4", "VGG-16", "ResNet-50", "CNN-4 + VGG-16 + ResNet-50")]]
    uar = table[COLUMNS[3:]]
    assert uar.notna().all().all() and ((uar >= 0) & (uar <= 100)).all().all()
    assert set(table.loc[table["method"] == "lifelong", "lambda"]) <= {1.0, 10000.0}
    assert table.loc[table["method"] != "lifelong", "lambda"].isna().all()
    assert (table["status"] == "ok").all()


def test_table1_tells_the_attacks_from_the_clean_rows_from_noise_and_from_each_other(run):
    """The tables the other tests compare mean something: an edit that changes a number a user
    reads changes them. Each bound holds on seeds 0-4 of this grid with a margin (measured on
    the test split, 18 clips a class, on the 2-core machine): every defence's clean UAR 29-66 %
    (chance 14.3), the single-task attackers' mean drop on their own target 13-26 points and
    12-22 points below their noise controls, each multi-task attacker's mean drop on its set
    18-37 points (the three-defence universal perturbation's 21-29 on seeds 0-2); lambda = 1
    and 1e4 gave different lifelong rows on every seed."""
    results, _ = run
    table = pd.read_csv(results / "table1.csv").set_index(["method", "defences"])
    clean = table.loc[("clean", "CNN-4 + VGG-16 + ResNet-50 + CRNN")]
    names = {"cnn4": "CNN-4", "vgg16": "VGG-16", "resnet50": "ResNet-50"}
    for defence in [*names, "crnn"]:
        assert clean[f"{defence}_test"] >= 25.0, (defence, clean[f"{defence}_test"])
    drops = [clean[f"{d}_test"] - table.loc[("single-task", n), f"{d}_test"]
             for d, n in names.items()]
    above_noise = [table.loc[("noise", n), f"{d}_test"] - table.loc[("single-task", n), f"{d}_test"]
                   for d, n in names.items()]
    assert np.mean(drops) >= 8.0, drops
    assert np.mean(above_noise) >= 6.0, above_noise
    for method, defences in (("multi-task", "CNN-4 + VGG-16"),
                             ("multi-task", "CNN-4 + VGG-16 + ResNet-50"),
                             ("universal", "CNN-4 + VGG-16 + ResNet-50")):
        attacked = [d for d, n in names.items() if n in defences.split(" + ")]
        drop = np.mean([clean[f"{d}_test"] - table.loc[(method, defences), f"{d}_test"]
                        for d in attacked])
        assert drop >= 12.0, (method, defences, drop)
    sweep = pd.read_csv(results / "lambda_sweep.csv")
    lifelong = sweep[sweep["lambda"] > 0].set_index(["defences", "lambda"]).filter(like="_dev")
    for defences in ("CNN-4 + VGG-16", "CNN-4 + VGG-16 + ResNet-50"):
        assert not lifelong.loc[(defences, 1.0)].equals(lifelong.loc[(defences, 10000.0)])


def test_trials_parquet_has_a_row_per_trial_and_stage(run):
    results, _ = run
    trials = pd.read_parquet(results / "trials.parquet")
    stages = trials.groupby("trial_id")["stage"].apply(sorted).to_dict()
    assert stages["lifelong-clockwise-lam1e0-seed0"] == [1, 2, 3]  # counted as the console does
    assert stages["single-task-cnn4-seed0"] == [1]
    assert len(stages) == ATTACK_TRIALS
    # Where each stage was recorded: a local run's one node, by its Ray id, on every row.
    assert trials["node"].str.fullmatch("[0-9a-f]{56}").all() and trials["node"].nunique() == 1
    for column in ("cnn4/test/adv_uar", "cnn4/test/clean_uar", "cnn4/test/noise_uar",
                   "perturbation/test/snr_db", "perturbation/test/shared_energy"):
        assert trials[column].notna().all()
    # The documented schema (results/README.md): no Ray bookkeeping, the defences once.
    assert list(trials.columns[:len(TRIAL_COLUMNS)]) == TRIAL_COLUMNS
    assert not {"trained", "trained_defences", "kind", "score", "training_iteration",
                "tune_trial_id", "confusion"} & set(trials.columns)
    lifelong = trials[trials["trial_id"] == "lifelong-clockwise-lam1e0-seed0"]
    assert [list(d) for d in lifelong["defences"]] == [
        ["cnn4"], ["cnn4", "vgg16"], ["cnn4", "vgg16", "resnet50"]]
    row = lifelong.iloc[-1]
    assert list(row["classes"]) == ["anger", "disgust", "fear", "guilt", "happiness", "sadness",
                                    "surprise"]
    matrix = np.array([list(r) for r in row["resnet50/test/confusion"]])
    assert matrix.shape == (7, 7) and (matrix.sum(axis=1) > 0).all()
    truth = matrix.sum(axis=1)  # rows are the true class: UAR is the mean of diagonal / row
    assert np.isclose(np.mean(np.diag(matrix) / truth), row["resnet50/test/adv_uar"])
    # The regulariser's share of the loss at each stage's end: none in a first stage or
    # without a regulariser, some under EWC, more with a larger lambda.
    share = "training/train/penalty_share"
    assert (trials.loc[trials["stage"] == 1, share] == 0).all()
    assert (trials.loc[trials["strategy"] == "transfer", share] == 0).all()
    later = trials[(trials["strategy"] == "lifelong") & (trials["stage"] >= 2)]
    assert (later[share] > 0).all() and (later[share] < 1).all()
    by_lambda = later.groupby("lambda")[share].mean()
    assert by_lambda.loc[10000.0] > by_lambda.loc[1.0]


def test_tensorboard_events_hold_uar_scalars_and_the_figure(run):
    results, _ = run
    trial = results / "runs" / CONTINUED_EXPERIMENT / "lifelong-clockwise-lam1e0-seed0"
    ours = EventAccumulator(str(trial / "tensorboard")).Reload()
    assert "eval/cnn4/test/adv_uar" in ours.Tags()["scalars"]
    assert any(tag.startswith("audio/") for tag in ours.Tags()["audio"])
    assert len(ours.Scalars("eval/cnn4/test/adv_uar")) == 3
    assert ours.Scalars("train/penalty")[-1].value > 0
    # It started from single-task CNN-4's weights: no training step of its own in stage 1 (the
    # tiny grid's first stage is 100 iterations), but stage 1 is still evaluated.
    assert min(e.step for e in ours.Scalars("train/attack_loss")) > 100
    assert min(e.step for e in ours.Scalars("eval/cnn4/test/adv_uar")) == 100
    assert "figure2" in ours.Tags()["images"]
    tunes = EventAccumulator(str(trial)).Reload()
    assert any(tag.endswith("cnn4/dev/adv_uar") for tag in tunes.Tags()["scalars"])


def test_the_other_outputs_exist(run):
    results, result = run
    sizes = pd.read_csv(results / "perturbation.csv")
    assert len(sizes) == ATTACK_TRIALS + 1 and sizes["snr_db_test"].notna().all()  # 2 transfer
    assert ((sizes["shared_energy_test"] >= 0) & (sizes["shared_energy_test"] <= 1)).all()
    for name in ("lambda_sweep.csv", "lambda_sweep.png", "figure2.png", "findings.md",
                 "config.yaml", "split.json"):
        assert (results / name).stat().st_size > 0, name
    sweep = pd.read_csv(results / "lambda_sweep.csv")
    assert set(sweep["lambda"]) == {0.0, 1.0, 10000.0}
    assert "Multi-task" in (results / "findings.md").read_text()
    assert "table1.csv" in result.stdout
    # Four WAV pairs per finished trial, at the corpus's rate, each pair of one length.
    snr = pd.read_csv(results / "audio" / "snr.csv")
    assert len(snr) == 4 * ATTACK_TRIALS and snr["snr_db_waveform"].notna().all()
    for row in snr.itertuples():
        pair = [soundfile.info(str(results / "audio" / row.trial_id / f"{row.utterance}_{k}.wav"))
                for k in ("clean", "adversarial")]
        assert {p.samplerate for p in pair} == {16_000} and pair[0].frames == pair[1].frames


def test_the_console_says_what_each_trial_did_in_a_line(run):
    _, result = run
    lines = result.stdout.splitlines()
    finished = [line for line in lines if "lifelong-clockwise-lam1e0-seed0: finished in" in line]
    assert len(finished) == 1 and finished[0].startswith(f"[{CONTINUED_EXPERIMENT} ")
    assert "adversarial dev UAR %: CNN-4" in finished[0]
    first_experiment = 3 + 4 + 2  # single-task, universal, multi-task
    assert any(line.startswith(f"[{ATTACK_EXPERIMENT} {first_experiment}/{first_experiment}] ")
               for line in lines)
    # Tune's per-trial boxes, which repeat the whole config, and its checkpoint lines are gone.
    assert "experiment/tune/storage_path" not in result.stdout
    assert "Checkpoint successfully created" not in result.stdout + result.stderr


def test_the_console_holds_only_lines_a_researcher_can_act_on(run):
    """No Ray token warning, no Tune configuration box nor its TensorBoard advice (a Ray
    session folder); the one TensorBoard command names <results>/runs."""
    results, result = run
    console = result.stdout + result.stderr
    for noise in ("authentication", "auth_token", "Configuration for experiment",
                  "View detailed results", "driver_artifacts"):
        assert noise not in console, noise
    commands = {line.split("tensorboard --logdir ")[1].split()[0].strip("`")
                for line in console.splitlines() if "tensorboard --logdir" in line}
    assert commands == {str(results / "runs")}


def test_report_only_rebuilds_the_same_tables(run, tmp_path):
    results, _ = run
    tables = ("table1.csv", "perturbation.csv", "query_attack.csv")
    before = [(results / name).read_text() for name in tables]
    (results / "table1.csv").unlink()
    rebuilt = run_cli("--results", str(results), "--report-only", cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert [(results / name).read_text() for name in tables] == before


def test_sharing_the_first_stage_gives_the_same_table_as_training_it_again(run, tmp_path,
                                                                          ray_head):
    results, _ = run
    # On the session's Ray head: the local start is the `run` fixture's to test, not this one's.
    unshared = run_cli("--config", str(TINY), "--results", str(tmp_path / "r"), *PART,
                       "--set", "grid.share_first_stage=false", "--address", ray_head.address,
                       cwd=tmp_path, timeout=900, env=ray_head.env)
    assert unshared.returncode == 0, unshared.stderr[-3000:]
    assert f"joined the Ray cluster at {ray_head.address}" in unshared.stderr + unshared.stdout
    assert not (tmp_path / "r" / "runs" / CONTINUED_EXPERIMENT).exists()
    assert_same_numbers(tmp_path / "r", results)


def test_a_second_run_on_the_same_folder_is_refused(run, tmp_path):
    results, _ = run
    again = run_cli("--config", str(TINY), "--results", str(results), cwd=tmp_path)
    assert again.returncode == 2 and "already holds a run" in again.stderr


def test_a_report_from_no_recorded_trials_says_so_and_keeps_the_table(run, tmp_path):
    results, _ = run
    bare = tmp_path / "results"
    shutil.copytree(results, bare, ignore=shutil.ignore_patterns("runs", ".run.lock"))
    rebuilt = run_cli("--results", str(bare), "--report-only", cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"{bare / 'runs'} holds no recorded stage of any attack trial" in rebuilt.stdout
    table = pd.read_csv(bare / "table1.csv")
    assert set(table.loc[table["method"] != "clean", "status"]) == {"failed"}
    assert (bare / "table1.previous.csv").read_text() == (results / "table1.csv").read_text()


def test_close_lambdas_are_two_trials_each_reported_as_its_own(tmp_path):
    """100 and 120 once gave both trials the name ``lam1e2``: one folder, two of three trials
    finished, ``partial`` rows and lambda-120 numbers that were the other trial's, at exit 0."""
    results = tmp_path / "r"
    # The tiny grid's defences (cached by then), a short two-stage sequence.
    result = run_cli("--config", str(TINY), "--results", str(results),
                     "--set", "grid.sequences={c: [cnn4, vgg16]}",
                     "--set", "grid.strategies=[lifelong]", "--set", "grid.lambdas=[100.0, 120.0]",
                     "--set", "attack.first_stage_iterations=25", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (pd.read_csv(results / "table1.csv")["status"] == "ok").all()
    trials = pd.read_parquet(results / "trials.parquet")
    last = trials[trials["stage"] == 2].set_index("trial_id")
    assert sorted(last.index) == ["lifelong-c-lam1.2e2-seed0", "lifelong-c-lam1e2-seed0"]
    assert last.loc["lifelong-c-lam1.2e2-seed0", "lambda"] == 120.0
    sweep = pd.read_csv(results / "lambda_sweep.csv")
    after_two = sweep[sweep["defences"] == "CNN-4 + VGG-16"].set_index("lambda")
    assert sorted(after_two.index) == [100.0, 120.0]
    for lam, trial in ((100.0, "lifelong-c-lam1e2-seed0"), (120.0, "lifelong-c-lam1.2e2-seed0")):
        assert after_two.loc[lam, "cnn4_dev"] == round(last.loc[trial, "cnn4/dev/adv_uar"] * 100,
                                                       2)


def test_a_signal_to_the_whole_process_group_ends_the_run_as_sigterm_to_the_driver_does(
        tmp_path):
    """GNU ``timeout`` (like ``kill -- -PGID`` and schedulers that signal a job's process group)
    sends SIGTERM to every process of the driver's group. Ray's processes were in it: the GCS
    died before the driver could save, which then waited 60 s for it and was ended by Ray.
    ``timeout`` itself is signalled here, at the first progress line of the attack grid: it
    passes the signal on as when its time is up, to the driver and then to the whole group."""
    results = tmp_path / "results"
    driver = subprocess.Popen(["timeout", "900", sys.executable, str(ROOT / "run_grid.py"),
                               "--config", str(TINY), "--results", str(results), *PART],
                              cwd=tmp_path,
                              env=cli_env(), text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, start_new_session=True)
    lines, stopped = [], None
    for line in driver.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("[attacks") and ": stage " in line:
            stopped = time.monotonic()
            os.kill(driver.pid, signal.SIGTERM)
            break
    lines += driver.communicate(timeout=300)[0].splitlines()
    took = time.monotonic() - stopped
    console = "\n".join(lines)
    hint = f"finish it with: python run_grid.py --results {results} --resume"
    assert driver.returncode == 143, console[-3000:]
    assert lines[-1] == f"interrupted (SIGTERM): {hint}", console[-3000:]
    assert "Traceback" not in console and "GCS" not in console, console[-3000:]
    assert took < 50, f"{took:.0f} s from the signal to the end of the run"
    # What the run saved resumes: test_interrupt finishes a run stopped by a signal (SIGINT:
    # the same handler saves), and test_cloud_storage one killed without saving.
    assert list((results / "runs" / ATTACK_EXPERIMENT).glob("experiment_state-*.json"))
