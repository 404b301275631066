"""Files written with their checksum beside them, and verified before they are trusted.

Caches and checkpoints are read back long after they were written, often from shared storage:
a disk error, a copy cut short or a stray write would otherwise load as good data and give a
table of wrong numbers with every row ``ok``. ``<file>.sha256`` holds the SHA-256 of the file
as written; it is written after the file, so a crash between the two leaves a file without a
checksum, which is not trusted either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from trainables.atomic import write_atomically, write_text_atomically
from trainables.errors import DamagedFile

SUFFIX = ".sha256"


def checksum_file(path: str | Path) -> Path:
    """Where the checksum of ``path`` is kept."""
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def digest(path: str | Path) -> str:
    """SHA-256 of the file's bytes, in hex."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def write_checksum(path: str | Path) -> None:
    """Record the checksum of ``path`` as it is now."""
    write_text_atomically(checksum_file(path), digest(path) + "\n")


def write_verified(path: str | Path, write: Callable[[Path], None]) -> Path:
    """``write_atomically``, then the file's checksum beside it."""
    path = write_atomically(path, write)
    write_checksum(path)
    return path


def damage(path: str | Path) -> str | None:
    """Why ``path`` cannot be trusted, or ``None`` when it is exactly what was written."""
    path = Path(path)
    if not path.is_file():
        return "it is missing"
    try:
        expected = checksum_file(path).read_text().strip()
    except OSError:
        return f"its checksum ({checksum_file(path).name}) is missing"
    return None if digest(path) == expected else "its content changed after it was written"


def verify(path: str | Path) -> Path:
    """``path``, or ``DamagedFile`` naming it and why it cannot be trusted."""
    reason = damage(path)
    if reason is not None:
        raise DamagedFile(f"{path} cannot be trusted: {reason}")
    return Path(path)
