"""Figures written next to the results."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def normalise_rows(counts: np.ndarray) -> np.ndarray:
    """Confusion counts -> per-true-class recall rows (rows with no samples stay zero)."""
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts, dtype=float), where=totals > 0)


def confusion_figure(counts: np.ndarray, classes: list[str], title: str = "Test confusion matrix"):
    rates = normalise_rows(counts)
    size = 1.0 + 0.7 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(rates, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{rates[i, j]:.2f}\n({int(counts[i, j])})", ha="center", va="center",
                    fontsize=7, color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, label="recall")
    fig.tight_layout()
    return fig


def save_confusion_matrix(counts: np.ndarray, classes: list[str], path: str | Path, title: str = "Test confusion matrix"):
    fig = confusion_figure(counts, classes, title)
    fig.savefig(path, dpi=120)
    plt.close(fig)
