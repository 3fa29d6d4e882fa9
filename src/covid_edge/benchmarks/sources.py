"""How the released model does on each source of X-rays, with 95% intervals.

A model that scores 0.998 on its own test split can follow the hospital instead of the
disease; only scores per source show it. Every image is scored once (scoring.py): the
model's verdict, and whether the guard would refuse it. Figures come both ways:
- guard on: what a kiosk user gets; refused images have no verdict and are counted apart;
- guard off: what the model itself does on every image.

Per source and pooled, for the images whose label is one of the model's classes: accuracy,
sensitivity, specificity (Wilson intervals) and ROC AUC (DeLong). A source without positives
has no within-source AUC; it gets the AUC of the pooled positives against its negatives (can
the model tell this hospital's normals from the COVID images it has seen sources of?). Labels
the model does not know (pneumonia for a covid/normal model) get "called <class>" rates.

TensorFlow-free; the result is one JSON-ready dict, and the report is drawn from it alone.
"""

from __future__ import annotations

import time

import numpy as np

from ..edge_runtime.classifier import Classifier
from ..intervals import delong_auc, rate
from .labelled_sets import LabelledImage
from .scoring import Score, report_header, score_source

SCHEMA = "covid-edge/bench-sources/1"
POOLED = "pooled"
MODES = ("guard_on", "guard_off")


def score_all(classifier: Classifier, images: list[LabelledImage], progress=None
              ) -> list[Score]:
    scores = []
    for image in images:
        scores.append(score_source(classifier, image.path))
        if progress is not None:
            progress(1)
    return scores


def _kept(scores: list[Score], mode: str) -> list[bool]:
    """Which images have a verdict in this mode."""
    return [s.error is None and (mode == "guard_off" or s.refused is None) for s in scores]


def binary_figures(labels: list[str], scores: list[Score], positive: str,
                   pooled_positive_probabilities: np.ndarray | None = None) -> dict:
    """Accuracy, sensitivity, specificity and ROC AUC of images whose label is a model class
    (the caller passes only those)."""
    truth = np.array([label == positive for label in labels], dtype=bool)
    called = np.array([s.verdict == positive for s in scores], dtype=bool)
    probability = np.array([s.raw_probability for s in scores], dtype=np.float64)
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    figures = {
        "n": len(labels), "n_positive": n_pos, "n_negative": n_neg,
        "accuracy": rate(int((truth == called).sum()), len(labels)),
        "sensitivity": rate(int((truth & called).sum()), n_pos),
        "specificity": rate(int((~truth & ~called).sum()), n_neg),
        "roc_auc": delong_auc(truth, probability),
        "roc_auc_against_pooled_positives": None,
    }
    if n_pos == 0 and n_neg and pooled_positive_probabilities is not None \
            and len(pooled_positive_probabilities):
        negatives = probability[~truth]
        figures["roc_auc_against_pooled_positives"] = delong_auc(
            np.r_[np.ones(len(pooled_positive_probabilities), bool), np.zeros(n_neg, bool)],
            np.r_[pooled_positive_probabilities, negatives])
    return figures


def called_rates(scores: list[Score], classes: list[str]) -> dict:
    return {cls: rate(sum(s.verdict == cls for s in scores), len(scores)) for cls in classes}


def finding_score(score: Score, label: str, classes: list[str], negative: str) -> float:
    """How strongly the model says `label` (its own probability, before calibration): P(label)
    for one of its classes, else 1 - P(negative), "not normal". For a two-class model both are
    P(positive), as in 0.2.0's reports."""
    raw = score.raw_probabilities
    if raw is None:
        return score.raw_probability
    if label in classes:
        return float(raw[classes.index(label)])
    return 1.0 - float(raw[classes.index(negative)])


def _against_negatives(images, scores, source, label, negative, classes) -> dict | None:
    """Within one source, does the model rank this label's images above the source's own
    negatives (normals), by `finding_score`? The within-collection question: the hospital is
    the same on both sides, so only the finding can separate them. Guard off, every readable
    image."""
    if label == negative:
        return None
    members = [(image.label == label, finding_score(s, label, classes, negative))
               for image, s in zip(images, scores)
               if image.source == source and s.error is None
               and image.label in (label, negative)]
    if not members:
        return None
    truth, probability = zip(*members)
    result = delong_auc(np.array(truth), np.array(probability, dtype=np.float64))
    return result if result["auc"] is not None else None


def reference_negative(classes: list[str], positive: str) -> str:
    """The class a finding is compared with inside one source: the other class of a two-class
    model; with more classes the one named "normal", else the first other class."""
    negatives = [c for c in classes if c != positive]
    return "normal" if len(negatives) > 1 and "normal" in negatives else negatives[0]


def summarise(images: list[LabelledImage], scores: list[Score], classes: list[str],
              positive: str) -> dict:
    """Per (source, label) rows and per source / pooled figures, guard on and off."""
    negative = reference_negative(classes, positive)
    sources = list(dict.fromkeys(image.source for image in images))
    groups, per_source = [], []
    for mode in MODES:
        kept = _kept(scores, mode)
        pooled_positive = np.array([s.raw_probability for image, s, k in zip(images, scores, kept)
                                    if k and image.label == positive], dtype=np.float64)
        for source in sources + [POOLED]:
            members = [i for i, image in enumerate(images)
                       if kept[i] and (source == POOLED or image.source == source)]
            in_classes = [i for i in members if images[i].label in classes]
            entry = {"source": source, "mode": mode,
                     **binary_figures([images[i].label for i in in_classes],
                                      [scores[i] for i in in_classes], positive,
                                      pooled_positive if source != POOLED else None)}
            per_source.append(entry)
    for source in sources:
        labels = list(dict.fromkeys(image.label for image in images if image.source == source))
        for label in labels:
            indices = [i for i, image in enumerate(images)
                       if image.source == source and image.label == label]
            readable = [i for i in indices if scores[i].error is None]
            refused = [i for i in readable if scores[i].refused is not None]
            row = {"source": source, "label": label, "known_class": label in classes,
                   "n": len(indices), "unreadable": len(indices) - len(readable),
                   "refused": rate(len(refused), len(readable))}
            for mode in MODES:
                kept = [scores[i] for i in readable
                        if mode == "guard_off" or scores[i].refused is None]
                row[mode] = {"n": len(kept), "called": called_rates(kept, classes)}
            row["roc_auc_against_source_negatives"] = _against_negatives(
                images, scores, source, label, negative, classes)
            groups.append(row)
    return {"groups": groups, "sources": per_source}


def run(classifier: Classifier, images: list[LabelledImage], selection: dict, *,
        command: str = "", on_start=None, progress=None) -> dict:
    classes = list(classifier.card["labels"])
    positive = classifier.positive_label
    if on_start is not None:
        on_start(len(images))
    started = time.perf_counter()
    scores = score_all(classifier, images, progress)
    elapsed = time.perf_counter() - started
    summary = summarise(images, scores, classes, positive)
    unreadable = [{"path": image.name, "source": image.source, "error": s.error}
                  for image, s in zip(images, scores) if s.error is not None]
    return {
        **report_header(SCHEMA, classifier, selection, command, elapsed),
        **summary,
        "unreadable": unreadable,
        "predictions": [{"path": image.name, "source": image.source, "label": image.label,
                         **s.to_dict()} for image, s in zip(images, scores)],
    }
