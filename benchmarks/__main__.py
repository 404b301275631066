"""``python -m benchmarks [--quick] [--json FILE]``: speed and memory of the method on whatever
device is present. ``--quick`` runs tiny sizes (under a minute on a CPU)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from benchmarks import features, generation, grid, packing, training
from trainables.atomic import write_text_atomically
from trainables.device import Runtime, cpu_has_fast_bf16
from trainables.transfer_attacks import AttackParameters


def _row(name: str, value) -> str:
    if isinstance(value, float):
        value = f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"  {name:<44} {value}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, under a minute on CPU")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    parser.add_argument("--compile", nargs="*", default=None,
                        metavar="NAME", help="also time torch.compile for these (defence names "
                        "or multi-task); default cnn4 and multi-task, none with --quick; its "
                        "compile time is reported apart")
    args = parser.parse_args(argv)
    size = training.QUICK if args.quick else training.FULL
    if args.compile is None:
        args.compile = [] if args.quick else ["cnn4", "multi-task"]
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    fast = cuda or cpu_has_fast_bf16()
    naive = Runtime(device, amp=False, channels_last=False)
    ours = Runtime(device, amp=fast, channels_last=fast)
    compiled = Runtime(device, amp=fast, channels_last=fast, compile=True)
    report: dict = {"device": torch.cuda.get_device_name() if cuda else f"cpu ({threads} threads)",
                    "torch": torch.__version__, "fast_bf16": fast, "size": vars(size),
                    "training": {}}

    def keep(section: str, value) -> None:
        """Record a finished section, and save the report so far: a run cut short by a time
        limit still leaves every section it measured."""
        report[section] = value
        if args.json:
            write_text_atomically(Path(args.json), json.dumps(report, indent=2))
        print(f"measured {section}", file=sys.stderr, flush=True)

    for name, defences in [*((d, (d,)) for d in training.DEFENCES),
                           ("multi-task", training.DEFENCES)]:
        torch.backends.cudnn.benchmark = False
        base = training.throughput(size, naive, defences)
        torch.backends.cudnn.benchmark = True
        default = training.throughput(size, ours, defences)
        entry = {"naive_fp32": base, "default": default,
                 "speedup": default["samples_per_s"] / base["samples_per_s"]}
        if name in args.compile:
            # The warm-up steps include compilation: its cost beside the per-step gain.
            entry["compiled"] = training.throughput(size, compiled, defences)
            entry["compile_s"] = entry["compiled"]["warmup_s"] - default["warmup_s"]
            entry["compiled_speedup"] = (entry["compiled"]["samples_per_s"]
                                         / base["samples_per_s"])
        keep("training", {**report["training"], name: entry})
    keep("ewc", training.ewc_overhead(size, ours))
    # --quick: two steps and two VMI neighbours, two utterances (the full figures' 10 steps and
    # 20 neighbours from three defences take minutes on a CPU).
    keep("generation", generation.generation_time(size, ours, *(
        (AttackParameters(steps=2, vmi_samples=2), 2, 1) if args.quick else ())))
    keep("memory", training.strategy_memory(size, ours))
    keep("paper_grid", grid.paper_grid(
        {name: entry["default"]["samples_per_s"] for name, entry in report["training"].items()},
        report["ewc"]["fisher_per_sample_s_per_1024"]))
    keep("features", {
        "extraction": features.extraction(*((4, 3) if args.quick else (24, 14)), workers=None),
        "cache_load": features.cache_load(500 if args.quick else 9365,
                                          64 if args.quick else 373)})
    counts = (1, 2) if args.quick else (1, 2, 4)
    per_trial_threads = 1 if not cuda else max(1, threads // 4)
    keep("packing", {f"{n}_trials_samples_per_s": packing.packed_throughput(
        size, device.type, n, per_trial_threads) for n in counts})

    print(f"device: {report['device']}   sizes: {'quick' if args.quick else 'full (paper)'}")
    print("attacker training (samples/s, TFLOP/s):")
    for name, entry in report["training"].items():
        print(_row(f"{name}: naive fp32", f"{entry['naive_fp32']['samples_per_s']:,.1f} /s, "
                   f"{entry['naive_fp32']['tflops']:.3f} TFLOP/s"))
        print(_row(f"{name}: default", f"{entry['default']['samples_per_s']:,.1f} /s, "
                   f"{entry['default']['tflops']:.3f} TFLOP/s, x{entry['speedup']:.2f}"))
        if "compiled" in entry:
            print(_row(f"{name}: default + compile", f"{entry['compiled']['samples_per_s']:,.1f}"
                       f" /s, {entry['compiled']['tflops']:.3f} TFLOP/s, "
                       f"x{entry['compiled_speedup']:.2f}; compile {entry['compile_s']:.0f} s"))
    for section in ("ewc", "generation", "memory", "packing", "paper_grid"):
        print(f"{section}:")
        for key, value in report[section].items():
            print(_row(key, value))
    print("features:")
    for key, value in {**report["features"]["extraction"],
                       **report["features"]["cache_load"]}.items():
        print(_row(key, value))
    return 0


if __name__ == "__main__":
    sys.exit(main())
