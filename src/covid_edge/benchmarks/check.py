"""Does this device reproduce the model card's reference outputs?

`covid-edge convert` runs the int8 model on a few sample X-rays it ships in samples/ and stores
the raw int8 outputs in the model card. Running the same files here and comparing shows that
the device (its CPU, runtime build and preprocessing libraries) computes what the release
computed, within the card's tolerance, and gives the same verdicts. No labels, no TensorFlow.

The tolerance is measured, not assumed (covid_edge.kernel_sets): the largest difference between
LiteRT's int8 kernel sets on many validation images, plus a noise floor. Within it, a device's
output is one a legitimate int8 implementation could give; a sample whose reference is within
it of a verdict boundary may get another verdict from another kernel set, so its verdict is
reported, not held against the device. Cards written before the measurement (0.2.0) state a
fixed 2-step tolerance and are checked against it.
"""

from __future__ import annotations

import itertools
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import DISCLAIMER
from ..edge_runtime.display import probability_text
from ..image_io import ImageReadError
from ..kernel_sets import closest, steps_between
from ..model_card import CARD_FILENAME, ModelCardError, load_card, sha256_file
from ..preprocess import load_pixels
from .report_format import wrap

SCHEMA = "covid-edge/bench-check/1"
# Float rounding in a probability stored as JSON: not a difference.
EPSILON = 1e-9


class CheckError(Exception):
    """A check that cannot run (no card, no reference outputs, no model file, no runtime, no
    sample images); `details` go into the --json error document as they are."""

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.details = details


def reference_outputs(card: dict, card_path: Path) -> dict:
    reference = card.get("reference_outputs")
    if not reference or not reference.get("images"):
        raise CheckError(f"{card_path} stores no reference outputs: it was written by an older "
                         "`covid-edge convert`; re-run convert to add them")
    if reference.get("variant") not in card["variants"]:
        raise CheckError(f"{card_path}: the reference outputs are for variant "
                         f"{reference.get('variant')!r}, which the card does not list")
    tolerance = reference.get("tolerance") or {}
    if "probability" not in tolerance:
        raise CheckError(f"{card_path}: the reference outputs state no tolerance")
    return reference


def sample_paths(models_dir: Path, reference: dict) -> list[Path]:
    """The sample images the reference outputs were computed on: the classifier's, and the
    lung model's when it ships beside it (its card names them relative to lungs/)."""
    from ..edge_runtime.lungs import LUNG_DIR, LungModelError, load_lung_card

    paths = [models_dir / image["file"] for image in reference["images"]]
    lung_dir = models_dir / LUNG_DIR
    try:
        lung_card, _ = load_lung_card(lung_dir)
        lung_reference = lung_card.get("reference_outputs") or {}
    except LungModelError:
        lung_reference = {}  # no lung model, or a card the lung check itself reports on
    paths += [lung_dir / image["file"] for image in lung_reference.get("images", [])]
    return list(dict.fromkeys(Path(path).resolve() for path in paths))


def check_samples_present(models_dir: Path, reference: dict) -> None:
    """A missing sample is an incomplete install, not a device that computes differently:
    the check cannot run (exit 2), and the error names the files and where they belong."""
    paths = sample_paths(models_dir, reference)
    missing = [path for path in paths if not path.is_file()]
    if not missing:
        return
    folders = {}
    for path in missing:
        folders.setdefault(path.parent, []).append(path.name)
    where = "; ".join(f"from {folder}: {', '.join(names)}" for folder, names in folders.items())
    count = (f"all {len(paths)}" if len(missing) == len(paths)
             else f"{len(missing)} of the {len(paths)}")
    raise CheckError(
        f"{count} sample images the reference outputs were computed on are missing "
        f"({where}): restore samples/ beside the model card (`covid-edge convert` writes it) "
        "or reinstall covid-edge",
        missing_samples=[str(path) for path in missing])


def verdicts_within(classifier, raw, steps: int) -> set[str]:
    """Every verdict an integer output within `steps` of `raw` (each unit on its own) can
    give. The rule (positive at the threshold, else the most probable other class) is monotone
    in each unit, so the units' ends and the reference itself are the outputs to try."""
    from ..edge_runtime.classifier import _dequantize

    raw = np.atleast_1d(np.asarray(raw, dtype=np.int64))
    limits = np.iinfo(np.dtype(classifier.output_details["dtype"]))
    choices = [sorted({int(np.clip(v - steps, limits.min, limits.max)), int(v),
                       int(np.clip(v + steps, limits.min, limits.max))}) for v in raw]
    verdicts = set()
    for candidate in itertools.product(*choices):
        probabilities = classifier.scheme.probabilities(
            _dequantize(np.asarray(candidate), classifier.output_details))
        verdicts.add(classifier.verdict(probabilities))
    return verdicts


