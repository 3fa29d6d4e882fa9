"""The shift suite: how often the verdict changes when the same X-ray reaches the model
another way (re-encoded, exported, rotated, photographed...).

For every image: its verdict as the file is, then the verdict of each perturbed copy, each
copy written as a file and read back by the device's own reader (perturbations.py). Per
perturbation: the verdict flip rate against the unperturbed image (Wilson interval), mean and
max |delta p| on the calibrated scale people see, the change of accuracy, sensitivity,
specificity and ROC AUC against the truth, and how many copies the guard refuses that it
accepted unperturbed. Flips and metrics are the model's own (guard off): a refusal is counted
apart, not as a flip.

Perturbing and decoding run in worker threads (Pillow and numpy release the GIL) while the
interpreter runs in this one. Deterministic: every (perturbation, image) pair has its own
seeded random stream.
"""

from __future__ import annotations

import io
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..edge_runtime.classifier import Classifier
from ..image_io import ImageReadError, read_image
from ..intervals import delong_auc, rate
from .labelled_sets import LabelledImage
from .perturbations import BY_NAME, CATALOGUE, Perturbation, available, generator
from .scoring import Score, decode, report_header, score_decoded

SCHEMA = "covid-edge/bench-shift/1"
ORIGINAL = "original"
# Signed delta p histogram bins for the report's plot (the JSON keeps counts, not every value).
DELTA_BINS = np.linspace(-1.0, 1.0, 41)
# Images perturbed ahead of the interpreter: enough to keep it busy, a bound on memory.
PREFETCH = 8


class ShiftError(Exception):
    """A shift run that cannot start; the message says what to do."""


def choose(names: list[str] | None) -> tuple[list[Perturbation], list[str]]:
    """The perturbations to run (all by default), and notes on those that cannot run here."""
    if names:
        unknown = [n for n in names if n not in BY_NAME]
        if unknown:
            raise ShiftError(f"unknown perturbation(s) {', '.join(unknown)}; "
                             "`covid-edge bench shift --list` shows them")
        chosen = [BY_NAME[n] for n in names]
    else:
        chosen = list(CATALOGUE)
    notes = [f"{p.name} skipped: it needs {p.needs} (pip install '.[dicom]' from a clone)"
             for p in chosen if not available(p)]
    return [p for p in chosen if available(p)], notes


def _perturb_one(classifier: Classifier, image: LabelledImage, index: int,
                 perturbations: list[Perturbation], seed: int) -> dict:
    """Everything but inference for one image: the original and each copy, decoded."""
    decoded = {}
    try:
        decoded[ORIGINAL] = decode(classifier, image.path)
        upright = read_image(image.path,
                             high_bit_depth=classifier.spec.high_bit_window).gray
    except ImageReadError as exc:
        return {"error": str(exc)}
    for perturbation in perturbations:
        number = CATALOGUE.index(perturbation)
        try:
            copy = perturbation.apply(upright, generator(seed, number, index))
            decoded[perturbation.name] = decode(classifier, io.BytesIO(copy.data))
        except ImageReadError as exc:
            decoded[perturbation.name] = exc
    return decoded


def score_all(classifier: Classifier, images: list[LabelledImage],
              perturbations: list[Perturbation], seed: int, workers: int,
              progress=None) -> list[dict]:
    """Per image: {name: Score} for the original and every perturbation, or {"error": ...}."""
    results = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: deque = deque()
        upcoming = iter(enumerate(images))

        def submit_next():
            item = next(upcoming, None)
            if item is not None:
                index, image = item
                pending.append(pool.submit(_perturb_one, classifier, image, index,
                                           perturbations, seed))

        for _ in range(PREFETCH):
            submit_next()
        while pending:
            decoded = pending.popleft().result()
            submit_next()
            if "error" in decoded:
                results.append({"error": decoded["error"]})
            else:
                results.append({name: (Score(None, None, None, error=str(value))
                                       if isinstance(value, Exception)
                                       else score_decoded(classifier, *value))
                                for name, value in decoded.items()})
            if progress is not None:
                progress(1)
    return results


def _metrics(truth: np.ndarray, called: np.ndarray, raw: np.ndarray) -> dict:
    return {"accuracy": rate(int((truth == called).sum()), len(truth)),
            "sensitivity": rate(int((truth & called).sum()), int(truth.sum())),
            "specificity": rate(int((~truth & ~called).sum()), int((~truth).sum())),
            "roc_auc": delong_auc(truth, raw)}


def _transitions(before, after) -> dict[str, int]:
    counts: dict[str, int] = {}
    for b, a in zip(before, after):
        key = f"{b} -> {a}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _delta(after: dict, before: dict) -> float | None:
    a = after.get("rate", after.get("auc"))
    b = before.get("rate", before.get("auc"))
    return None if a is None or b is None else a - b


