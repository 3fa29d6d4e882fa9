"""Screening metrics in plain numpy, so the device can compute them without scikit-learn."""

from __future__ import annotations

import numpy as np


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y_true.sum()), int((~y_true).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # Average rank of each distinct score (1-based), which is how ties earn half credit.
    first_rank = np.cumsum(counts) - counts + 1
    average_rank = first_rank + (counts - 1) / 2.0
    ranks = average_rank[inverse]
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_cross_entropy(y_true: np.ndarray, prob: np.ndarray) -> float:
    prob = np.clip(np.asarray(prob, dtype=np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(y_true, dtype=np.float64)
    return float(-np.mean(y * np.log(prob) + (1 - y) * np.log(1 - prob)))


def binary_metrics(y_true: np.ndarray, prob: np.ndarray, threshold: float) -> dict:
    """Accuracy, loss, ROC AUC, sensitivity (COVID recall), specificity and the confusion matrix.

    A prediction is COVID when prob >= threshold. confusion_matrix rows are the true class,
    columns the predicted one, in the order (normal, covid).
    """
    y = np.asarray(y_true).astype(bool)
    predicted = np.asarray(prob) >= threshold
    tp = int((y & predicted).sum())
    tn = int((~y & ~predicted).sum())
    fp = int((~y & predicted).sum())
    fn = int((y & ~predicted).sum())
    return {
        "n": int(len(y)),
        "n_covid": int(y.sum()),
        "threshold": float(threshold),
        "accuracy": (tp + tn) / max(len(y), 1),
        "loss": binary_cross_entropy(y, prob),
        "roc_auc": roc_auc(y, prob),
        "sensitivity": tp / max(tp + fn, 1),
        "specificity": tn / max(tn + fp, 1),
        "ppv": tp / max(tp + fp, 1),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


def screening_threshold(y_true: np.ndarray, prob: np.ndarray,
                        target_sensitivity: float = 0.98) -> float:
    """The highest threshold that still catches `target_sensitivity` of the COVID cases.

    A missed COVID case costs more than a false alarm in screening, so sensitivity is fixed
    first and specificity is whatever remains; the highest such threshold keeps the most of it.
    """
    positives = np.sort(np.asarray(prob, dtype=np.float64)[np.asarray(y_true).astype(bool)])
    if len(positives) == 0:
        raise ValueError("no COVID cases to choose a threshold on")
    allowed_misses = int(np.floor((1.0 - target_sensitivity) * len(positives)))
    return float(positives[allowed_misses])


def class_metrics(labels: np.ndarray, probabilities: np.ndarray, scheme, threshold: float
                  ) -> dict:
    """Metrics for any number of classes, from per-class probabilities (n, N) and true class
    indices in `scheme.labels` order (classes.ClassScheme).

    The top level is the screening view, positive class vs the rest (`binary_metrics`: what
    0.2.0's cards hold, so two-class reports read as before). Added: the N-class verdict's
    accuracy and N x N confusion matrix (rows true, columns the verdict), and per class its
    one-vs-rest ROC AUC, and the sensitivity and specificity of the verdict being that class.
    """
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    positive = scheme.positive_index
    result = binary_metrics(labels == positive, probabilities[:, positive], threshold)
    verdicts = scheme.verdict_indices(probabilities, threshold)
    count = scheme.count
    matrix = np.zeros((count, count), dtype=np.int64)
    np.add.at(matrix, (labels, verdicts), 1)
    per_class = {}
    for index, label in enumerate(scheme.labels):
        truth, called = labels == index, verdicts == index
        per_class[label] = {
            "n": int(truth.sum()),
            "roc_auc": roc_auc(truth, probabilities[:, index]),
            "sensitivity": float(called[truth].mean()) if truth.any() else float("nan"),
            "specificity": float((~called[~truth]).mean()) if (~truth).any() else float("nan"),
        }
    result.update({"labels": list(scheme.labels),
                   "class_accuracy": float(np.mean(verdicts == labels)) if len(labels) else
                   float("nan"),
                   "class_confusion_matrix": matrix.tolist(),
                   "per_class": per_class})
    return result
