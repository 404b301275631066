"""Atomic file writes: a crash leaves the previous file or none, never a partial one."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def _new_temp_beside(path: Path) -> Path:
    """Create an empty, uniquely named temporary file beside ``path`` and return its path.

    Unlike ``tempfile.mkstemp``, which always creates mode 0600, the file is created with mode
    0666 and so, through the kernel, follows the user's umask and the folder's default ACL,
    exactly as ``open(path, "w")`` would: colleagues who may read a folder on shared storage can
    read the results, figures and caches written into it."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.
    The file gets the mode a plain ``open(path, "w")`` would give a new file (see
    ``_new_temp_beside``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp_beside(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return write_atomically(path, lambda tmp: tmp.write_text(text))
