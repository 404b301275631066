"""``python -m benchmarks [--quick] [--json FILE]``: speed and memory of the method on whatever
device is present. ``--quick`` runs tiny sizes (under a minute on a CPU)."""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from benchmarks import features, grid, packing, training
from trainables.device import Runtime


def _row(name: str, value) -> str:
    if isinstance(value, float):
        value = f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"  {name:<44} {value}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, under a minute on CPU")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    size = training.QUICK if args.quick else training.FULL
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    naive = Runtime(device, amp=False, channels_last=False)
    ours = Runtime(device, amp=cuda, channels_last=cuda)
    report: dict = {"device": torch.cuda.get_device_name() if cuda else f"cpu ({threads} threads)",
                    "size": vars(size), "training": {}}

    for name, defences in [*((d, (d,)) for d in training.DEFENCES),
                           ("multi-task", training.DEFENCES)]:
        torch.backends.cudnn.benchmark = False
        base = training.throughput(size, naive, defences)
        torch.backends.cudnn.benchmark = True
        fast = training.throughput(size, ours, defences)
        report["training"][name] = {"naive_fp32": base, "default": fast,
                                    "speedup": fast["samples_per_s"] / base["samples_per_s"]}
    report["ewc"] = training.ewc_overhead(size, ours)
    report["paper_grid"] = grid.paper_grid(
        {name: entry["default"]["samples_per_s"] for name, entry in report["training"].items()},
        report["ewc"]["fisher_per_sample_s_per_1024"])
    report["memory"] = training.strategy_memory(size, ours)
    report["features"] = {
        "extraction": features.extraction(*((4, 3) if args.quick else (24, 14)), workers=None),
        "cache_load": features.cache_load(500 if args.quick else 9365,
                                          64 if args.quick else 373)}
    counts = (1, 2) if args.quick else (1, 2, 4)
    per_trial_threads = 1 if not cuda else max(1, threads // 4)
    report["packing"] = {f"{n}_trials_samples_per_s": packing.packed_throughput(
        size, device.type, n, per_trial_threads) for n in counts}

    print(f"device: {report['device']}   sizes: {'quick' if args.quick else 'full (paper)'}")
    print("attacker training (samples/s, TFLOP/s):")
    for name, entry in report["training"].items():
        print(_row(f"{name}: naive fp32", f"{entry['naive_fp32']['samples_per_s']:,.1f} /s, "
                   f"{entry['naive_fp32']['tflops']:.3f} TFLOP/s"))
        print(_row(f"{name}: default", f"{entry['default']['samples_per_s']:,.1f} /s, "
                   f"{entry['default']['tflops']:.3f} TFLOP/s, x{entry['speedup']:.2f}"))
    for section in ("ewc", "memory", "packing", "paper_grid"):
        print(f"{section}:")
        for key, value in report[section].items():
            print(_row(key, value))
    print("features:")
    for key, value in {**report["features"]["extraction"],
                       **report["features"]["cache_load"]}.items():
        print(_row(key, value))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
