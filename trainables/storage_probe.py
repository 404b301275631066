"""The worker's half of the check that a run's storage is shared by every node of a cluster
(``orchestrator.preflight.check_shared_storage``): write a probe file where the driver will
look for it."""

from __future__ import annotations

import os
from pathlib import Path


def write_probe(path: str, content: str) -> str:
    """Write ``content`` to ``path`` on this node (its folders made as needed) and return this
    node's Ray id, so the driver can say which node's file it could not read."""
    import ray

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())  # on NFS, what the driver reads next must be on the server
    return ray.get_runtime_context().get_node_id()
