"""How a probability and a refusal read to a person, the same in every command.

An int8 output moves in steps of 1/256, so its third decimal is noise: int8 probabilities get
two. At the ends of its range an int8 output saturates (87 of 101 COVID verdicts once read
exactly 0.997): there the honest text is ">0.99" or "<0.01" (one word, so tables still split on spaces).
"""

from __future__ import annotations

# What the guard's refusal means, in words that do not contradict a person looking at an
# obvious chest X-ray: the model was not trained on images like this one.
REFUSED = "outside what this model was trained on"


def probability_text(raw: float | None, calibrated: float | None, limits) -> str:
    """raw: the model's own probability; calibrated: the one people see; limits: the
    classifier's `output_limits()` (None for a float model)."""
    if calibrated is None:
        return "-"
    if limits is None:
        return f"{calibrated:.3f}"
    low, high = limits
    if raw is not None and raw >= high:
        return ">0.99"
    if raw is not None and raw <= low:
        return "<0.01"
    return f"{calibrated:.2f}"


def refusal_text(reason: str | None) -> str:
    return f"{REFUSED}: {reason}" if reason else REFUSED


def decision_rule(scheme) -> str:
    """The screening rule of a classes.ClassScheme in words (the threshold goes beside it)."""
    positive = scheme.positive
    if scheme.count == 2:
        return f"{positive} when P({positive}) >= the threshold, else {scheme.others[0]}"
    return (f"{positive} when P({positive}) >= the threshold, else the most probable of "
            f"{', '.join(scheme.others)}")
