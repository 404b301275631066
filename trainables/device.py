"""Device and speed settings inside a trial: one place that reads the performance config."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Runtime:
    """Where a trial computes and how: bf16 autocast and channels_last apply on CUDA only."""

    device: torch.device
    amp: bool
    channels_last: bool
    compile: bool = False


def runtime(performance: dict, cpus: float = 1.0) -> Runtime:
    """Pick the device and apply thread and cuDNN settings from the ``performance`` config.

    On CPU a trial uses as many threads as its Ray CPU resources (so packed trials do not
    oversubscribe the cores), or ``threads_per_trial`` when set.
    """
    wanted = performance.get("device", "auto")
    cuda = torch.cuda.is_available() and wanted in ("auto", "cuda")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("performance.device is cuda but no CUDA device is visible")
    threads = int(performance.get("threads_per_trial") or max(1, round(cpus)))
    torch.set_num_threads(threads)
    if cuda:
        torch.backends.cudnn.benchmark = bool(performance.get("cudnn_benchmark", True))
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(device=torch.device("cuda" if cuda else "cpu"),
                   amp=cuda and performance.get("amp", "bf16") == "bf16",
                   channels_last=cuda and bool(performance.get("channels_last", True)),
                   compile=cuda and bool(performance.get("compile", False)))


def place(module: torch.nn.Module, rt: Runtime) -> torch.nn.Module:
    """Move a model to the trial's device and memory format."""
    module = module.to(rt.device)
    return module.to(memory_format=torch.channels_last) if rt.channels_last else module
