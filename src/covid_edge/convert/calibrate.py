"""Temperature scaling fitted on the validation split, judged on the test split.

The deployed int8 model's probabilities p become logits log(p / (1 - p)) (p clipped to half an
output step from 0 and 1, as the runtime does), and one temperature T is chosen to minimise the
validation negative log-likelihood of sigmoid(logit / T) (Guo et al. 2017, "On calibration of
modern neural networks"). The NLL is convex in 1/T, so a golden-section search on log T finds
the optimum; no scipy needed. The expected calibration error (ECE) of P(covid) in equal-width
bins is reported before and after, on the test split, with a reliability diagram.

numpy (+ matplotlib for the diagram, imported only there).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..edge_runtime.calibration import DEFAULT_CLIP, TemperatureScaling, logit

ECE_BINS = 15
TEMPERATURE_RANGE = (0.05, 20.0)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean binary cross-entropy of sigmoid(logits / temperature), computed stably."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    y = np.asarray(labels, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(logits: np.ndarray, labels: np.ndarray,
                    bounds: tuple[float, float] = TEMPERATURE_RANGE,
                    tolerance: float = 1e-6) -> float:
    """The temperature minimising the NLL: golden-section search on log T within `bounds`."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    if len(logits) == 0 or len(np.unique(labels)) < 2:
        raise ValueError("temperature scaling needs examples of both classes")
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    ratio = (math.sqrt(5.0) - 1.0) / 2.0

    def loss(log_t: float) -> float:
        return negative_log_likelihood(logits, labels, math.exp(log_t))

    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    loss_a, loss_b = loss(a), loss(b)
    while hi - lo > tolerance:
        if loss_a <= loss_b:
            hi, b, loss_b = b, a, loss_a
            a = hi - ratio * (hi - lo)
            loss_a = loss(a)
        else:
            lo, a, loss_a = a, b, loss_b
            b = lo + ratio * (hi - lo)
            loss_b = loss(b)
    return math.exp((lo + hi) / 2.0)


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
                     ) -> list[dict]:
    """Equal-width bins of P(positive): count, mean probability and observed positive rate."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    index = np.minimum((p * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        chosen = index == b
        count = int(chosen.sum())
        rows.append({"low": b / bins, "high": (b + 1) / bins, "count": count,
                     "mean_probability": float(p[chosen].mean()) if count else None,
                     "positive_rate": float(y[chosen].mean()) if count else None})
    return rows


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """sum over bins of (bin share) * |positive rate - mean probability|, for P(positive)."""
    total = len(probabilities)
    if total == 0:
        raise ValueError("no probabilities")
    return float(sum(row["count"] / total * abs(row["positive_rate"] - row["mean_probability"])
                     for row in reliability_bins(probabilities, labels, bins) if row["count"]))


def reliability_diagram(before: np.ndarray, after: np.ndarray, labels: np.ndarray, path: Path,
                        temperature: float, title: str, bins: int = ECE_BINS) -> Path:
    from ..plots import _pyplot

    plt = _pyplot()
    fig, (axis, counts) = plt.subplots(2, 1, figsize=(4.6, 5.6), sharex=True,
                                       gridspec_kw={"height_ratios": [3, 1]})
    axis.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":",
              label="perfect calibration")
    width = 1.0 / bins
    for probabilities, name, style in ((before, "model output", "s--"),
                                       (after, f"calibrated (T = {temperature:.2f})", "o-")):
        rows = [r for r in reliability_bins(probabilities, labels, bins) if r["count"]]
        ece = expected_calibration_error(probabilities, labels, bins)
        axis.plot([r["mean_probability"] for r in rows], [r["positive_rate"] for r in rows],
                  style, markersize=4, label=f"{name}: ECE {ece:.3f}")
        edges = np.linspace(0, 1, bins + 1)
        histogram, _ = np.histogram(np.clip(probabilities, 0, 1), bins=edges)
        offset = -width / 4 if style.startswith("s") else width / 4
        counts.bar(edges[:-1] + width / 2 + offset, histogram, width=width / 2, alpha=0.7)
    axis.set_ylabel("observed COVID rate")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7, loc="lower right")
    axis.set_title(title, fontsize=9)
    counts.set_yscale("log")
    counts.yaxis.set_major_formatter(plt.matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    counts.set_ylabel("images")
    counts.set_xlabel(f"predicted P(covid), {bins} bins")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def calibrate(val_probabilities: np.ndarray, val_labels: np.ndarray,
              test_probabilities: np.ndarray, test_labels: np.ndarray, threshold: float,
              diagram_path: Path, variant: str = "int8", clip: float = DEFAULT_CLIP,
              bins: int = ECE_BINS, log=print) -> dict:
    """Fit T on validation, measure on test, draw the diagram; the model card's entry."""
    temperature = fit_temperature(logit(val_probabilities, clip), val_labels)
    scaling = TemperatureScaling(temperature, clip)
    test_after = np.asarray(scaling.apply(np.asarray(test_probabilities)))
    val_after = np.asarray(scaling.apply(np.asarray(val_probabilities)))
    entry = {
        "method": "temperature scaling: p_shown = sigmoid(logit(p_model) / T); the verdict is "
                  "still decided on p_model >= threshold (the same decision: the map is "
                  "monotone)",
        "temperature": temperature,
        "clip": clip,
        "threshold": float(scaling.apply(threshold)),
        "model_threshold": float(threshold),
        "bins": bins,
        "ece_definition": f"expected calibration error of P(covid), {bins} equal-width bins",
        "fitted_on": f"validation split, {len(val_labels)} images, {variant} model outputs "
                     "(negative log-likelihood, golden-section search on log T)",
        "evaluated_on": f"test split, {len(test_labels)} images",
        "ece_before": expected_calibration_error(test_probabilities, test_labels, bins),
        "ece_after": expected_calibration_error(test_after, test_labels, bins),
        "validation_ece_before": expected_calibration_error(val_probabilities, val_labels, bins),
        "validation_ece_after": expected_calibration_error(val_after, val_labels, bins),
        "nll_before": negative_log_likelihood(logit(test_probabilities, clip), test_labels, 1.0),
        "nll_after": negative_log_likelihood(logit(test_probabilities, clip), test_labels,
                                             temperature),
        "reliability_diagram": f"{diagram_path.parent.name}/{diagram_path.name}",
    }
    reliability_diagram(np.asarray(test_probabilities), test_after, test_labels, diagram_path,
                        temperature, f"test split, {len(test_labels)} images ({variant})", bins)
    log(f"calibration: temperature {temperature:.3f}; test ECE {entry['ece_before']:.4f} -> "
        f"{entry['ece_after']:.4f}; shown threshold {threshold:.4f} -> {entry['threshold']:.4f}")
    return entry