def near_boundary(classifier, expected_raw, steps: int) -> str | None:
    """Why the verdict of a sample whose reference output is `expected_raw` may differ between
    int8 kernels that stay within `steps` of it, or None when it cannot."""
    units = int(np.prod(classifier.output_details["shape"]))
    if expected_raw is None or np.size(expected_raw) != units:
        return None  # a reference of another shape: the steps check reports it
    verdicts = verdicts_within(classifier, expected_raw, steps)
    if len(verdicts) < 2:
        return None
    where = ("the threshold" if classifier.positive_label in verdicts
             else "the boundary between " + " and ".join(sorted(verdicts)))
    return (f"near {where} (within the tolerance of {steps} steps): its verdict may differ "
            "between int8 kernels")


def check_image(classifier, card_dir: Path, expected: dict, tolerance: dict,
                integer_output: bool) -> dict:
    """One sample: expected against computed, and why it fails if it does."""
    path = card_dir / expected["file"]
    row = {"file": expected["file"], "label": expected.get("label"),
           "expected_raw": expected.get("raw_output"),
           "expected_probability": expected.get("probability"),
           "raw": None, "probability": None, "steps": None, "probability_difference": None,
           "verdict": None, "expected_verdict": expected.get("verdict"), "passed": False,
           "reason": None, "near_boundary": None,
           "expected_raw_by_kernel_set": expected.get("raw_by_kernel_set"),
           "steps_by_kernel_set": None}
    steps_allowed = int(tolerance.get("raw_output_steps", 0))
    if integer_output:
        row["near_boundary"] = near_boundary(classifier, row["expected_raw"], steps_allowed)
    if not path.is_file():
        row["reason"] = f"{path}: sample file missing (reinstall covid-edge or restore samples/)"
        return row
    if expected.get("sha256") and sha256_file(path) != expected["sha256"]:
        row["reason"] = ("the sample file differs from the one the reference was computed on "
                         "(sha256 mismatch)")
        return row
    try:
        pixels = load_pixels(path, classifier.spec)
    except ImageReadError as exc:
        row["reason"] = str(exc)
        return row
    inference = classifier.run(classifier.prepare_input(pixels))
    # One value per output unit: a sigmoid model's reference is a number, a softmax model's a list.
    raw = [int(v) if integer_output else float(v) for v in inference.raw]
    probability = inference.positive
    calibrated = float(classifier.calibrated(inference.probabilities)[
        classifier.scheme.positive_index])
    row.update({"raw": raw[0] if len(raw) == 1 else raw, "probability": probability,
                "probabilities": classifier.scheme.as_dict(inference.probabilities),
                "calibrated_probability": calibrated,
                "shown_probability": probability_text(probability, calibrated,
                                                      classifier.output_limits()),
                "verdict": classifier.verdict(inference.probabilities)})
    reasons = []
    if integer_output and row["expected_raw"] is not None:
        expected_raw = np.atleast_1d(np.asarray(row["expected_raw"], dtype=np.int64))
        row["steps"] = int(np.max(np.abs(np.asarray(raw, dtype=np.int64) - expected_raw)))
        if row["steps"] > steps_allowed:
            reasons.append(f"{row['steps']} output steps from the reference "
                           f"(tolerance {steps_allowed})")
        if row["expected_raw_by_kernel_set"]:
            row["steps_by_kernel_set"] = {
                name: steps_between(raw, value)
                for name, value in row["expected_raw_by_kernel_set"].items()}
    row["probability_difference"] = abs(probability - float(row["expected_probability"]))
    if row["probability_difference"] > float(tolerance["probability"]) + EPSILON:
        reasons.append(f"probability {probability:.6f}, reference "
                       f"{row['expected_probability']:.6f} (tolerance "
                       f"{float(tolerance['probability']):.6f})")
    # A softmax model's reference holds every class's probability: each is held to it.
    expected_all = expected.get("probabilities") or {}
    differences = {label: abs(row["probabilities"][label] - float(p))
                   for label, p in expected_all.items() if label in row["probabilities"]}
    if differences:
        label = max(differences, key=differences.get)
        row["probability_difference"] = max(row["probability_difference"], differences[label])
        if (differences[label] > float(tolerance["probability"]) + EPSILON
                and label != classifier.positive_label):
            reasons.append(f"P({label}) {row['probabilities'][label]:.6f}, reference "
                           f"{float(expected_all[label]):.6f} (tolerance "
                           f"{float(tolerance['probability']):.6f})")
    # A verdict near a boundary may go either way between legitimate kernels: reported only.
    row["verdict_matches"] = (row["expected_verdict"] is None
                              or row["verdict"] == row["expected_verdict"])
    if not row["verdict_matches"] and not row["near_boundary"]:
        reasons.append(f"verdict {row['verdict']}, reference {row['expected_verdict']}")
    row["passed"] = not reasons
    row["reason"] = "; ".join(reasons) or None
    return row


