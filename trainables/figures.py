"""Figure 2 of the paper for one utterance: real log-Mel, perturbation, adversarial log-Mel,
with each defence's prediction on the real and the adversarial input."""

from __future__ import annotations

import json
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


def figure_inputs(attacker, defences: Mapping, x, label: int, classes: list[str],
                  amp: bool) -> dict:
    """``figure2``'s arguments for one utterance ``x`` ``(1, T, F)`` (a tensor) of class index
    ``label``: the attacker's perturbation and each defence's prediction on the real and the
    adversarial input, computed as they train (bf16 autocast with ``amp``)."""
    import torch  # only the trainables draw from models; the report reads saved data

    from trainables.evaluation import perturbation_of

    attacker.eval()
    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        eta = perturbation_of(attacker, x[None], torch.tensor([label], device=x.device))
        predictions = {name: (classes[int(m(x[None]).argmax())],
                              classes[int(m(x[None] + eta).argmax())])
                       for name, m in defences.items()}
    attacker.train()
    return {"real": x[0].float().cpu().numpy(), "perturbation": eta[0, 0].float().cpu().numpy(),
            "label": classes[label], "predictions": predictions}


def save_figure_data(path, real: np.ndarray, perturbation: np.ndarray, label: str,
                     predictions: Mapping[str, tuple[str, str]]) -> None:
    """Write ``figure2``'s arguments to ``path`` (``trial_folder.FIGURE_FILE``), read by
    ``load_figure_data``."""
    with open(path, "wb") as handle:  # a handle: np.savez would add ".npz" to a bare name
        np.savez(handle, real=real, perturbation=perturbation, label=label,
                 predictions=json.dumps(predictions))


def load_figure_data(path) -> dict:
    """``figure2``'s arguments as ``save_figure_data`` wrote them."""
    with np.load(path) as data:
        return {"real": data["real"], "perturbation": data["perturbation"],
                "label": str(data["label"]),
                "predictions": {k: tuple(v)
                                for k, v in json.loads(str(data["predictions"])).items()}}


def save_png(fig: plt.Figure, path) -> None:
    """Write ``fig`` as PNG at ``path`` and close it."""
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
