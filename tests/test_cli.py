"""The command line, run as a user runs it: a real subprocess."""

import time

import pytest
import yaml

from tests.helpers import TINY, cli_env, free_port, run_cli

# Real Ray or a real subprocess in every test (``pytest -m "not slow"`` leaves them out).
pytestmark = pytest.mark.slow

NO_DATA = ["--corpus", "demos", "--data-root", "/no/such/folder"]


@pytest.mark.parametrize("args, message", [
    (["--set", "grid.lamdas=[1]"], "unknown config key 'grid.lamdas'"),
    (["--set", "grid.lambdas=[-1]"], "grid.lambdas[0]: must be > 0"),
    (["--set", "grid.lambdas=[0]"], "grid.lambdas[0]: must be > 0"),
    (["--set", "attack.first_stage_iterations=0"], "attack.first_stage_iterations"),
    (["--set", "grid.strategies=[]"], "grid.strategies: empty"),
    (["--set", "grid.strategies=[single-tsk]"], "allowed: single-task"),
    (["--set", "defences.cnn4.model=cnn5"], "defences.cnn4.model"),
    (["--set", "grid.sequences.x=[cnn4,lstm]"], "'lstm' is not a defined defence"),
    (["--set", "attack.lr=fast"], "attack.lr: expected float"),
    (["--corpus", "demos", "--data-root", "/no/such/folder"], "/no/such/folder does not exist"),
    (["--config", "missing.yaml"], "missing.yaml: cannot read"),
    # Refused before anything runs; the missing data folder stops, in a second, a run that
    # would not refuse them.
    (["--set", "grid.lambdas=[100, 100]", *NO_DATA], "grid.lambdas: 100 is given twice"),
    (["--set", "grid.lambdas=[100.0, 1e2]", *NO_DATA], "grid.lambdas: 100 is given twice"),
    (["--set", "grid.sequences={a/b: [cnn4, vgg16]}", *NO_DATA],
     "grid.sequences.a/b: the name 'a/b' may hold only letters"),
    (["--set", "defences={a+b: {model: cnn4}, a: {model: cnn4}, b: {model: vgg16}}",
      "--set", "grid.sequences={s: [a, b]}", *NO_DATA], "defences.a+b: the name 'a+b'"),
])
def test_bad_input_exits_nonzero_with_a_short_message(tmp_path, args, message):
    result = run_cli(*args, "--results", str(tmp_path / "r"), cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r" / "table1.csv").exists()


@pytest.mark.parametrize("given", ["--address", "RAY_ADDRESS"])
def test_an_address_with_no_cluster_behind_it_stops_the_run_in_one_line(tmp_path, given):
    """Ray itself retries such an address for minutes, with a warning every few seconds."""
    address = f"127.0.0.1:{free_port()}"
    flag = ["--address", address] if given == "--address" else []
    env = {**cli_env(), **({"RAY_ADDRESS": address} if given == "RAY_ADDRESS" else {})}
    started = time.monotonic()
    result = run_cli("--config", str(TINY), "--results", str(tmp_path / "r"), *flag,
                     cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    # The last line (a first run's feature extraction may show its progress bar above it),
    # and nothing of Ray's retries.
    line = result.stderr.strip().splitlines()[-1]
    assert f"error: no Ray cluster at {address} (" in line and "drop --address" in line
    assert "Traceback" not in result.stderr and "GCS" not in result.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "r" / "config.yaml").exists()  # no run left to resume


def test_malformed_yaml_names_the_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("grid: [unclosed\n")
    result = run_cli("--config", "bad.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "bad.yaml: malformed YAML" in result.stderr


def test_a_run_that_would_share_another_runs_storage_is_refused(tmp_path):
    """Two runs on one shared ``tune.storage_path`` keep apart by their results folders' names;
    a second folder of the same name would add its trials to the first run's experiments."""
    shared = tmp_path / "shared"
    (shared / "results" / "defences").mkdir(parents=True)
    (shared / "results" / "defences" / "kept.txt").write_text("the first run's")
    result = run_cli("--set", f"tune.storage_path={shared}", "--results",
                     str(tmp_path / "elsewhere" / "results"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"{shared / 'results'} already holds another run's trials (defences)" in result.stderr
    assert (shared / "results" / "defences" / "kept.txt").read_text() == "the first run's"
    assert not (tmp_path / "elsewhere" / "results" / "config.yaml").exists()


def test_a_config_file_that_is_not_utf8_names_the_file_and_the_byte(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    result = run_cli("--config", "latin1.yaml", "--results", str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "latin1.yaml: not UTF-8 text (byte 0xe9 at line 1)" in result.stderr


def test_a_manifest_that_is_not_utf8_names_the_file(tmp_path):
    (tmp_path / "list.csv").write_bytes("path,speaker,emotion\nJos\xe9.wav,s1,anger\n"
                                        .encode("latin-1"))
    result = run_cli("--corpus", "manifest", "--data-root", "list.csv", "--results",
                     str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "list.csv: not UTF-8 text (byte 0xe9 at line 2)" in result.stderr


def test_a_key_given_twice_in_a_config_file_is_refused_naming_it_and_its_lines(tmp_path):
    """YAML keeps the last of two equal keys: a second ``attack:`` block would replace the
    first without a word. (The missing data folder stops a run that does not refuse it in a
    second, instead of training.)"""
    (tmp_path / "twice.yaml").write_text(
        "name: twice\ndata: {corpus: demos, root: /no/such/folder}\nattack: {lr: 0.01}\n"
        "grid:\n  seeds: [0]\n  seeds: [1]\nattack:\n  width: 0.5\n")
    result = run_cli("--config", "twice.yaml", "--results", str(tmp_path / "r"), cwd=tmp_path,
                     timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "twice.yaml: key 'grid.seeds' is given twice (lines 5 and 6)" in result.stderr
    (tmp_path / "twice.yaml").write_text("name: twice\ndata: {corpus: demos, root: /no/such}\n"
                                         "attack: {lr: 0.01}\nattack:\n  width: 0.5\n")
    result = run_cli("--config", "twice.yaml", "--results", str(tmp_path / "r"), cwd=tmp_path,
                     timeout=60)
    assert "twice.yaml: key 'attack' is given twice (lines 3 and 4)" in result.stderr
    result = run_cli("--set", "grid.sequences={a: [cnn4, vgg16], a: [vgg16, cnn4]}",
                     "--corpus", "demos", "--data-root", "/no/such/folder",
                     "--results", str(tmp_path / "r"), cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "key 'a' is given twice" in result.stderr


def test_resume_and_report_only_refuse_settings_other_than_the_runs(tmp_path):
    """``--resume`` and ``--report-only`` use the run's saved config: a ``--set`` (or
    ``--config``, ``--corpus``, ``--data-root``) that would change it was ignored without a word.
    The saved run's data folder is missing, so that a command that passes the check stops at
    once, on that."""
    from orchestrator.config import config_to_dict, load_config
    from tests.helpers import TINY

    results = tmp_path / "r"
    results.mkdir()
    saved = yaml.safe_dump(config_to_dict(load_config(TINY, ["data.corpus=demos",
                                                             "data.root=/no/such/folder"])))
    (results / "config.yaml").write_text(saved)
    for flag in ("--resume", "--report-only"):
        result = run_cli("--results", str(results), flag, "--set", "attack.lr=0.02",
                         "--set", "grid.seeds=[0, 1]", cwd=tmp_path, timeout=60)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert (f"{flag} uses the settings the run was started with ({results / 'config.yaml'}); "
                "the command line would change attack.lr (0.01 there, 0.02 given), "
                "grid.seeds ([0] there, [0, 1] given): drop them") in result.stderr
    result = run_cli("--results", str(results), "--resume", "--config", str(TINY), cwd=tmp_path,
                     timeout=60)
    assert "would change data.corpus ('demos' there, 'synthetic' given), data.root" \
        in result.stderr, result.stderr
    # The same settings again (the starting command with --resume) pass, and the run goes on.
    result = run_cli("--results", str(results), "--resume", "--config", str(TINY), "--corpus",
                     "demos", "--data-root", "/no/such/folder", "--set", "attack.lr=0.01",
                     cwd=tmp_path, timeout=60)
    assert "data folder /no/such/folder does not exist" in result.stderr, result.stderr
    assert (results / "config.yaml").read_text() == saved
    for args, message in ((["--resume", "--report-only"], "--resume and --report-only: give one"),
                          (["--report-only", "--address", "auto"], "drop --address auto")):
        result = run_cli("--results", str(results), *args, cwd=tmp_path, timeout=60)
        assert result.returncode == 2 and message in result.stderr, result.stderr


def test_the_resume_command_is_quoted_for_the_shell(tmp_path):
    """A results folder with a space: the printed command must run as printed."""
    from orchestrator.cli import _resume_hint, build_parser

    results = tmp_path / "my results"
    results.mkdir()
    (results / "config.yaml").write_text("name: x\n")
    hint = _resume_hint(build_parser().parse_args(["--results", str(results)]))
    assert hint == f"finish it with: python run_grid.py --results '{results}' --resume"
