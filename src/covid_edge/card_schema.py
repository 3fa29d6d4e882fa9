"""The model card's schema, checked when a card is loaded: one bad field is one clear error.

The runtime trusts the card for what decides a verdict (threshold, labels, preprocessing,
calibration, the guard's limits), so a card that says threshold NaN or 1e308, or names a
positive label that is not a label, would turn every image "normal" without a word. Every field
the runtime reads is checked here for type, finiteness and range, and the error names the field
by its path (`ood_guard.image_checks.detail_max`). Fields the runtime does not read (metrics,
notes, provenance) are left alone: they are for people, and a card may carry more of them.

Written by hand rather than with jsonschema: the base install stays numpy + Pillow + click, and
the rules that matter (finite floats, labels consistent with each other, plain file names) are
not what JSON Schema says well.
"""

from __future__ import annotations

import math
import re

SHA256 = re.compile(r"^[0-9a-f]{64}$")
RESIZE_FILTERS = ("bilinear", "bicubic", "lanczos", "nearest")
# The fine-detail blurs the guard knows (edge_runtime.guard.DETAIL_BLURS).
DETAIL_BLURS = ("gaussian-2", "box-3")
# Larger model inputs than this are no edge model (and would allocate absurd tensors).
MAX_INPUT_SIDE = 4096


