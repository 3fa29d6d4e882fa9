"""Pictures people would rather look at than read. matplotlib is imported here only, lazily."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: the Pi and CI have no display
    import matplotlib.pyplot as plt

    return plt


def training_curves(history_rows: list[dict], path: Path) -> None:
    plt = _pyplot()
    shown = [("loss", "loss"), ("accuracy", "accuracy"), ("auc", "ROC AUC"),
             ("sensitivity", "COVID sensitivity")]
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 3.4))
    steps = np.arange(1, len(history_rows) + 1)
    phases = [row["phase"] for row in history_rows]
    for axis, (key, title) in zip(axes, shown):
        for prefix, style in (("", "-o"), ("val_", "--s")):
            values = [row.get(prefix + key, np.nan) for row in history_rows]
            axis.plot(steps, values, style, markersize=3,
                      label="validation" if prefix else "training")
        boundary = next((i for i, phase in enumerate(phases) if phase != phases[0]), None)
        if boundary is not None:
            axis.axvline(boundary + 0.5, color="grey", linewidth=0.8)
            axis.text(boundary + 0.6, axis.get_ylim()[1], "fine-tune", va="top", fontsize=7)
        axis.set_title(title)
        axis.set_xlabel("epoch (head, then fine-tune)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def confusion_matrix(matrix, labels, path: Path, title: str = "") -> None:
    plt = _pyplot()
    matrix = np.asarray(matrix)
    fig, axis = plt.subplots(figsize=(3.6, 3.2))
    axis.imshow(matrix, cmap="Blues")
    for (row, col), count in np.ndenumerate(matrix):
        axis.text(col, row, str(count), ha="center", va="center",
                  color="white" if count > matrix.max() / 2 else "black", fontsize=12)
    axis.set_xticks(range(len(labels)), labels)
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"confusion matrix {title}".strip())
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def prediction_grid(pixels, labels, probabilities, threshold, path: Path, seed: int = 0,
                    count: int = 16, scheme=None) -> None:
    """A grid of test images with truth and prediction; every error is shown first (in red).
    probabilities: per-class (n, N) with `scheme` (classes.ClassScheme), or P(covid) (n,)."""
    plt = _pyplot()
    if scheme is None:
        from .classes import ClassScheme

        scheme = ClassScheme(("normal", "covid"), "covid")
    label_names = scheme.labels
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim == 1:
        probabilities = scheme.probabilities(probabilities[:, None])
    predicted = scheme.verdict_indices(probabilities, threshold)
    probabilities = probabilities[:, scheme.positive_index]
    wrong = np.flatnonzero(predicted != labels)
    right = np.flatnonzero(predicted == labels)
    rng = np.random.default_rng(seed)
    shown = np.concatenate([rng.permutation(wrong)[: count // 2],
                            rng.permutation(right)])[:count]
    columns = 4
    rows = max(1, int(np.ceil(len(shown) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows))
    for axis in np.ravel(axes):
        axis.axis("off")
    for axis, index in zip(np.ravel(axes), shown):
        axis.imshow(pixels[index], cmap="gray", vmin=0, vmax=255)
        ok = predicted[index] == labels[index]
        axis.set_title(f"true {label_names[labels[index]]}\npred {label_names[predicted[index]]} "
                       f"P({scheme.positive})={probabilities[index]:.2f}", fontsize=8,
                       color="black" if ok else "red")
    fig.suptitle(f"test predictions (threshold {threshold:.3f}; errors in red)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
