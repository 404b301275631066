"""Starting or joining Ray: a local instance sized to the machine, or a cluster's address."""

from __future__ import annotations

import os

import ray


def start_ray(address: str | None = None) -> None:
    """Join ``address`` (``auto`` or ``HOST:PORT``) or start a local Ray instance with every
    core and GPU of this machine. The dashboard stays off: nothing listens beyond this machine."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=True)
        where = f"joined the Ray cluster at {address}"
    else:
        ray.init(include_dashboard=False, log_to_driver=True,
                 _temp_dir=os.environ.get("SER_RAY_TMPDIR"))
        where = "started a local Ray instance"
    resources = ray.cluster_resources()
    print(f"{where}: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs",
          flush=True)
