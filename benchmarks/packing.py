"""Aggregate throughput of several trials sharing one device (Ray's fractional resources)."""

from __future__ import annotations

import multiprocessing as mp

from benchmarks.training import Size, make_loop, timed_steps


def _worker(size: Size, device: str, threads: int, start, queue) -> None:
    from trainables.device import runtime
    from trainables.settings import PerformanceSettings
    rt = runtime(PerformanceSettings(device=device, threads_per_trial=threads))
    loop = make_loop(size, rt, ("cnn4",))
    queue.put(timed_steps(loop, size, start.wait))  # every process times the same span


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
