"""Figure 2 of the paper for one utterance: real log-Mel, perturbation, adversarial log-Mel,
with each defence's prediction on the real and the adversarial input."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def figure2(real: np.ndarray, perturbation: np.ndarray, label: str,
            predictions: Mapping[str, tuple[str, str]]) -> plt.Figure:
    """``real`` and ``perturbation`` are ``(T, F)``; ``predictions`` maps a defence's name to its
    (prediction on real, prediction on adversarial)."""
    adversarial = real + perturbation
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), constrained_layout=True)
    low, high = np.percentile(np.concatenate([real, adversarial]), [1, 99])
    panels = [("real", real, (low, high)), ("perturbation", perturbation, (0, 1)),
              ("adversarial", adversarial, (low, high))]
    for ax, (title, image, limits) in zip(axes, panels):
        shown = ax.imshow(image.T, origin="lower", aspect="auto", cmap="magma",
                          vmin=limits[0], vmax=limits[1])
        ax.set_title(title)
        ax.set_xlabel("frame")
        fig.colorbar(shown, ax=ax, shrink=0.8)
    axes[0].set_ylabel("Mel band")
    lines = [f"{name}: {before} -> {after}" for name, (before, after) in predictions.items()]
    fig.suptitle(f"true: {label}    " + "    ".join(lines), fontsize=9)
    return fig


def figure_to_array(fig: plt.Figure) -> np.ndarray:
    """RGB image ``(H, W, 3)`` uint8 of a figure, for TensorBoard; closes the figure."""
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def save_png(fig: plt.Figure, path) -> None:
    """Write ``fig`` as PNG at ``path`` and close it."""
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
