"""Result files are written atomically: a crash or a full disk leaves the old file or none."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from trainables.atomic import write_atomically, write_text_atomically
from tests.helpers import ROOT


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path):
    target = write_text_atomically(tmp_path / "table1.csv", "old\n")

    def full_disk(tmp):
        tmp.write_text("half of a tab")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomically(target, full_disk)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table1.csv"]


@pytest.mark.slow
def test_a_process_killed_while_writing_never_leaves_a_partial_file(tmp_path):
    target = tmp_path / "table1.csv"
    target.write_text("previous table\n")
    child = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from trainables.atomic import write_atomically
def slow(tmp):
    with open(tmp, "w") as handle:
        handle.write("partial row,")
        handle.flush()
        print("writing", flush=True)
        time.sleep(60)
write_atomically({str(target)!r}, slow)
"""], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    time.sleep(0.1)
    assert target.read_text() == "previous table\n"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_follow_the_umask_like_a_plain_open(tmp_path, umask, mode):
    """Results and caches on shared storage must be readable by whom the user's umask allows,
    not by their owner only (``tempfile.mkstemp`` makes 0600 whatever the umask)."""
    previous = os.umask(umask)
    try:
        text = write_text_atomically(tmp_path / "table1.csv", "method\n")
        rewritten = write_atomically(tmp_path / "figure.png", lambda tmp: tmp.write_bytes(b"x"))
        write_text_atomically(text, "method,defences\n")  # replacing keeps the same rule
        with open(tmp_path / "plain.csv", "w") as handle:
            handle.write("method\n")
    finally:
        os.umask(previous)
    for path in (text, rewritten, tmp_path / "plain.csv"):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path.name
