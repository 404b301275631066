"""Attacker training throughput, EWC overhead and peak memory per strategy."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from trainables.device import Runtime, place
from trainables.builders import build_attacker, build_target
from trainables.regularisers import StageEnd, build_regulariser
from trainables.regularisers.importance import minibatch_fisher, per_sample_fisher
from trainables.settings import AttackSettings, DefenceSpec, LifelongSettings
from trainables.stage_loop import LoopSettings, StageLoop
from trainables.stages import Plan, Stage


@dataclass(frozen=True)
class Size:
    """How big the benchmark's models and inputs are."""

    frames: int
    attacker_width: float
    defence_width: float
    batch_size: int
    steps: int
    warmup: int
    fisher_samples: int


FULL = Size(frames=373, attacker_width=1.0, defence_width=1.0, batch_size=64, steps=20, warmup=5,
            fisher_samples=256)
QUICK = Size(frames=48, attacker_width=0.125, defence_width=0.0625, batch_size=8, steps=4,
             warmup=1, fisher_samples=16)
DEFENCES = ("cnn4", "vgg16", "resnet50")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_loop(size: Size, rt: Runtime, defences: tuple[str, ...], regulariser: str = "none",
              strength: float = 0.0, n: int = 256) -> StageLoop:
    """A stage loop on random data with the benchmark's sizes."""
    torch.manual_seed(0)
    x = torch.randn(n, 1, size.frames, 64, device=rt.device)
    if rt.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (n,), device=rt.device)
    models = {d: place(build_target(DefenceSpec(d, width=size.defence_width), 7), rt)
              for d in DEFENCES}
    attacker = place(build_attacker("atrous", AttackSettings(width=size.attacker_width),
                                    tuple(x.shape[1:])), rt)
    plan = Plan("bench", (Stage(defences, 10**9),), regulariser)
    return StageLoop(attacker, models, plan, build_regulariser(regulariser, strength), x, y,
                     LoopSettings(AttackSettings(batch_size=size.batch_size),
                                  LifelongSettings(fisher_samples=size.fisher_samples,
                                                   fisher_batch_size=min(64, size.fisher_samples)),
                                  amp=rt.amp, compile=rt.compile))


def step_flops(loop: StageLoop) -> float:
    """FLOPs of one training step, counted by PyTorch."""
    loss_fn = loop.stage_loss(loop.plan.stages[0])
    with FlopCounterMode(display=False) as counter:
        loop.step(loss_fn)
    return float(counter.get_total_flops())


def timed_steps(loop: StageLoop, size: Size, before_timing: Callable[[], None] = lambda: None
                ) -> tuple[float, float]:
    """(start, end) ``perf_counter`` times of ``size.steps`` training steps on the loop's first
    stage, after ``size.warmup`` untimed ones; ``before_timing`` runs between the two."""
    loss_fn = loop.stage_loss(loop.plan.stages[0])
    warmup_start = time.perf_counter()
    for _ in range(size.warmup):
        loop.step(loss_fn)
    _sync(loop.device)
    loop.warmup_seconds = time.perf_counter() - warmup_start  # compile time, when compiling
    before_timing()
    _sync(loop.device)
    start = time.perf_counter()
    for _ in range(size.steps):
        loop.step(loss_fn)
    _sync(loop.device)
    return start, time.perf_counter()


def throughput(size: Size, rt: Runtime, defences: tuple[str, ...]) -> dict:
    """Samples per second, achieved TFLOP/s and peak memory of attacker training steps."""
    loop = make_loop(size, rt, defences)
    # Counted on an eager twin: the counter's module hooks would make a compiled model
    # recompile, and its step would hide the compile time the warm-up is meant to show.
    flops = step_flops(make_loop(size, replace(rt, compile=False), defences) if rt.compile
                       else loop)

    def reset_peak_memory() -> None:
        if rt.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

    start, end = timed_steps(loop, size, reset_peak_memory)
    seconds = end - start
    return {"samples_per_s": size.steps * size.batch_size / seconds,
            "tflops": flops * size.steps / seconds / 1e12,
            "warmup_s": loop.warmup_seconds,
            "peak_memory_mb": (torch.cuda.max_memory_allocated() / 2**20
                               if rt.device.type == "cuda" else None)}


def ewc_overhead(size: Size, rt: Runtime) -> dict:
    """Fisher estimation time (per-sample and minibatch) and the penalty's cost per step."""
    loop = make_loop(size, rt, ("cnn4",), "ewc", 1e4)
    loss_fn = loop.stage_loss(loop.plan.stages[0])
    batches = loop._importance_batches()
    timings = {}
    for name, estimate in (("per_sample", per_sample_fisher), ("minibatch", minibatch_fisher)):
        estimate(loop.attacker, loss_fn, batches[:1])
        _sync(rt.device)
        start = time.perf_counter()
        estimate(loop.attacker, loss_fn, batches)
        _sync(rt.device)
        timings[f"fisher_{name}_s_per_1024"] = (time.perf_counter() - start) * 1024 / \
            size.fisher_samples
    plain = throughput(size, rt, ("cnn4",))["samples_per_s"]
    loop.regulariser.stage_ended(StageEnd(loop.attacker, loss_fn, batches[:1]))
    start, end = timed_steps(loop, size)
    with_penalty = size.steps * size.batch_size / (end - start)
    timings["penalty_ms_per_step"] = 1000 * size.batch_size * (1 / with_penalty - 1 / plain)
    return timings


def strategy_memory(size: Size, rt: Runtime) -> dict:
    """Peak GPU memory of a training step: single-task, lifelong (EWC active), multi-task."""
    if rt.device.type != "cuda":
        return {"note": "peak memory is measured on CUDA only"}
    out = {}
    for name, defences, regulariser in (("single-task", ("cnn4",), "none"),
                                        ("lifelong", ("cnn4",), "ewc"),
                                        ("multi-task", DEFENCES, "none")):
        torch.cuda.empty_cache()
        loop = make_loop(size, rt, defences, regulariser, 1e4)
        loss_fn = loop.stage_loss(loop.plan.stages[0])
        if regulariser != "none":
            loop.regulariser.stage_ended(StageEnd(loop.attacker, loss_fn,
                                                  loop._importance_batches()[:1]))
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(3):
            loop.step(loss_fn)
        torch.cuda.synchronize()
        out[f"{name}_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        del loop
    return out