def summarise(images: list[LabelledImage], results: list[dict],
              perturbations: list[Perturbation], positive: str, classes: list[str]) -> dict:
    ok = [i for i, r in enumerate(results) if "error" not in r and r[ORIGINAL].error is None]
    known = [i for i in ok if images[i].label in classes]
    truth = np.array([images[i].label == positive for i in known], dtype=bool)

    def column(name, field, indices):
        return np.array([getattr(results[i][name], field) for i in indices])

    baseline = _metrics(truth, column(ORIGINAL, "verdict", known) == positive,
                        column(ORIGINAL, "raw_probability", known).astype(np.float64))
    baseline_refused = sum(results[i][ORIGINAL].refused is not None for i in ok)
    rows = []
    for perturbation in perturbations:
        name = perturbation.name
        scored = [i for i in ok if results[i][name].error is None]
        before_p = column(ORIGINAL, "probability", scored).astype(np.float64)
        after_p = column(name, "probability", scored).astype(np.float64)
        before_v, after_v = column(ORIGINAL, "verdict", scored), column(name, "verdict", scored)
        flipped = before_v != after_v
        delta = after_p - before_p
        accepted = [i for i in scored if results[i][ORIGINAL].refused is None]
        newly_refused = sum(results[i][name].refused is not None for i in accepted)
        known_scored = [i for i in scored if images[i].label in classes]
        truth_scored = np.array([images[i].label == positive for i in known_scored], dtype=bool)
        after = _metrics(truth_scored, column(name, "verdict", known_scored) == positive,
                         column(name, "raw_probability", known_scored).astype(np.float64))
        same_images = _metrics(truth_scored,
                               column(ORIGINAL, "verdict", known_scored) == positive,
                               column(ORIGINAL, "raw_probability",
                                      known_scored).astype(np.float64))
        rows.append({
            "name": name, "group": perturbation.group, "description": perturbation.description,
            "n": len(scored), "unreadable": len(ok) - len(scored),
            "flips": rate(int(flipped.sum()), len(scored)),
            "flips_to_positive": int((flipped & (after_v == positive)).sum()),
            "flips_from_positive": int((flipped & (before_v == positive)).sum()),
            # Every change of the verdict, "before -> after": with more than two classes also
            # the changes between the other classes (pneumonia -> normal).
            "flip_transitions": _transitions(before_v[flipped], after_v[flipped]),
            "mean_abs_delta_p": float(np.abs(delta).mean()) if len(delta) else None,
            "max_abs_delta_p": float(np.abs(delta).max()) if len(delta) else None,
            "delta_p_percentiles": ({str(q): float(np.percentile(delta, q))
                                     for q in (1, 5, 25, 50, 75, 95, 99)} if len(delta) else {}),
            "delta_p_histogram": np.histogram(np.clip(delta, -1, 1), DELTA_BINS)[0].tolist(),
            "guard_refused_new": rate(newly_refused, len(accepted)),
            "metrics": after,
            "metric_change": {key: _delta(after[key], same_images[key]) for key in after},
            "flipped_images": [
                {"path": images[i].name, "label": images[i].label,
                 "probability": results[i][ORIGINAL].probability,
                 "perturbed_probability": results[i][name].probability,
                 "verdict": results[i][ORIGINAL].verdict,
                 "perturbed_verdict": results[i][name].verdict}
                for i, f in zip(scored, flipped) if f],
        })
    return {"baseline": {"n": len(ok), "n_labelled": len(known), **baseline,
                         "guard_refused": rate(baseline_refused, len(ok))},
            "perturbations": rows}


def run(classifier: Classifier, images: list[LabelledImage], selection: dict,
        perturbations: list[Perturbation], *, seed: int = 0, workers: int = 2,
        notes: list[str] | None = None, command: str = "", on_start=None,
        progress=None) -> dict:
    if not perturbations:
        raise ShiftError("no perturbation can run here" + (f": {notes[0]}" if notes else ""))
    classes = list(classifier.card["labels"])
    positive = classifier.positive_label
    if on_start is not None:
        on_start(len(images))
    started = time.perf_counter()
    results = score_all(classifier, images, perturbations, seed, workers, progress)
    elapsed = time.perf_counter() - started
    unreadable = [{"path": image.name, "source": image.source,
                   "error": r.get("error") or r[ORIGINAL].error}
                  for image, r in zip(images, results)
                  if "error" in r or r[ORIGINAL].error is not None]
    return {
        **report_header(SCHEMA, classifier, selection, command, elapsed),
        "seed": seed,
        "probability_scale": "calibrated P(positive), as classify shows it",
        **summarise(images, results, perturbations, positive, classes),
        "notes": list(notes or []),
        "unreadable": unreadable,
    }
