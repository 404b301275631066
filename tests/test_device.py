"""The runtime's choice of precision and memory format: bf16 and channels_last where the hardware
multiplies bf16 natively (CUDA, or a CPU with AVX-512 BF16 or AMX), fp32 elsewhere."""

import torch

from trainables import device
from trainables.device import cpu_has_fast_bf16, runtime
from trainables.settings import PerformanceSettings


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            return {flag for line in handle if line.startswith("flags")
                    for flag in line.split(":", 1)[1].split()}
    except OSError:
        return set()


def test_fast_bf16_is_detected_from_the_cpu_itself():
    flags = _cpu_flags()
    if not flags:
        return  # not Linux: nothing independent to compare the probe with
    assert cpu_has_fast_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})


def test_a_cpu_with_fast_bf16_gets_autocast_and_channels_last_unless_switched_off():
    rt = runtime(PerformanceSettings(device="cpu"))
    assert (rt.amp, rt.channels_last) == (cpu_has_fast_bf16(),) * 2
    off = runtime(PerformanceSettings(device="cpu", amp="off", channels_last=False))
    assert not off.amp and not off.channels_last
    assert not runtime(PerformanceSettings(device="cpu", compile=True)).compile  # CUDA only


def test_a_cpu_without_bf16_instructions_keeps_fp32(monkeypatch):
    # The one thing a test cannot change is the processor: stand in for one without the
    # instructions by making the probes answer no.
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    assert not device.cpu_has_fast_bf16()
    rt = runtime(PerformanceSettings(device="cpu", amp="bf16", channels_last=True))
    assert not rt.amp and not rt.channels_last