class CardSchemaError(ValueError):
    """A card field of the wrong type or out of range; `field` is its dotted path."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def validate(card) -> None:
    """Raise CardSchemaError for the first field the runtime cannot trust."""
    _dict(card, "(the card)")
    labels = _labels(card)
    positive = _str(card, "positive_label")
    if positive not in labels:
        raise CardSchemaError("positive_label", f"{positive!r} is not one of labels {labels}")
    _probability(card, "threshold", required=True)
    _preprocessing(_dict(card.get("preprocessing"), "preprocessing"))
    variants = _dict(card.get("variants"), "variants")
    if not variants:
        raise CardSchemaError("variants", "names no model file")
    for name, entry in variants.items():
        _variant(entry, f"variants.{name}")
    default = card.get("default_variant")
    if default is not None and default not in variants:
        raise CardSchemaError("default_variant", f"{default!r} is not one of the variants")
    if card.get("devices") is not None:
        for name, value in _dict(card["devices"], "devices").items():
            _file_name(value, f"devices.{name}")
    if card.get("edgetpu") is not None:
        entry = _dict(card["edgetpu"], "edgetpu")
        if entry.get("file") is not None:
            _file_name(entry["file"], "edgetpu.file")
    if "calibration" in card:
        _calibration(card["calibration"])
    if "ood_guard" in card:
        _ood_guard(card["ood_guard"])
    if card.get("reference_outputs") is not None:
        _reference_outputs(card["reference_outputs"])


def _labels(card: dict) -> list:
    labels = card.get("labels")
    if not isinstance(labels, list) or len(labels) < 2:
        raise CardSchemaError("labels", "must be a list of at least two class names")
    if not all(isinstance(label, str) and label.strip() for label in labels):
        raise CardSchemaError("labels", "every label must be a non-empty string")
    if len(set(labels)) != len(labels):
        raise CardSchemaError("labels", f"repeats a label: {labels}")
    return labels


def _preprocessing(entry: dict) -> None:
    for key in ("height", "width", "channels"):
        if key in entry:
            value = entry[key]
            if not _is_int(value) or not 1 <= value <= MAX_INPUT_SIDE:
                raise CardSchemaError(f"preprocessing.{key}",
                                      f"must be an integer 1..{MAX_INPUT_SIDE}, got {value!r}")
    if "channels" in entry and entry["channels"] not in (1, 3):
        raise CardSchemaError("preprocessing.channels", f"must be 1 or 3, got {entry['channels']}")
    if "resize_filter" in entry and entry["resize_filter"] not in RESIZE_FILTERS:
        raise CardSchemaError("preprocessing.resize_filter",
                              f"must be one of {', '.join(RESIZE_FILTERS)}, got "
                              f"{entry['resize_filter']!r}")
    if entry.get("reducing_gap") is not None:
        _number(entry, "reducing_gap", "preprocessing", low=1.0, high=1e3)
    for key in ("scale", "offset"):
        if key in entry:
            _number(entry, key, "preprocessing", low=-1e6, high=1e6)
    if entry.get("scale") == 0:
        raise CardSchemaError("preprocessing.scale", "must not be 0")
    if "high_bit_window" in entry and entry["high_bit_window"] not in ("minmax", "percentile"):
        raise CardSchemaError("preprocessing.high_bit_window",
                              f"must be minmax or percentile, got {entry['high_bit_window']!r}")


def _variant(entry, path: str) -> None:
    entry = _dict(entry, path)
    _file_name(entry.get("file"), f"{path}.file")
    if entry.get("sha256") is not None:
        _sha256(entry["sha256"], f"{path}.sha256")


def _calibration(entry) -> None:
    if entry is None:
        return
    entry = _dict(entry, "calibration")
    _number(entry, "temperature", "calibration", low=1e-3, high=1e3, required=True)
    if "clip" in entry:
        _number(entry, "clip", "calibration", low=0.0, high=0.49)


def _ood_guard(entry) -> None:
    entry = _dict(entry, "ood_guard")
    if entry.get("image_checks") is not None:
        checks = _dict(entry["image_checks"], "ood_guard.image_checks")
        for key in ("colourfulness_max", "blank_std_min"):
            if key in checks:
                _number(checks, key, "ood_guard.image_checks", low=0.0, high=1e3)
        for key in ("aspect_ratio_min", "aspect_ratio_max"):
            if key in checks:
                _number(checks, key, "ood_guard.image_checks", low=1e-3, high=1e3)
        for key in ("detail_min", "detail_max"):
            if checks.get(key) is not None:
                _number(checks, key, "ood_guard.image_checks", low=0.0, high=1e3)
        if "detail_blur" in checks and checks["detail_blur"] not in DETAIL_BLURS:
            raise CardSchemaError("ood_guard.image_checks.detail_blur",
                                  f"must be one of {', '.join(DETAIL_BLURS)}, got "
                                  f"{checks['detail_blur']!r}")
        low, high = checks.get("aspect_ratio_min"), checks.get("aspect_ratio_max")
        if low is not None and high is not None and low > high:
            raise CardSchemaError("ood_guard.image_checks.aspect_ratio_min",
                                  f"{low} is above aspect_ratio_max {high}")
    if entry.get("stats_file") is not None:
        _file_name(entry["stats_file"], "ood_guard.stats_file")
    if entry.get("stats_sha256") is not None:
        _sha256(entry["stats_sha256"], "ood_guard.stats_sha256")


def _reference_outputs(entry) -> None:
    """What `bench check` holds a device to: a tolerance it can trust (a NaN or negative one
    would pass or fail everything) and integer reference outputs per kernel set."""
    entry = _dict(entry, "reference_outputs")
    tolerance = _dict(entry.get("tolerance", {}), "reference_outputs.tolerance")
    _number(tolerance, "probability", "reference_outputs.tolerance", low=0.0, high=1.0)
    if "raw_output_steps" in tolerance:
        steps = tolerance["raw_output_steps"]
        if not _is_int(steps) or not 0 <= steps <= 255:
            raise CardSchemaError("reference_outputs.tolerance.raw_output_steps",
                                  f"must be an integer 0..255, got {steps!r}")
    if entry.get("kernel_sets") is not None:
        for name, text in _dict(entry["kernel_sets"], "reference_outputs.kernel_sets").items():
            if not isinstance(text, str):
                raise CardSchemaError(f"reference_outputs.kernel_sets.{name}",
                                      f"must be a string, got {_type_name(text)}")
    images = entry.get("images", [])
    if not isinstance(images, list):
        raise CardSchemaError("reference_outputs.images", f"must be a list, got "
                                                          f"{_type_name(images)}")
    for index, image in enumerate(images):
        path = f"reference_outputs.images.{index}"
        image = _dict(image, path)
        by_kernels = image.get("raw_by_kernel_set")
        if by_kernels is None:
            continue
        for name, raw in _dict(by_kernels, f"{path}.raw_by_kernel_set").items():
            values = raw if isinstance(raw, list) else [raw]
            if not values or not all(_is_int(v) and -32768 <= v <= 65535 for v in values):
                raise CardSchemaError(f"{path}.raw_by_kernel_set.{name}",
                                      f"must be an integer output or a list of them, got "
                                      f"{raw!r}")


# -- field helpers ---------------------------------------------------------------------------

def _dict(value, path: str) -> dict:
    if not isinstance(value, dict):
        raise CardSchemaError(path, f"must be an object, got {_type_name(value)}")
    return value


def _str(card: dict, key: str) -> str:
    value = card.get(key)
    if not isinstance(value, str) or not value:
        raise CardSchemaError(key, f"must be a non-empty string, got {_type_name(value)}")
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(entry: dict, key: str, parent: str, *, low: float, high: float,
            required: bool = False) -> float:
    path = f"{parent}.{key}" if parent else key
    if key not in entry:
        if required:
            raise CardSchemaError(path, "is missing")
        return math.nan
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CardSchemaError(path, f"must be a number, got {_type_name(value)}")
    if not math.isfinite(value):
        raise CardSchemaError(path, f"must be a finite number, got {value}")
    if not low <= value <= high:
        raise CardSchemaError(path, f"{value} is outside {low:g}..{high:g}")
    return float(value)


def _probability(card: dict, key: str, required: bool = False) -> float:
    return _number(card, key, "", low=0.0, high=1.0, required=required)


def _file_name(value, path: str) -> None:
    """A plain file name beside the card: never a path that could point elsewhere."""
    if not isinstance(value, str) or not value:
        raise CardSchemaError(path, f"must be a file name, got {_type_name(value)}")
    if "/" in value or "\\" in value or value in (".", "..") or "\x00" in value:
        raise CardSchemaError(path, f"must be a plain file name beside the card, got {value!r}")


def _sha256(value, path: str) -> None:
    if not isinstance(value, str) or not SHA256.match(value):
        raise CardSchemaError(path, "must be 64 lowercase hexadecimal digits")


def _type_name(value) -> str:
    return {type(None): "null", list: "a list", dict: "an object", str: "a string",
            bool: "a boolean", int: "an integer", float: "a number"}.get(
        type(value), type(value).__name__)
