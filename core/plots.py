"""Matplotlib figures written straight to PNG files (Agg backend: no display needed).

The per-trial figures (learning curves, confusion matrix) use matplotlib's object API
(`Figure`, no pyplot state), so a worker can draw them in a thread while it evaluates the
model and logs its metrics (core/runner.py)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

FAST_PNG = {"compress_level": 1}  # zlib level 1: a third of the encode time, a few % larger


def save(fig, path: Path, dpi: int = 110) -> Path:
    """Lay the figure out, write it as PNG, free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def warm() -> None:
    """Draw one tiny figure: matplotlib loads its fonts on the first text it renders
    (~0.2 s), which a worker does before its first trial rather than inside it."""
    import io

    fig = Figure(figsize=(1, 1))
    fig.subplots().set_title("warm")
    fig.savefig(io.BytesIO(), format="png", dpi=20)


def learning_curves(history: dict[str, list[float]], path: Path, title: str = "") -> Path:
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if key in history:
                ax.plot(range(len(history[key])), history[key], style, marker="o", ms=3,
                        label=key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        # a fixed corner: loc="best" searches every position against every point
        ax.legend(loc="upper right" if metric == "loss" else "lower right")
    fig.suptitle(title or "learning curves")
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.13, top=0.88, wspace=0.25)
    fig.savefig(path, dpi=90, pil_kwargs=FAST_PNG)
    return path


def confusion_matrix(cm: np.ndarray, names: list[str], path: Path, title: str = "") -> Path:
    n = len(names)
    fig = Figure(figsize=(max(4, 0.6 * n + 2), max(3.5, 0.6 * n + 1.5)))
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    thresh = cm.max() / 2 if cm.size else 0
    # counts on the cells that have any (an empty cell is white): of a 10-class matrix
    # usually a dozen, not 100 text objects, which were half the figure's time
    for i, j in zip(*np.nonzero(cm), strict=True):
        ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                color="white" if cm[i, j] > thresh else "black")
    ax.set_title(title or "confusion matrix")  # counts on the cells: no colorbar
    fig.subplots_adjust(left=0.18, right=0.97, bottom=0.2, top=0.9)
    fig.savefig(path, dpi=90, pil_kwargs=FAST_PNG)
    return path
