"""``python -m benchmarks.node_memory``: what one node must hold for trials at paper scale.

The driver puts the standardised features of every split in Ray's object store once
(``orchestrator.run._trial_data``) and each trial takes them as tensors
(``trainables.tune_io.split_tensors``). This measures, for a DEMoS-sized synthetic set (about
9,400 clips x 373 frames x 64 bands, float32), on a cluster made on this machine (a head that
runs no trial, where the driver puts the features, and a fresh worker node for each count of
trials, both with Ray's token authentication on):

- where the features lie in the object store (``ray.experimental.get_object_locations``): one
  copy on the head, one on each node that runs trials, whatever their number;
- each trial process's memory from ``/proc/<pid>/smaps_rollup`` once it holds the three splits
  as tensors and has read every page of them: its private memory and how much of that the
  features added (zero-copy reads of the shared array add nothing and show as shared memory; a
  private copy adds the features' size);
- the time from starting the trials on a fresh node to every trial holding its tensors.

Linux only (``smaps_rollup``). Sizes and counts are flags; ``--clips 500`` runs in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from trainables.atomic import write_text_atomically
from trainables.trials import TrialData

SPLITS = {"train": 0.6, "dev": 0.2, "test": 0.2}
MIB = 1 << 20


def synthetic_data(clips: int, frames: int, mels: int, seed: int = 0) -> TrialData:
    """Standardised-looking features of ``clips`` clips split 60/20/20, as the driver ships."""
    rng = np.random.default_rng(seed)
    counts = {s: int(clips * f) for s, f in SPLITS.items()}
    x = {s: rng.standard_normal((n, 1, frames, mels), dtype=np.float32)
         for s, n in counts.items()}
    y = {s: rng.integers(0, 7, n).astype(np.int64) for s, n in counts.items()}
    return TrialData(x=x, y=y, classes=[str(c) for c in range(7)],
                     test_names=[f"clip{i}" for i in range(counts["test"])],
                     mean=np.zeros(mels, np.float32), std=np.ones(mels, np.float32))


def smaps(pid: int | str = "self") -> dict[str, int]:
    """A process's memory in bytes (``Rss``, ``Pss``, private and shared) from the kernel."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) * 1024
    return {"rss": fields["Rss"], "pss": fields["Pss"],
            "private": fields["Private_Clean"] + fields["Private_Dirty"],
            "shared": fields["Shared_Clean"] + fields["Shared_Dirty"]}


class Trial:
    """What an attack trial does with the features before its first step."""

    def __init__(self) -> None:
        # A trial's imports, in the baseline: what the features add is measured apart.
        import torch  # noqa: F401

        import trainables.tune_io  # noqa: F401

        self.before = smaps()

    def take(self, data: TrialData) -> dict:
        import torch

        from trainables.device import Runtime
        from trainables.tune_io import split_tensors

        rt = Runtime(torch.device("cpu"), amp=True, channels_last=True)
        self.tensors = {s: split_tensors(data, s, rt) for s in SPLITS}
        ready = time.time()
        shares = all(np.shares_memory(x.numpy(), data.x[s]) for s, (x, _) in self.tensors.items())
        # Read every page, as training and evaluation do: a shared page then shows as shared
        # in this process, a copied one as private.
        for x, _ in self.tensors.values():
            float(x.sum())
        return {"before": self.before, "after": smaps(), "shares_memory": bool(shares),
                "ready": ready, "pid": os.getpid()}


def _ray_start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """``ray start ... --block`` in a session of its own, once its log says Ray started."""
    ray = str(Path(sys.executable).with_name("ray"))
    with open(log, "w") as out:
        process = subprocess.Popen([ray, "start", "--block", "--disable-usage-stats",
                                    "--node-ip-address=127.0.0.1", *args], env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 180
    while "Ray runtime started" not in log.read_text():
        if process.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"ray start failed:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    return process


def measure(data: TrialData, counts: list[int], store_bytes: int) -> dict:
    """Start a head, put ``data``, and for each count a fresh worker node running that many
    trials at once; returns the figures."""
    temp = Path(tempfile.mkdtemp(prefix="ray-mem-"))  # short: Ray's socket paths
    token = temp / "auth_token"
    with os.fdopen(os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    # Before Ray's import, which reads its authentication settings.
    os.environ.update({k: env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")})
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from orchestrator.ray_session import stop_node

    port = 20000 + secrets.randbelow(20000)
    head = _ray_start([f"--port={port}", "--head", "--num-cpus=0", "--include-dashboard=false",
                       f"--object-store-memory={store_bytes}", f"--temp-dir={temp}"],
                      temp / "head.log", env)
    nodes: list[subprocess.Popen] = []
    report: dict = {"features_mib": sum(a.nbytes for a in data.x.values()) / MIB, "runs": []}
    try:
        ray.init(address=f"127.0.0.1:{port}", logging_level="WARNING")
        started = time.time()
        ref = ray.put(data)
        report["put_s"] = time.time() - started
        known = {n["NodeID"] for n in ray.nodes()}
        for count in counts:
            nodes.append(_ray_start([f"--address=127.0.0.1:{port}", f"--num-cpus={count}",
                                     f"--object-store-memory={store_bytes}"],
                                    temp / f"worker-{count}.log", env))
            while not (fresh := [n["NodeID"] for n in ray.nodes()
                                 if n["Alive"] and n["NodeID"] not in known]):
                time.sleep(0.2)
            node = fresh[0]
            known.add(node)
            pin = NodeAffinitySchedulingStrategy(node, soft=False)
            actor = ray.remote(num_cpus=1)(Trial)
            started = time.time()
            trials = [actor.options(scheduling_strategy=pin).remote() for _ in range(count)]
            results = ray.get([t.take.remote(ref) for t in trials])
            where = ray.experimental.get_object_locations([ref])[ref]
            per_trial = [{"pid": r["pid"], "private_mib": r["after"]["private"] / MIB,
                          "added_private_mib": (r["after"]["private"] - r["before"]["private"])
                          / MIB, "pss_mib": r["after"]["pss"] / MIB,
                          "shared_mib": r["after"]["shared"] / MIB,
                          "shares_memory": r["shares_memory"]} for r in results]
            report["runs"].append({
                "trials": count, "start_s": max(r["ready"] for r in results) - started,
                "copies_in_object_store": len(where["node_ids"]),
                "on_this_node": node in where["node_ids"],
                "object_mib": where["object_size"] / MIB, "per_trial": per_trial})
            print(json.dumps(report["runs"][-1]), file=sys.stderr, flush=True)
            for t in trials:
                ray.kill(t)
    finally:
        ray.shutdown()
        for process in [*nodes, head]:
            stop_node(process, grace_s=5)
        shutil.rmtree(temp, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.node_memory",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=9400)
    parser.add_argument("--frames", type=int, default=373)
    parser.add_argument("--mels", type=int, default=64)
    parser.add_argument("--trials", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--json", help="also write the figures as JSON to this file")
    args = parser.parse_args(argv)
    if not Path("/proc/self/smaps_rollup").exists():
        print("needs Linux (/proc/<pid>/smaps_rollup)", file=sys.stderr)
        return 2
    data = synthetic_data(args.clips, args.frames, args.mels)
    size = sum(a.nbytes for a in data.x.values())
    report = measure(data, args.trials, store_bytes=max(2 * size, 256 * MIB))
    report["size"] = {"clips": args.clips, "frames": args.frames, "mels": args.mels}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        write_text_atomically(Path(args.json), text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
