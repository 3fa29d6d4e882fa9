"""Temperature scaling: the probability shown to people, from the probability the model gives.

p_shown = sigmoid(logit(p_model) / T) for P(positive) (the positive-vs-rest logit; for a model
with more than two classes the other classes share 1 - p_shown in their own proportions), with T fitted on the validation split by
`covid-edge convert` (covid_edge.convert.calibrate) and stored in the model card under
"calibration". The map is monotone, so the verdict is unchanged: it is still decided on the
model's probability against the card's threshold, and the threshold shown beside a calibrated
probability is the threshold mapped the same way.

numpy only: the device imports this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CARD_KEY = "calibration"
# An int8 output can say neither 0 nor 1 exactly; probabilities are clipped to half an output
# step (1/256 for a sigmoid output) from either end before taking the logit.
DEFAULT_CLIP = 1.0 / 512.0


def logit(probability, clip: float = DEFAULT_CLIP):
    p = np.clip(np.asarray(probability, dtype=np.float64), clip, 1.0 - clip)
    return np.log(p) - np.log1p(-p)


def sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


@dataclass(frozen=True)
class TemperatureScaling:
    temperature: float = 1.0
    clip: float = DEFAULT_CLIP

    @property
    def identity(self) -> bool:
        return self.temperature == 1.0

    def apply(self, probability):
        """Model probability (a float or an array) -> calibrated probability (same shape)."""
        if self.identity:
            return probability
        calibrated = sigmoid(logit(probability, self.clip) / self.temperature)
        return float(calibrated) if np.ndim(calibrated) == 0 else calibrated

    def apply_all(self, probabilities, positive_index: int):
        """Per-class model probabilities (..., N) -> calibrated (..., N): P(positive) through
        `apply`, the rest shared among the other classes in their own proportions (so their
        ranking, and with it the verdict, is unchanged). For two classes this is `apply`."""
        p = np.asarray(probabilities, dtype=np.float64)
        if self.identity:
            return p
        positive = p[..., positive_index]
        shown = np.asarray(self.apply(positive), dtype=np.float64)
        rest = 1.0 - positive
        count = p.shape[-1] - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(rest[..., None] > 0, p / rest[..., None], 1.0 / count)
        result = share * (1.0 - shown)[..., None]
        result[..., positive_index] = shown
        return result

    @classmethod
    def from_card(cls, card: dict) -> "TemperatureScaling":
        """The card's calibration; identity for a card written before calibration existed."""
        entry = card.get(CARD_KEY)
        if not entry:
            return cls()
        temperature = float(entry["temperature"])
        if not np.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"calibration temperature {temperature} is not positive")
        return cls(temperature, float(entry.get("clip", DEFAULT_CLIP)))
