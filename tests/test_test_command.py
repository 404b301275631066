"""The README's test command works as written, and CI runs exactly that command."""

from __future__ import annotations

import pytest

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT


def readme_test_command() -> str:
    """The command that follows the last ``&&`` in the README's "Test it" code block."""
    section = (ROOT / "README.md").read_text().split("## Test it", 1)[1]
    block = re.search(r"```bash\n(.*?)\n```", section, re.S)
    assert block, "README.md: no bash block under 'Test it'"
    return block.group(1).strip().split("&&")[-1].strip()


def test_ci_runs_the_readme_test_command_word_for_word():
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")]
    assert commands[-1] == readme_test_command() == "pytest"


@pytest.mark.slow
def test_the_readme_test_command_collects_every_test_module():
    """Plain ``pytest`` (the console script, not ``python -m pytest``, which would put the
    current folder on sys.path) collects the suite without an error."""
    words = shlex.split(readme_test_command())
    # The console script that `pip install -e '.[test]'` put beside this interpreter.
    words[0] = str(Path(sys.executable).with_name(words[0]))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([*words, "--collect-only", "-q", "-p", "no:cacheprovider"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=180)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    collected = re.search(r"^(\d+) tests? collected", output, re.M)
    assert collected and int(collected.group(1)) > 100, output[-3000:]
    modules = {line.split("::")[0] for line in result.stdout.splitlines() if "::" in line}
    assert modules == {f"tests/{p.name}" for p in (ROOT / "tests").glob("test_*.py")}
