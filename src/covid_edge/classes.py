"""The classes a model answers and how its output becomes a verdict: the one place that knows
whether a model has two classes and one probability, or N classes and N probabilities.

Two output kinds, recorded in the model card as "output_kind":
- "sigmoid": two classes, one output unit holding P(positive) (release 0.2.0 and every card
  written before this field existed);
- "softmax": N >= 2 classes, one output unit per class, in the card's label order.

The screening decision is the same for both: the verdict is the positive class (covid) when
P(positive) >= the card's threshold (chosen on validation for high sensitivity), otherwise the
most probable of the other classes. For two classes that is exactly the old rule.

Calibration (edge_runtime/calibration.py) rescales the positive-vs-rest logit by a temperature
and shares what is left among the other classes in their own proportions: the decision, the
ranking of the other classes and the threshold all map exactly, for any N.

numpy only: the device imports this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIGMOID, SOFTMAX = "sigmoid", "softmax"
OUTPUT_KINDS = (SIGMOID, SOFTMAX)


class ClassSchemeError(ValueError):
    """Labels, positive label and output kind that do not fit together."""


@dataclass(frozen=True)
class ClassScheme:
    labels: tuple[str, ...]
    positive: str
    output_kind: str = SIGMOID

    def __post_init__(self):
        object.__setattr__(self, "labels", tuple(self.labels))
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ClassSchemeError(f"labels {list(self.labels)}: need two or more distinct names")
        if self.positive not in self.labels:
            raise ClassSchemeError(f"positive label {self.positive!r} is not one of "
                                   f"{list(self.labels)}")
        if self.output_kind not in OUTPUT_KINDS:
            raise ClassSchemeError(f"output kind {self.output_kind!r}: choose "
                                   f"{' or '.join(OUTPUT_KINDS)}")
        if self.output_kind == SIGMOID and len(self.labels) != 2:
            raise ClassSchemeError("a sigmoid output answers exactly two classes; "
                                   f"{len(self.labels)} labels need a softmax output")

    @classmethod
    def from_card(cls, card: dict) -> "ClassScheme":
        labels = tuple(card["labels"])
        kind = card.get("output_kind") or (SIGMOID if len(labels) == 2 else SOFTMAX)
        return cls(labels, card["positive_label"], kind)

    def to_dict(self) -> dict:
        return {"labels": list(self.labels), "positive_label": self.positive,
                "output_kind": self.output_kind}

    @property
    def count(self) -> int:
        return len(self.labels)

    @property
    def positive_index(self) -> int:
        return self.labels.index(self.positive)

    @property
    def output_size(self) -> int:
        """Units of the model's probability output."""
        return 1 if self.output_kind == SIGMOID else self.count

    @property
    def others(self) -> tuple[str, ...]:
        return tuple(label for label in self.labels if label != self.positive)

    def index(self, label: str) -> int:
        return self.labels.index(label)

    def probabilities(self, output) -> np.ndarray:
        """The probability output (dequantized; shape (..., output_size)) -> per-class
        probabilities (..., N) in label order."""
        output = np.asarray(output, dtype=np.float64)
        if self.output_kind == SOFTMAX:
            return output
        positive = output[..., 0] if output.ndim else output
        result = np.empty((*np.shape(positive), 2), dtype=np.float64)
        result[..., self.positive_index] = positive
        result[..., 1 - self.positive_index] = 1.0 - positive
        return result

    def verdict_indices(self, probabilities, threshold: float) -> np.ndarray:
        """(..., N) probabilities -> class indices: positive when P(positive) >= threshold,
        else the most probable other class."""
        p = np.asarray(probabilities, dtype=np.float64)
        others = p.copy()
        others[..., self.positive_index] = -np.inf
        return np.where(p[..., self.positive_index] >= threshold, self.positive_index,
                        np.argmax(others, axis=-1))

    def verdict(self, probabilities, threshold: float) -> str:
        return self.labels[int(self.verdict_indices(probabilities, threshold))]

    def as_dict(self, probabilities) -> dict[str, float]:
        return {label: float(p) for label, p in zip(self.labels, np.asarray(probabilities))}
