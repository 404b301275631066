"""The cost of making a perturbation, per utterance: the generator's one forward pass against a
per-example baseline's ``steps`` forward and backward passes through every surrogate
(``vmi_samples + 1`` times that for VMI-FGSM), as the evaluation runs them."""

from __future__ import annotations

import time

import torch

from benchmarks.training import DEFENCES, Size, _sync
from trainables.builders import build_attacker, build_target
from trainables.device import Runtime, place
from trainables.settings import AttackSettings, DefenceSpec
from trainables.stages import BASELINES
from trainables.transfer_attacks import AttackParameters, TransferAttack


def _ms_per_utterance(make, x: torch.Tensor, y: torch.Tensor, rt: Runtime,
                      repeats: int) -> float:
    """Mean wall time of ``make(x, y)`` per utterance over ``repeats`` calls, after one
    untimed call (oneDNN and cuDNN choose their kernels on the first)."""
    with torch.no_grad(), torch.autocast(rt.device.type, dtype=torch.bfloat16, enabled=rt.amp):
        make(x, y)
        _sync(rt.device)
        start = time.perf_counter()
        for _ in range(repeats):
            make(x, y)
        _sync(rt.device)
    return 1000 * (time.perf_counter() - start) / (repeats * len(x))


def generation_time(size: Size, rt: Runtime, parameters: AttackParameters = AttackParameters(),
                    utterances: int = 4, repeats: int = 2) -> dict:
    """Milliseconds per utterance to make the perturbation: ``generator`` (the atrous attacker,
    at ``size.batch_size`` utterances a call), and each baseline (``parameters``; 10 steps and
    20 VMI samples by default) from CNN-4 alone and from the three defences together, on
    ``utterances`` utterances a call (an iterative attack's cost is per utterance whatever the
    batch, and at paper sizes a large one would take minutes on a CPU)."""
    torch.manual_seed(0)
    models = [place(build_target(DefenceSpec(d, width=size.defence_width), 7), rt)
              for d in DEFENCES]
    shape = (1, size.frames, 64)
    attacker = place(build_attacker("atrous", AttackSettings(width=size.attacker_width), shape),
                     rt).eval()
    x = torch.randn(size.batch_size, *shape, device=rt.device)
    y = torch.randint(0, 7, (size.batch_size,), device=rt.device)
    if rt.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    result = {"generator_ms_per_utterance":
              _ms_per_utterance(lambda v, _: attacker(v), x, y, rt, repeats)}
    few, labels = x[:utterances], y[:utterances]
    for method in BASELINES:
        for name, surrogates in (("cnn4", models[:1]), ("ensemble", models)):
            attack = TransferAttack(method, surrogates, 0.1, parameters)
            result[f"{method}_{name}_ms_per_utterance"] = _ms_per_utterance(
                attack, few, labels, rt, 1)
    return result
