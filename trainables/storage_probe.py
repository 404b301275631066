"""The worker's half of the check that a run's storage is shared by every node of a cluster
(``orchestrator.preflight.check_shared_storage``): write a probe file where the driver will
look for it."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs as pafs


def write_probe(filesystem: pafs.FileSystem, path: str, content: str) -> str:
    """Write ``content`` to ``path`` in ``filesystem`` (the run's storage) from this node, its
    folders made as needed, and return this node's Ray id, so the driver can say which node's
    file it could not read."""
    import ray

    if isinstance(filesystem, pafs.LocalFileSystem):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())  # on NFS, what the driver reads next must be on the server
    else:
        with filesystem.open_output_stream(path) as stream:
            stream.write(content.encode())
    return ray.get_runtime_context().get_node_id()
