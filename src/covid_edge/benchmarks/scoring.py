"""One image scored both ways: what the model says (guard off) and whether the guard would
refuse it (guard on), from a single decode and a single inference.

`classify` stops at the first guard check that refuses an image (nothing else is needed to
answer it); a benchmark needs the model's answer on the refused images too, to report figures
with the guard on and off from one pass. The steps are the classifier's own, in its order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from ..edge_runtime.classifier import Classifier
from ..image_io import ImageReadError, read_image


@dataclass
class Score:
    probability: float | None      # calibrated P(positive), the scale people are shown
    raw_probability: float | None  # the model's own output (verdicts are decided on it)
    verdict: str | None            # the model's verdict, whatever the guard says
    refused: str | None = None     # the guard's reason when it would refuse the image
    error: str | None = None       # the file could not be read
    probabilities: object = None   # every class's calibrated probability (label order)
    raw_probabilities: object = None  # every class's probability before calibration

    def to_dict(self) -> dict:
        entry = asdict(self)
        for key in ("probabilities", "raw_probabilities"):
            if getattr(self, key) is not None:
                entry[key] = [float(p) for p in getattr(self, key)]
        return entry


def report_header(schema: str, classifier: Classifier, selection: dict, command: str,
                  elapsed_s: float) -> dict:
    """What every labelled-image report starts with: which model, where, on what."""
    from datetime import datetime, timezone

    from .. import DISCLAIMER
    from .device_info import describe_device

    return {
        "schema": schema,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "disclaimer": DISCLAIMER,
        "command": command,
        "model": {**classifier.describe(), "labels": list(classifier.card["labels"]),
                  "positive_label": classifier.positive_label},
        "device": describe_device(),
        "runtime": classifier.runtime_label,
        "selection": selection,
        "elapsed_s": round(elapsed_s, 1),
    }


def decode(classifier: Classifier, source: str | Path | BinaryIO):
    """File -> (model-size pixels, colourfulness, stored size, lung result), as
    `classify_file` reads it (crop mode and the lung model included)."""
    spec = classifier.spec
    decoded = read_image(source, target_size=(spec.width, spec.height),
                         high_bit_depth=spec.high_bit_window)
    pixels, lung = classifier.pixels_from_gray(decoded.gray)
    return pixels, decoded.colourfulness, decoded.size, lung


def score_decoded(classifier: Classifier, pixels, colourfulness=None, size=None,
                  lung=None, gray=None) -> Score:
    """The classifier's own steps, none skipped: the guard's checks before inference, the
    inference, the feature test."""
    refused, _ = classifier.refusal_before_inference(pixels, colourfulness, size, lung=lung,
                                                     gray=gray)
    inference = classifier.run(classifier.prepare_input(pixels))
    if refused is None and classifier.guard is not None:
        refused, _ = classifier.guard.feature_reason(inference.features)
    shown = classifier.calibrated(inference.probabilities)
    return Score(float(shown[classifier.scheme.positive_index]), inference.positive,
                 classifier.verdict(inference.probabilities), refused,
                 probabilities=shown, raw_probabilities=inference.probabilities)


def score_source(classifier: Classifier, source: str | Path | BinaryIO) -> Score:
    """Score a file (a path, or bytes in a file object); an unreadable one gets `error`."""
    try:
        decoded = decode(classifier, source)
    except ImageReadError as exc:
        return Score(None, None, None, error=str(exc))
    return score_decoded(classifier, *decoded)
