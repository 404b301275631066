"""A run's storage: the folder or bucket where Tune keeps its experiments (each trial's
checkpoints, stage records, event files, Figure 2's data and audio examples), read back through
one pyarrow file system whatever it is.

``tune.storage_path`` is a local path (the default ``<results>/runs``, or a folder every node of
a cluster mounts) or a URI that pyarrow's file systems open (``s3://``, ``gs://``, ``file://``).
Tune writes there with the same file system (``RunConfig(storage_filesystem=...)``), and every
part of the driver that reads back what trials wrote (records, checkpoints, the checks
``--resume`` makes, ``--report-only``, the shared first stage) goes through ``Storage``, so a run
on a bucket and a run on a local disk take the same path.

No torch and no Ray here: ``--report-only`` reads a bucket without either.
"""

from __future__ import annotations

import fnmatch
import posixpath
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow
import pyarrow.fs as pafs

from orchestrator.storage_location import check_scheme, is_uri
from trainables.errors import ConfigError


@dataclass(frozen=True)
class Storage:
    """The run's folder ``root`` inside ``filesystem``, and ``uri``, how it is shown (a local
    path, or ``s3://bucket/prefix/<run>`` without the URI's query, which may hold settings).
    Paths inside it are given as parts, joined with ``/`` (``storage.path("attacks", trial)``).
    """

    filesystem: pafs.FileSystem
    root: str
    uri: str

    @classmethod
    def at(cls, folder: Path) -> "Storage":
        """A storage folder on this machine's disk."""
        folder = Path(folder).expanduser().resolve()
        return cls(pafs.LocalFileSystem(), folder.as_posix(), str(folder))

    @classmethod
    def open(cls, location: str, run: str) -> "Storage":
        """The folder ``run`` under ``location`` (a local path or a URI). ``ConfigError`` in
        one line if pyarrow cannot open it (an unknown scheme, a malformed URI, missing
        libraries); whether a bucket is reachable is only known at the first read or write."""
        if not is_uri(location):
            return cls.at(Path(location) / run)
        check_scheme(location)
        try:
            filesystem, path = pafs.FileSystem.from_uri(location)
        except (pyarrow.ArrowException, OSError, ValueError) as error:
            raise ConfigError(f"tune.storage_path: pyarrow cannot open {location!r}: "
                              f"{_first_line(error)}") from None
        shown = urlsplit(location)._replace(query="", fragment="").geturl().rstrip("/")
        if isinstance(filesystem, pafs.LocalFileSystem):
            return cls.at(Path(path) / run)
        return cls(filesystem, posixpath.join(path.rstrip("/"), run), f"{shown}/{run}")

    @property
    def local(self) -> Path | None:
        """The folder on this machine's disk, or ``None`` for a bucket."""
        return Path(self.root) if isinstance(self.filesystem, pafs.LocalFileSystem) else None

    def path(self, *parts: str) -> str:
        """A path inside the storage, as its file system names it."""
        return posixpath.join(self.root, *parts)

    def shown(self, *parts: str) -> str:
        """A path inside the storage as the user names it (for messages)."""
        return posixpath.join(self.uri, *parts) if self.local is None else self.path(*parts)

    def __str__(self) -> str:
        return self.uri

    def exists(self, *parts: str) -> bool:
        return self._info(*parts).type != pafs.FileType.NotFound

    def is_file(self, *parts: str) -> bool:
        return self._info(*parts).type == pafs.FileType.File

    def _info(self, *parts: str) -> pafs.FileInfo:
        return self.filesystem.get_file_info(self.path(*parts))

    def glob(self, folder: str, pattern: str) -> list[str]:
        """The files and folders under ``folder`` (a path relative to the storage) whose path
        relative to it matches ``pattern`` part by part (``*/records/stage-*.json``: a ``*``
        never spans a ``/``), sorted, as paths relative to the storage."""
        wanted = pattern.split("/")
        base = self.path(folder)
        selector = pafs.FileSelector(base, recursive=len(wanted) > 1, allow_not_found=True)
        found = []
        for info in self.filesystem.get_file_info(selector):
            relative = posixpath.relpath(info.path, base).split("/")
            if len(relative) == len(wanted) and all(
                    fnmatch.fnmatchcase(part, want) for part, want in zip(relative, wanted)):
                found.append(posixpath.join(folder, *relative))
        return sorted(found)

    def read_bytes(self, *parts: str) -> bytes:
        with self.filesystem.open_input_stream(self.path(*parts)) as stream:
            return stream.read()

    def read_text(self, *parts: str) -> str:
        return self.read_bytes(*parts).decode()

    def write_text(self, text: str, *parts: str) -> None:
        """Write a small file whole: an object store shows an object only once it is written,
        and a local file is written to a temporary name first, then renamed."""
        if self.local is not None:
            from trainables.atomic import write_text_atomically

            write_text_atomically(Path(self.path(*parts)), text)
            return
        with self.filesystem.open_output_stream(self.path(*parts)) as stream:
            stream.write(text.encode())

    def delete(self, *parts: str) -> None:
        self.filesystem.delete_file(self.path(*parts))

    def download(self, source: str, target: Path) -> Path:
        """Copy the file ``source`` (relative to the storage) to ``target`` on this machine."""
        target.parent.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(self.path(source), str(target), source_filesystem=self.filesystem,
                        destination_filesystem=pafs.LocalFileSystem())
        return target


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:300]


def unreachable(storage: Storage, error: OSError) -> ConfigError:
    """What to say when the storage cannot be read or written at all (a bucket that does not
    exist, no credentials, no network): one line naming it and the cause."""
    return ConfigError(f"{storage} (the run's storage, tune.storage_path) cannot be used: "
                       f"{_first_line(error)}; check the URI, the credentials (for s3://, "
                       "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or an instance profile) and "
                       "the endpoint (AWS_ENDPOINT_URL for an S3-compatible server)")
