"""How a probability and a refusal read to a person, the same in every command.

An int8 output moves in steps of 1/256, so its third decimal is noise: int8 probabilities get
two. At the ends of its range an int8 output saturates (87 of 101 COVID verdicts once read
exactly 0.997): there the honest text is ">0.99" or "<0.01" (one word, so tables still split on spaces).
The same words stand for a calibrated probability that would round to 1.00 or 0.00: no
screening model is certain, and a table should not say it is.
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
    decimals = 3 if limits is None else 2  # a float output's third decimal means something
    text = f"{calibrated:.{decimals}f}"
    low, high = limits if limits is not None else (None, None)
    if text == f"{1:.{decimals}f}" or (raw is not None and high is not None and raw >= high):
        return f">{1 - 10 ** -decimals:.{decimals}f}"
    if text == f"{0:.{decimals}f}" or (raw is not None and low is not None and raw <= low):
        return f"<{10 ** -decimals:.{decimals}f}"
    return text


def refusal_text(reason: str | None) -> str:
    return f"{REFUSED}: {reason}" if reason else REFUSED


def decision_rule(scheme) -> str:
    """The screening rule of a classes.ClassScheme in words (the threshold goes beside it)."""
    positive = scheme.positive
    if scheme.count == 2:
        return f"{positive} when P({positive}) >= the threshold, else {scheme.others[0]}"
    return (f"{positive} when P({positive}) >= the threshold, else the most probable of "
            f"{', '.join(scheme.others)}")


def shown_path(path) -> str:
    """A file name as one line of a table or message: control characters (a newline or an
    escape sequence in a name) written as Python escapes, so no name can break a row, forge
    another one or drive the terminal. Printable characters, accents included, stay as they
    are."""
    text = str(path)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
