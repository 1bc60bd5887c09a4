"""The article's plots (accuracy and loss vs epochs, lr vs batch) and a confusion matrix, as PNG files."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def plot_history(epochs: List[Dict[str, float]], batch_lr: Sequence[float], out_dir: Path) -> None:
    out_dir = Path(out_dir)
    x = [e["epoch"] for e in epochs]
    for metric, title in (("acc", "Accuracy vs. No. of epochs"), ("loss", "Loss vs. No. of epochs")):
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(x, [e[f"train_{metric}"] for e in epochs], "-bx", label="train")
        ax.plot(x, [e[f"val_{metric}"] for e in epochs], "-rx", label="validation")
        ax.set(xlabel="epoch", ylabel=metric, title=title)
        ax.legend()
        _save(fig, out_dir / f"{'accuracy' if metric == 'acc' else 'loss'}.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.asarray(batch_lr))
    ax.set(xlabel="batch no.", ylabel="learning rate", title="Learning Rate vs. Batch no.")
    _save(fig, out_dir / "lr.png")


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], path: Path, title: str = "") -> None:
    """matrix[i, j] = count of true class i predicted as j; cells show row-normalised rates."""
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            ax.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title or "Confusion matrix (test)")
    fig.colorbar(im, ax=ax)
    _save(fig, Path(path))
