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


def save_grid_heatmap(grid: dict, path: str | Path, title: str) -> None:
    """A cross-corpus grid (``ser.evidence.grid``): UAR per (trained on, tested on) cell, annotated."""
    values = np.array([[np.nan if c is None else c["score"] for c in row] for row in grid["cells"]])
    fig, ax = plt.subplots(figsize=(1.8 + 1.3 * len(grid["test"]), 1.4 + 0.8 * len(grid["train"])))
    image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(grid["test"])), grid["test"], rotation=30, ha="right")
    ax.set_yticks(range(len(grid["train"])), grid["train"])
    ax.set_xlabel("tested on")
    ax.set_ylabel("trained on")
    ax.set_title(title, fontsize=9)
    for i, row in enumerate(grid["cells"]):
        for j, c in enumerate(row):
            text = "—" if c is None else f"{c['score']:.2f}" + (f"\n[{c['ci95'][0]:.2f}, {c['ci95'][1]:.2f}]" if c["ci95"] else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="black" if c is not None and c["score"] > 0.6 else "white")
    fig.colorbar(image, ax=ax, fraction=0.046, label="UAR")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_uar_bars(labels: list[str], uar: list[float], intervals: list, path: str | Path, chance: list[float]) -> None:
    """One bar per run: test UAR with its 95% interval (where there is one) and chance marked."""
    fig, ax = plt.subplots(figsize=(2 + 0.55 * len(labels), 3.6))
    # max(0, ...): a float32 score may sit a rounding error outside its float64 interval
    low = [max(0.0, u - i[0]) if i else 0 for u, i in zip(uar, intervals)]
    high = [max(0.0, i[1] - u) if i else 0 for u, i in zip(uar, intervals)]
    x = np.arange(len(labels))
    ax.bar(x, uar, yerr=[low, high], capsize=3, color="#4c72b0")
    ax.scatter(x, chance, marker="_", s=300, color="#c44e52", label="chance", zorder=3)
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test UAR")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_attribute_scatter(true: np.ndarray, predicted: np.ndarray, names: list[str], path: str | Path,
                           title: str = "Test attributes") -> None:
    """Predicted against true, one panel per attribute (both on [0, 1]), with the CCC of each
    and the diagonal a perfect model would lie on."""
    from ser.metrics import attribute_sums, ccc_of_sums

    true, predicted = np.asarray(true, dtype=float), np.asarray(predicted, dtype=float)
    ccc = ccc_of_sums(attribute_sums(predicted, true))
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.6), squeeze=False)
    for i, (ax, name) in enumerate(zip(axes[0], names)):
        ax.scatter(true[:, i], predicted[:, i], s=6, alpha=0.5)
        low = min(0.0, true[:, i].min(), predicted[:, i].min()) - 0.05  # every point shown, [0, 1] at least
        high = max(1.0, true[:, i].max(), predicted[:, i].max()) + 0.05
        ax.plot([low, high], [low, high], color="grey", lw=1, ls="--")
        ax.set(xlim=(low, high), ylim=(low, high), xlabel=f"true {name}", ylabel=f"predicted {name}",
               title=f"{name}: CCC {ccc[i]:.3f}")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
