"""The guard's frontal-film (lung) check, measured.

    python scripts/lung_guard_eval.py --tune     # tuning: not-frontal-chest + validation split
    python scripts/lung_guard_eval.py            # evaluation: cxr test split + the rest of cxr-more
    python scripts/lung_guard_eval.py --tune --model runs/q999   # another conversion's guard
    python scripts/lung_guard_eval.py --tune --lungs runs/lungs-heads/int8   # another lung model

Every image goes through `Classifier.classify_file`'s own path (decode, lung model, guard,
classifier). --tune also prints the lung geometry's quantiles per set, which the limits in
edge_runtime/lung_guard.py were chosen from; the evaluation sets were not looked at for that.
--csv writes one row per image.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
from pathlib import Path

import numpy as np

from covid_edge.edge_runtime.classifier import Classifier
from covid_edge.edge_runtime.guard import FEATURES_FAR, NOT_CHEST_XRAY
from covid_edge.edge_runtime.lung_guard import NOT_FRONTAL
from covid_edge.edge_runtime.lungs import LungModelError, LungSegmenter
from covid_edge.image_io import ImageReadError, read_image
from covid_edge.intervals import wilson

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
SPLIT = ROOT / "models" / "training" / "split.csv"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


def split_parts(root: str) -> dict[Path, str]:
    """path -> the classifier's split part, for one data folder's (root's) images in the
    split. A one-folder split (0.2.0's) has no root column: all its images are cxr's."""
    with open(SPLIT, newline="", encoding="utf-8") as handle:
        return {SHARED / root / row["path"]: row["split"] for row in csv.DictReader(handle)
                if row.get("root", "cxr") == root}


def split_paths(part: str, root: str = "cxr") -> list[Path]:
    """The `part` images of one data folder in the classifier's split, in its order."""
    return [path for path, its_part in split_parts(root).items() if its_part == part]


def _share(k: int, n: int) -> str:
    low, high = wilson(k, n)
    return f"{k / n:.2%} ({low:.2%}-{high:.2%})" if n else "n/a"


def folder_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def sets(tune: bool) -> dict[str, tuple[list[Path], bool]]:
    """name -> (paths, should be accepted)"""
    if tune:
        nfc = SHARED / "not-frontal-chest"
        return {"lateral (tuning)": (folder_paths(nfc / "lateral"), False),
                "ct (tuning)": (folder_paths(nfc / "ct"), False),
                "knee (tuning)": (folder_paths(nfc / "knee"), False),
                "cxr validation (tuning)": (split_paths("val"), True),
                "cxr-more validation (tuning)": (split_paths("val", "cxr-more"), True)}
    # cxr-more's validation images tune the limits (above), so they are not evaluated on
    tuned = set(split_paths("val", "cxr-more"))
    return {"cxr test": (split_paths("test"), True),
            "cxr-more, not validation": ([p for p in folder_paths(SHARED / "cxr-more")
                                          if p not in tuned], True)}


def guard_and_lungs(classifier: Classifier, path: Path, apply_rule: bool = True):
    """(prediction, lung result) for one image through `classify`'s path; apply_rule=False:
    the guard without its lung check (the lung model still runs). Raises ImageReadError."""
    decoded = read_image(path, target_size=(classifier.spec.width, classifier.spec.height))
    pixels, lung = classifier.pixels_from_gray(decoded.gray)
    lungs = classifier.lungs
    if not apply_rule:
        classifier.lungs = None
    try:
        prediction = classifier.classify_pixels(
            pixels, str(path), colourfulness=decoded.colourfulness, size=decoded.size, lung=lung)
    finally:
        classifier.lungs = lungs
    return prediction, lung


def measure(classifier: Classifier, path: Path, apply_rule: bool = True) -> dict:
    row = {"path": str(path)}
    try:
        prediction, lung = guard_and_lungs(classifier, path, apply_rule)
    except ImageReadError as exc:
        return {**row, "verdict": "unreadable", "reason": str(exc)}
    geometry = lung.geometry
    big = [f for f in geometry.fields if f.area >= classifier.lung_rule.min_field_area]
    pair = classifier.lung_rule.pair(geometry) or {}
    return {**row, "verdict": prediction.verdict, "reason": prediction.reason or "",
            "lung_rule": classifier.lung_rule.reason(geometry) or "",
            "ood_distance": (round(prediction.ood_distance, 3)
                             if prediction.ood_distance is not None else ""),
            "fields": geometry.field_count, "big_fields": len(big),
            "lung_fraction": round(geometry.lung_fraction, 4),
            "balance": round(geometry.balance, 4), "confidence": round(geometry.confidence, 4),
            **{k: round(v, 4) for k, v in pair.items() if k != "balance"},
            "left_area": round(geometry.image_left_area, 4),
            "right_area": round(geometry.image_right_area, 4),
            "lung_ms": round(lung.latency_ms, 3)}


def load_with_lungs(parser, model: Path | None, lungs: Path | None) -> Classifier | None:
    """The classifier with its lung model, or `lungs` instead; None (said on stderr) without
    one. A lung model that cannot be loaded is a usage error."""
    classifier = Classifier.load(model)
    if lungs is not None:
        try:
            classifier.use_lungs(LungSegmenter.load(lungs))
        except LungModelError as exc:
            parser.error(str(exc))
    if classifier.lungs is None:
        print("the lung model is not loaded", file=sys.stderr)
        return None
    return classifier


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tune", action="store_true", help="the tuning sets (default: evaluation)")
    parser.add_argument("--csv", type=Path, help="write one row per image here")
    parser.add_argument("--limit", type=int, default=None, help="first N images of each set")
    parser.add_argument("--without-lungs", action="store_true",
                        help="the guard as it was before the lung check (for comparison)")
    parser.add_argument("--rule", action="append", default=[], metavar="LIMIT=VALUE",
                        help="try another limit of edge_runtime/lung_guard.LungRule, e.g. "
                             "--rule max_top_offset=0.15 (for tuning; repeatable)")
    parser.add_argument("--model", type=Path, default=None,
                        help="a model folder or .tflite file, as `classify --model` takes "
                             "(default: the released model); its guard is measured")
    parser.add_argument("--lungs", type=Path, default=None,
                        help="a lung model folder (convert-lungs' --out) to use instead of the "
                             "one beside the classifier; its card's guard_rule, if any, applies")
    args = parser.parse_args()
    classifier = load_with_lungs(parser, args.model, args.lungs)
    if classifier is None:
        return 1
    try:
        overrides = {k: float(v) for k, v in (item.split("=", 1) for item in args.rule)}
        classifier.lung_rule = dataclasses.replace(classifier.lung_rule, **overrides)
    except (ValueError, TypeError) as exc:
        parser.error(f"--rule LIMIT=VALUE with a LungRule limit and a number: {exc}")
    print(f"lung model: {classifier.lungs.model_path} "
          f"(sha256 {str(classifier.lungs.card.get('sha256'))[:12]})")
    print(f"lung rule: {classifier.lung_rule.to_dict()}"
          + (" (NOT APPLIED: --without-lungs)" if args.without_lungs else ""))
    apply_rule = not args.without_lungs
    rows = []
    for name, (paths, frontal) in sets(args.tune).items():
        measured = [{"set": name, **measure(classifier, p, apply_rule)}
                    for p in paths[:args.limit]]
        rows += measured
        n = len(measured)
        unreadable = [r["path"] for r in measured if r["verdict"] == "unreadable"]
        if unreadable:  # a missing file must not count as accepted
            print(f"{name}: {len(unreadable)} unreadable, e.g. {unreadable[0]}", file=sys.stderr)
            return 1
        refused = sum(r["verdict"] == NOT_CHEST_XRAY for r in measured)
        by_lungs = sum(r["reason"].startswith(NOT_FRONTAL) for r in measured)
        by_features = sum(r["reason"].startswith(FEATURES_FAR) for r in measured)
        lung_rule = sum(bool(r.get("lung_rule")) for r in measured)
        print(f"{name:>26}: {n:5d} images, {'accepted' if frontal else 'refused'} "
              f"{_share(n - refused if frontal else refused, n)}  (guard refused {refused}: "
              f"{by_lungs} by the lung check, {by_features} by the feature check; the lung rule "
              f"alone would refuse {lung_rule})")
        if not args.tune and name.startswith("cxr-more"):
            # The feature check was fitted on the classifier's training images: the images it
            # never trained on are the fairer evaluation.
            parts = split_parts("cxr-more")
            for part in ("train", "test", None):
                group = [r for r in measured if parts.get(Path(r["path"])) == part]
                accepted = sum(r["verdict"] != NOT_CHEST_XRAY for r in group)
                label = f"classifier's {part} split" if part else "not in the split (dropped)"
                print(f"{'':>28}{label}: {len(group)} images, accepted "
                      f"{_share(accepted, len(group))}")
            # Which films the lung check refuses, by collection and label: the manifest's own.
            with open(SHARED / "cxr-more" / "MANIFEST.csv", newline="", encoding="utf-8") as handle:
                kind = {SHARED / "cxr-more" / row["path"]: f"{row['source']} {row['label']}"
                        for row in csv.DictReader(handle)}
            for key in sorted({kind.get(Path(r["path"]), "?") for r in measured}):
                group = [r for r in measured if kind.get(Path(r["path"]), "?") == key]
                lungs_refused = sum(r["reason"].startswith(NOT_FRONTAL) for r in group)
                print(f"{'':>28}{key}: lung check refused {lungs_refused} of {len(group)}")
        if args.tune:
            for key in ("big_fields", "lung_fraction", "balance", "height_offset",
                        "top_offset", "confidence"):
                values = np.array([r[key] for r in measured if key in r], dtype=float)
                if not values.size:  # e.g. no picture of the set has a pair of lung fields
                    continue
                q = np.percentile(values, [0, 1, 5, 25, 50, 75, 95, 99, 100])
                print(f"{'':>28}{key:>14}: " + " ".join(f"{v:.3f}" for v in q)
                      + "  (min 1% 5% 25% 50% 75% 95% 99% max)")
        reasons = {}
        for r in measured:
            if r["reason"]:
                key = r["reason"].split("(")[0].strip()
                reasons[key] = reasons.get(key, 0) + 1
        for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1])[:6]:
            print(f"{'':>28}{count:5d}  {reason}")
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
