"""One registry of models, built by name: ``build("resnet50", in_channels=1, num_classes=7)``.

Every model takes ``(B, in_channels, T, F)`` spectrograms and a ``width`` channel multiplier
(1.0 is the paper's size). Defences return log-softmax ``(B, num_classes)``; the attacker returns
a perturbation of its input's shape in (0, 1).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class decorator: make a model buildable as ``build(name)``."""
    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        REGISTRY[name] = factory
        return factory
    return add


def build(name: str, **options) -> nn.Module:
    """Build the model registered as ``name``: the attackers ``atrous`` and ``universal``, the
    defences ``cnn4``, ``vgg16``, ``resnet50`` and ``crnn``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**options)


def scaled(channels: int, width: float) -> int:
    """Channels after the width multiplier, at least one."""
    return max(1, round(channels * width))


# Imported for their registration.
from trainables.models import atrous, cnn4, crnn, resnet50, universal, vgg16  # noqa: E402,F401
