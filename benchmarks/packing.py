"""Aggregate throughput of several trials sharing one device (Ray's fractional resources)."""

from __future__ import annotations

import multiprocessing as mp
import time

from benchmarks.training import Size


def _worker(size: Size, device: str, threads: int, start, queue) -> None:
    import torch

    from trainables.device import runtime
    rt = runtime({"device": device, "threads_per_trial": threads})
    from benchmarks.training import make_loop
    loop = make_loop(size, rt, ("cnn4",))
    loss_fn = loop.stage_loss(loop.plan.stages[0])
    for _ in range(size.warmup):
        loop.step(loss_fn)
    start.wait()
    began = time.perf_counter()
    for _ in range(size.steps):
        loop.step(loss_fn)
    if rt.device.type == "cuda":
        torch.cuda.synchronize()
    queue.put((began, time.perf_counter()))


def packed_throughput(size: Size, device: str, trials: int, threads: int) -> float:
    """Samples per second summed over ``trials`` processes training at once."""
    context = mp.get_context("spawn")
    start = context.Barrier(trials)
    queue = context.Queue()
    workers = [context.Process(target=_worker, args=(size, device, threads, start, queue))
               for _ in range(trials)]
    for w in workers:
        w.start()
    spans = [queue.get() for _ in workers]
    for w in workers:
        w.join()
    wall = max(e for _, e in spans) - min(b for b, _ in spans)
    return trials * size.steps * size.batch_size / wall
