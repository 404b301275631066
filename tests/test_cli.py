"""The command line, run as a user runs it: a real subprocess."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``run_grid.py`` as a user runs it: Ray's settings (token authentication included) as the
    run chooses them."""
    return subprocess.run([sys.executable, str(ROOT / "run_grid.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


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
])
def test_bad_input_exits_nonzero_with_a_short_message(tmp_path, args, message):
    result = run_cli(*args, "--results", str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r" / "table1.csv").exists()


def test_malformed_yaml_names_the_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("grid: [unclosed\n")
    result = run_cli("--config", "bad.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "bad.yaml: malformed YAML" in result.stderr
