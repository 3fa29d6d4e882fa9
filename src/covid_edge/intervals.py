"""95% intervals for the rates and ROC AUCs the reports quote, in plain numpy (the device has no
scipy): a rate measured on 40 images means little without one.

- Proportions: Wilson score interval (Wilson 1927). Unlike the normal approximation it stays
  inside [0, 1] and behaves at 0/n and n/n, which is where screening rates live.
- ROC AUC: DeLong, DeLong & Clarke-Pearson (1988) variance, computed with the midrank
  algorithm of Sun & Xu (2014, IEEE SPL 21(11)); deterministic, O(n log n).
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """(low, high) of the Wilson score interval for successes/n; (None, None) when n is 0."""
    if n <= 0:
        return None, None
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At 0/n and n/n the bound is exactly 0 or 1; say so rather than 0.9999999999999999.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def rate(successes: int, n: int) -> dict:
    """A proportion with its interval, as every report writes it."""
    low, high = wilson(successes, n)
    return {"k": int(successes), "n": int(n), "rate": successes / n if n else None,
            "low": low, "high": high}


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    _, first, counts = np.unique(sorted_x, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(average, counts)
    return ranks


def delong_auc(y_true, scores, z: float = Z95) -> dict:
    """ROC AUC of `scores` for the positives in `y_true`, with its DeLong 95% interval.

    Returns {"auc", "low", "high", "n_pos", "n_neg"}; auc is None when a class is missing.
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    positives, negatives = s[y], s[~y]
    m, n = len(positives), len(negatives)
    result = {"auc": None, "low": None, "high": None, "n_pos": m, "n_neg": n}
    if m == 0 or n == 0:
        return result
    tx, ty, tz = _midranks(positives), _midranks(negatives), _midranks(
        np.concatenate([positives, negatives]))
    auc = (tz[:m].sum() - m * (m + 1) / 2.0) / (m * n)
    # Structural components: for each positive, the share of negatives it outscores, and
    # for each negative, the share of positives that outscore it.
    v10 = (tz[:m] - tx) / n
    v01 = 1.0 - (tz[m:] - ty) / m
    variance = (np.var(v10, ddof=1) / m if m > 1 else 0.0) + (
        np.var(v01, ddof=1) / n if n > 1 else 0.0)
    half = z * math.sqrt(max(variance, 0.0))
    result.update(auc=float(auc), low=float(max(0.0, auc - half)),
                  high=float(min(1.0, auc + half)))
    return result
