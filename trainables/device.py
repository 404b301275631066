"""Device and speed inside a trial: what the performance settings mean on this machine."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainables.settings import PerformanceSettings


@dataclass(frozen=True)
class Runtime:
    """Where a trial computes and how. bf16 autocast and channels_last apply on CUDA, and on a
    CPU with native bf16 matrix instructions (see ``cpu_has_fast_bf16``); parameters, losses and
    the Fisher stay fp32 either way."""

    device: torch.device
    amp: bool
    channels_last: bool
    compile: bool = False


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX-512 BF16 or AMX tiles).

    oneDNN runs bf16 convolutions on other x86 CPUs too, but by emulation, slower than fp32; so
    the fast path is taken only where the instructions exist. Measured on a 2-core AMD EPYC with
    AVX-512 BF16: the attacker trains 3-4x faster through the defences with bf16 autocast and
    channels_last than in fp32 (``python -m benchmarks``).
    """
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)


def runtime(performance: PerformanceSettings, cpus: float = 1.0) -> Runtime:
    """Pick the device and apply thread and cuDNN settings.

    On CPU a trial uses as many threads as its Ray CPU resources (so packed trials do not
    oversubscribe the cores), or ``threads_per_trial`` when set. ``amp: bf16`` and
    ``channels_last`` take effect on CUDA and on a CPU with fast bf16, and are ignored elsewhere.
    ``compile`` applies on CUDA only.
    """
    cuda = torch.cuda.is_available() and performance.device in ("auto", "cuda")
    if performance.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("performance.device is cuda but no CUDA device is visible")
    torch.set_num_threads(performance.threads_per_trial or max(1, round(cpus)))
    if cuda:
        torch.backends.cudnn.benchmark = performance.cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    fast = cuda or cpu_has_fast_bf16()
    return Runtime(device=torch.device("cuda" if cuda else "cpu"),
                   amp=fast and performance.amp == "bf16",
                   channels_last=fast and performance.channels_last,
                   compile=cuda and performance.compile)


def place(module: torch.nn.Module, rt: Runtime) -> torch.nn.Module:
    """Move a model to the trial's device and memory format."""
    module = module.to(rt.device)
    return module.to(memory_format=torch.channels_last) if rt.channels_last else module