def run(models_dir: Path, runtime: str | None = None, threads: int | None = None) -> dict:
    """Run the card's reference samples through its reference variant; a dict ready for JSON
    whose "passed" says whether every sample is within tolerance."""
    from ..edge_runtime.classifier import Classifier, ModelError, ModelIntegrityWarning
    from .device_info import describe_device

    card_path = models_dir / CARD_FILENAME
    try:
        card = load_card(card_path)
    except ModelCardError as exc:
        raise CheckError(f"{exc}; pass --models DIR, a folder that `covid-edge convert` "
                         "wrote") from None
    reference = reference_outputs(card, card_path)
    check_samples_present(models_dir, reference)
    variant = reference["variant"]
    model_path = models_dir / card["variants"][variant]["file"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # The reference outputs are the model's own: the guard plays no part.
            classifier = Classifier.load(model_path, runtime=runtime, num_threads=threads,
                                         guard=False)
        except ModelError as exc:
            raise CheckError(str(exc)) from None
    # The reference outputs hold for the exact file they were computed with.
    model_changed = any(issubclass(w.category, ModelIntegrityWarning) for w in caught)
    integer_output = np.issubdtype(np.dtype(classifier.output_details["dtype"]), np.integer)
    tolerance = reference["tolerance"]
    rows = [check_image(classifier, models_dir, expected, tolerance, integer_output)
            for expected in reference["images"]]
    problems = []
    if model_changed:
        problems.append(f"{model_path.name} differs from the file the model card describes "
                        "(sha256 mismatch): its reference outputs do not apply")
    failed = [row for row in rows if not row["passed"]]
    notes = [f"{row['file']}: {row['near_boundary']}"
             + ("" if row.get("verdict_matches", True) else
                f" (here {row['verdict']}, reference {row['expected_verdict']})")
             for row in rows if row.get("near_boundary")]
    kernels = None
    references = {}
    for row in rows:
        for name, value in (row.get("expected_raw_by_kernel_set") or {}).items():
            references.setdefault(name, {})[row["file"]] = value
    if references:
        kernels = closest({row["file"]: row["raw"] for row in rows}, references)
        kernels["described"] = reference.get("kernel_sets") or {}
    if integer_output:
        limits = np.iinfo(np.dtype(classifier.output_details["dtype"]))
        ends = (limits.min, limits.max)
        # A softmax reference is a list, one value per class: saturated when every one is.
        if all(row["expected_raw"] is not None and all(
                int(v) in ends for v in np.atleast_1d(row["expected_raw"])) for row in rows):
            # A saturated output hides any difference short of a different verdict.
            notes.append(f"every reference output is at an end of the int8 range ({limits.min} "
                         f"or {limits.max}): this check can show only gross differences; "
                         "`covid-edge bench drift` on labelled images is the finer test")
    lungs = None
    if (models_dir / "lungs").is_dir():  # the lung model ships beside the classifier
        from . import lungs_check

        lungs = lungs_check.run(models_dir / "lungs", runtime=runtime, threads=threads)
        if not lungs["passed"]:
            problems.append("the lung model's outputs differ from its reference: "
                            + "; ".join(lungs["problems"] + [f"{r['file']}: {r['reason']}"
                                                             for r in lungs["images"]
                                                             if not r["passed"]]))
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "lungs": lungs,
        "disclaimer": DISCLAIMER,
        "model": {"name": card.get("name"), "version": card.get("version"), "variant": variant,
                  "file": str(model_path), "sha256_matches_card": not model_changed},
        "runtime": classifier.runtime.label,
        "threads": threads,
        "device": describe_device(),
        "tolerance": tolerance,
        "kernel_sets": kernels,
        "images": rows,
        "failed": len(failed),
        "problems": problems,
        "notes": notes,
        "passed": not failed and not problems,
    }


