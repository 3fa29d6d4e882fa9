"""`bench check` for the lung model: does this device compute the release's lung masks?

`covid-edge convert-lungs` runs the int8 lung model on the bundled sample X-rays and stores
its raw int8 outputs (one per pixel) in reference_outputs.npz beside the lung model card;
here the same files run again and each pixel must be within the card's tolerance.
numpy and Pillow only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..image_io import read_grayscale
from ..model_card import sha256_file

REFERENCE_FILENAME = "reference_outputs.npz"
# Until measured (measure_tolerance): a fixed tolerance only LiteRT's XNNPACK on x86-64 meets.
TOLERANCE = {"raw_output_steps": 2, "mask_agreement": 0.999}


def raw_output(segmenter, path: Path) -> np.ndarray:
    """The lung model's raw int8 output for a file, through the device's own path."""
    segmenter.probabilities(segmenter.pixels_for(read_grayscale(path)))
    return segmenter.interpreter.get_tensor(segmenter.output_details["index"])[0, ..., 0].copy()


def write_reference(lung_dir: Path, samples: list[Path], card_filename: str) -> dict:
    """Store the raw outputs for `samples` and describe them in the lung card (in place)."""
    from ..edge_runtime.lungs import LungSegmenter

    lung_dir = Path(lung_dir)
    segmenter = LungSegmenter.load(lung_dir)
    outputs = {path.name: raw_output(segmenter, path) for path in samples}
    with open(lung_dir / REFERENCE_FILENAME, "wb") as handle:
        np.savez_compressed(handle, **outputs)
    card_path = lung_dir / card_filename
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["reference_outputs"] = {
        "file": REFERENCE_FILENAME, "sha256": sha256_file(lung_dir / REFERENCE_FILENAME),
        "images": [{"file": str(Path("..") / path.parent.name / path.name),
                    "sha256": sha256_file(path),
                    "lung_pixels": int((segmenter.probabilities(
                        segmenter.pixels_for(read_grayscale(path)))[0]
                        >= segmenter.threshold).sum())} for path in samples],
        "tolerance": TOLERANCE,
    }
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card["reference_outputs"]


def measure_tolerance(lung_dir: Path, paths: list[Path], progress=None) -> dict:
    """How far LiteRT's int8 kernel sets (covid_edge.kernel_sets) disagree on the lung masks of
    `paths`: per pixel, in output steps, and in the share of pixels on the same side of the
    mask threshold, each the worst over every pair of kernel sets and every image."""
    from .. import kernel_sets
    from ..edge_runtime.lungs import LungSegmenter

    segmenter = LungSegmenter.load(lung_dir, num_threads=1)
    chosen = kernel_sets.runners(segmenter)
    scale, zero_point = segmenter.output_details["quantization"]
    threshold_raw = segmenter.threshold / scale + zero_point
    steps, agreements = [], []
    for path in (progress or (lambda items: items))(list(paths)):
        tensor = segmenter.input_tensor(segmenter.pixels_for(read_grayscale(path)))
        outputs = [runner.run(tensor) for runner in chosen.values()]
        pairs = [(a, b) for i, a in enumerate(outputs) for b in outputs[i + 1:]]
        steps.append(max(int(np.abs(a - b).max()) for a, b in pairs))
        agreements.append(min(float(((a >= threshold_raw) == (b >= threshold_raw)).mean())
                              for a, b in pairs))
    from .device_info import host_line

    return {"kernel_sets": list(chosen), "runtime": segmenter.runtime.label,
            "host": host_line(),
            "images": len(steps),
            "max_steps": max(steps), "p99_steps": float(np.percentile(steps, 99)),
            "min_mask_agreement": round(min(agreements), 6),
            "p1_mask_agreement": round(float(np.percentile(agreements, 1)), 6)}


def store_tolerance(lung_dir: Path, card_filename: str, measured: dict, *, measured_on: str,
                    command: str) -> dict:
    """The lung card's tolerance from `measured`: the largest per-pixel difference plus the
    classifier's noise floor, and the lowest mask agreement seen (never above the fixed 0.999)."""
    from ..kernel_sets import NOISE_FLOOR_STEPS

    card_path = Path(lung_dir) / card_filename
    card = json.loads(card_path.read_text(encoding="utf-8"))
    # Rounded down to 4 decimals: the agreement a device must reach is at most what was seen.
    agreement = min(TOLERANCE["mask_agreement"],
                    np.floor(measured["min_mask_agreement"] * 1e4) / 1e4)
    card["reference_outputs"]["tolerance"] = {
        "raw_output_steps": int(measured["max_steps"]) + NOISE_FLOOR_STEPS,
        "mask_agreement": float(agreement),
        "measured": {"rule": "the largest per-pixel difference between any two kernel sets on "
                             f"any measured image plus {NOISE_FLOOR_STEPS} steps; the lowest "
                             "mask agreement between two kernel sets (at most 0.999)",
                     "noise_floor_steps": NOISE_FLOOR_STEPS, "images_from": measured_on,
                     "command": command, **measured},
    }
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card["reference_outputs"]["tolerance"]


def run(lung_dir: Path, runtime: str | None = None, threads: int | None = None) -> dict:
    """Rows per sample and whether every one is within tolerance."""
    from ..edge_runtime.lungs import LUNG_CARD_FILENAME, LungSegmenter

    card = json.loads((lung_dir / LUNG_CARD_FILENAME).read_text(encoding="utf-8"))
    reference = card.get("reference_outputs")
    if not reference:
        return {"passed": False, "problems": ["the lung model card stores no reference outputs"],
                "images": []}
    segmenter = LungSegmenter.load(lung_dir, runtime=runtime, num_threads=threads or 1)
    problems = []
    if sha256_file(segmenter.model_path) != card.get("sha256"):
        problems.append(f"{segmenter.model_path.name} differs from the file its card describes")
    stored = np.load(lung_dir / reference["file"])
    tolerance = reference["tolerance"]
    zero_point = segmenter.output_details["quantization"][1]
    threshold_raw = segmenter.threshold / segmenter.output_details["quantization"][0] + zero_point
    rows = []
    for image in reference["images"]:
        path = (lung_dir / image["file"]).resolve()
        row = {"file": Path(image["file"]).name, "passed": False, "reason": None}
        if not path.is_file() or sha256_file(path) != image["sha256"]:
            row["reason"] = "sample file missing or changed"
            rows.append(row)
            continue
        raw = raw_output(segmenter, path).astype(np.int32)
        expected = stored[row["file"]].astype(np.int32)
        steps = int(np.abs(raw - expected).max())
        agreement = float(((raw >= threshold_raw) == (expected >= threshold_raw)).mean())
        row.update({"max_steps": steps, "mask_agreement": round(agreement, 6)})
        reasons = []
        if steps > tolerance["raw_output_steps"]:
            reasons.append(f"{steps} output steps from the reference (tolerance "
                           f"{tolerance['raw_output_steps']})")
        if agreement < tolerance["mask_agreement"]:
            reasons.append(f"mask agreement {agreement:.4f} < {tolerance['mask_agreement']}")
        row["passed"] = not reasons
        row["reason"] = "; ".join(reasons) or None
        rows.append(row)
    return {"model": {"name": card.get("name"), "version": card.get("version"),
                      "file": str(segmenter.model_path)},
            "runtime": segmenter.runtime.label, "tolerance": tolerance, "images": rows,
            "problems": problems,
            "passed": not problems and all(row["passed"] for row in rows)}