def _number(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):  # a softmax output: one value per class
        return "/".join(_number(v, digits) for v in value)
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def _measured_text(tolerance: dict) -> str:
    measured = tolerance.get("measured")
    if not measured:
        return ""
    return (f" (measured: LiteRT's int8 kernel sets differ by up to {measured['max_steps']} "
            f"steps on {measured['images']} validation images, plus "
            f"{measured['noise_floor_steps']})")


def terminal_table(result: dict) -> str:
    device = result["device"]
    tolerance = result["tolerance"]
    model = result["model"]
    where = device.get("board_model") or device.get("cpu_model") or device.get("machine")
    steps = tolerance.get("raw_output_steps")
    # One value per output unit: wider columns for a softmax model's lists.
    expected_width = max([12] + [len(_number(row["expected_raw"])) for row in result["images"]])
    raw_width = max([5] + [len(_number(row["raw"])) for row in result["images"]])
    verdict_width = max([8] + [len(row.get("verdict") or "-") for row in result["images"]])
    lines = [
        wrap(f"covid-edge bench check: {model['name']} {model['version']} {model['variant']} "
             f"({Path(model['file']).name}) on {result['runtime']}, {where}"),
        wrap("tolerance: " + (f"{steps} int8 output steps and " if steps is not None else "")
             + f"{float(tolerance['probability']):.6f} in probability"
             + _measured_text(tolerance)),
        "",
        # What is compared is the raw output (the tool's business); P is shown on the
        # calibrated scale `classify` uses, so the two commands show the same number.
        f"{'result':<6}  {'expected raw':>{expected_width}}  {'raw':>{raw_width}}  "
        f"{'steps':>5}  {'P (classify)':>12}  {'verdict':<{verdict_width}}  image",
    ]
    for row in result["images"]:
        lines.append(
            f"{'PASS' if row['passed'] else 'FAIL':<6}  "
            f"{_number(row['expected_raw']):>{expected_width}}  "
            f"{_number(row['raw']):>{raw_width}}  {_number(row['steps']):>5}  "
            f"{row.get('shown_probability') or '-':>12}  "
            f"{row.get('verdict') or '-':<{verdict_width}}  {row['file']}")
        if row["reason"]:
            lines.append(f"        {row['reason']}")
    kernels = result.get("kernel_sets")
    if kernels and kernels.get("closest"):
        lines += ["", wrap("closest kernel set: " + kernels["closest"]
                           + f" ({kernels['described'].get(kernels['closest'], '')}); largest "
                           "difference from each: " + ", ".join(
                               f"{name} {value}" for name, value in kernels["max_steps"].items())
                           + " steps")]
    lungs = result.get("lungs")
    if lungs:
        passed = sum(row["passed"] for row in lungs["images"])
        worst = max((row.get("max_steps") or 0 for row in lungs["images"]), default=0)
        lines += ["", f"lung model {lungs['model']['name']} {lungs['model']['version']}: "
                      f"{passed}/{len(lungs['images'])} sample masks reproduced (max "
                      f"{worst} int8 steps per pixel, tolerance "
                      f"{lungs['tolerance']['raw_output_steps']})"]
    lines.append("")
    for problem in result["problems"]:
        lines.append(f"problem: {problem}")
    for note in result.get("notes", []):
        lines.append(wrap(f"note: {note}"))
    total = len(result["images"])
    if result["passed"]:
        lines.append(wrap(f"PASS: this device reproduces the reference outputs of all {total} "
                          "sample images within the tolerance, with the reference verdicts "
                          "(but for any near a boundary)."))
    else:
        lines.append(f"FAIL: {result['failed']} of {total} sample images differ from the "
                     "reference outputs beyond the tolerance or in verdict" +
                     (" and the model file is not the released one" if result["problems"]
                      else "") + ".")
    lines += ["", result["disclaimer"]]
    return "\n".join(lines)
