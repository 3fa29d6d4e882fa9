"""Occlusion heatmaps of held-out test X-rays, and a survey of where the model looks.

    PYTHONPATH=src python scripts/explain_gallery.py            # the released model in models/
    PYTHONPATH=src python scripts/explain_gallery.py --model runs/smoke/export --survey 0

Uses the model's own test split (training/split.csv beside the model card: no image the model
was trained or tuned on) and writes into docs/explain/:
- a heatmap for --per-class random test images of each label, and for --errors misclassified
  ones of each label (the int8 model's mistakes are found by running it on the whole split);
- with --survey N, the maps of N more random test images per label: where each map's strongest
  red (toward covid) and blue (toward normal) region lies, and the average map per label,
  drawn over the average X-ray;
- a corner test over the whole test split: the verdicts with the top-right (and, as a control,
  the top-left) quarter-square of each X-ray blurred;
- top-right-corners.png, the top-right quarter of 16 normal and 16 covid test X-rays (normal
  rows first), which is where the normal maps point;
- figures.json with every number, including the cost (inferences, milliseconds).
It rewrites only the blocks between the gallery and survey markers in docs/explain.md; the
prose around them is written by a person who looked at the pictures.
"""

from __future__ import annotations

import argparse
import os
import dataclasses
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from covid_edge import DISCLAIMER  # noqa: E402
from covid_edge.dataset import Item, item_path, read_split  # noqa: E402
from covid_edge.edge_runtime.classifier import Classifier, default_threads  # noqa: E402
from covid_edge.edge_runtime.explain import (default_patch, explain_pixels,  # noqa: E402
                                             occluder_pixels, render)
from covid_edge.edge_runtime.explain_lungs import attach_lungs  # noqa: E402
from covid_edge.image_io import read_grayscale  # noqa: E402
from covid_edge.preprocess import load_pixels  # noqa: E402

MARKERS = {"gallery": ("<!-- gallery:start -->", "<!-- gallery:end -->"),
           "survey": ("<!-- survey:start -->", "<!-- survey:end -->"),
           "corners": ("<!-- corners:start -->", "<!-- corners:end -->")}
REGIONS = ("top-left", "top-right", "bottom-left", "bottom-right", "border", "inner")


def default_model() -> Path:
    released = REPO / "models"
    return released if (released / "model_card.json").is_file() else REPO / "runs/smoke/export"


def region(y: int, x: int, height: int, width: int) -> str:
    """Where a peak lies: a corner quarter-square, the outer eighth, or inside."""
    top, left = y < height / 4, x < width / 4
    bottom, right = y >= height * 3 / 4, x >= width * 3 / 4
    if (top or bottom) and (left or right):
        return f"{'top' if top else 'bottom'}-{'left' if left else 'right'}"
    if min(y, x, height - 1 - y, width - 1 - x) < min(height, width) / 8:
        return "border"
    return "inner"


def test_items(split_csv: Path, labels) -> dict[str, list[Item]]:
    items, _, split = read_split(split_csv)
    return {label: sorted((item for item, part in zip(items, split)
                           if part == "test" and item.label == label), key=lambda i: i.path)
            for label in labels}


def find_errors(classifier: Classifier, data, test: dict[str, list[Item]]
                ) -> dict[str, list[Item]]:
    """Test images whose verdict is not their true label (the screening rule, every class)."""
    wrong = {}
    for label, items in test.items():
        wrong[label] = []
        for item in items:
            probabilities = classifier.run(classifier.prepare_input(
                load_pixels(item_path(data, item), classifier.spec))).probabilities
            if classifier.verdict(probabilities) != label:
                wrong[label].append(item)
    return wrong


def _suffix(occluder: str) -> str:
    return "" if occluder == "blur" else f"-{occluder}"


def explain_one(classifier, data, item: Item, occluder: str):
    # Evidence for the positive class (covid) on every image, as in 0.2.0's gallery: where
    # the covid evidence lies is the shortcut question. With the lung fields (contour, share
    # of the evidence inside them).
    return attach_lungs(classifier, explain_pixels(
        classifier, load_pixels(item_path(data, item), classifier.spec), occluder=occluder,
        target=classifier.positive_label))


def gallery(classifier, data, out, chosen, occluder) -> list[dict]:
    rows = []
    for item, label, note in chosen:
        relative = item.path
        explanation = explain_one(classifier, data, item, occluder)
        png = f"{label}-{Path(relative).stem}{_suffix(occluder)}.png"
        render(explanation, read_grayscale(item_path(data, item)), relative).save(out / png)
        rows.append({"file": relative, "label": label, "note": note, "png": png,
                     **explanation.figures()})
        print(f"{label:>6} {Path(relative).name:<22} {explanation.verdict:<6} "
              f"P={explanation.probability:.3f} {note:<14} {explanation.inferences} inferences "
              f"{explanation.elapsed_ms:6.0f} ms  max drop {explanation.figures()['max_drop']:.2f}"
              f" max rise {explanation.figures()['max_rise']:.2f} ({explanation.score})"
              f" in lungs {_share(explanation.figures().get('positive_evidence_in_lungs'))}")
    return rows


def _share(value) -> str:
    return "-" if value is None else f"{value:.0%}"


def survey(classifier, data, out, test, count, seed, occluder) -> dict:
    """Where the strongest evidence lies over many maps, and the average map per label."""
    result = {}
    for label in reversed(classifier.labels):
        sample = random.Random(seed).sample(test[label], min(count, len(test[label])))
        red, blue, maps, xrays, correct = Counter(), Counter(), [], [], 0
        in_lungs = []
        last = None
        for item in sample:
            last = explain_one(classifier, data, item, occluder)
            height, width = last.heatmap.shape
            red[region(*np.unravel_index(np.argmax(last.heatmap), last.heatmap.shape),
                       height, width)] += 1
            blue[region(*np.unravel_index(np.argmin(last.heatmap), last.heatmap.shape),
                        height, width)] += 1
            maps.append(last.heatmap)
            share = last.figures().get("positive_evidence_in_lungs")
            if share is not None:
                in_lungs.append(share)
            xrays.append(last.pixels.astype(np.float64))
            correct += last.verdict == label
        mean_map = np.mean(maps, axis=0).astype(np.float32)
        quarter_h, quarter_w = mean_map.shape[0] // 4, mean_map.shape[1] // 4
        corner = float(mean_map[:quarter_h, -quarter_w:].mean())
        eighth = min(mean_map.shape) // 8
        inner = float(mean_map[eighth:-eighth, eighth:-eighth].mean())
        average_xray = Image.fromarray(np.rint(np.mean(xrays, axis=0)).astype(np.uint8))
        average = dataclasses.replace(last, heatmap=mean_map, lung_mask=None)
        png = f"average-{label}{_suffix(occluder)}.png"
        render(average, average_xray, f"average map of {len(sample)} {label} test X-rays "
               f"({occluder} occluder), over their average image",
               title=f"AVERAGE OF {len(sample)} {label.upper()} TEST X-RAYS").save(out / png)
        result[label] = {"images": len(sample), "correct": correct,
                         "red_peak_regions": {r: red[r] for r in REGIONS},
                         "blue_peak_regions": {r: blue[r] for r in REGIONS},
                         "mean_map_top_right_quarter": round(corner, 3),
                         "mean_map_inner": round(inner, 3), "png": png,
                         "positive_evidence_in_lungs_mean": (round(float(np.mean(in_lungs)), 3)
                                                             if in_lungs else None)}
        print(f"survey {label}: {len(sample)} images, {correct} correct; strongest red in "
              f"{dict(red)}; strongest blue in {dict(blue)}; average map top-right "
              f"{corner:+.2f}, inner {inner:+.2f} ({last.score}); positive evidence inside "
              f"the lung fields {_share(np.mean(in_lungs) if in_lungs else None)} on average")
    return result


def corner_test(classifier, data, test: dict[str, list[Item]]) -> dict:
    """What the model answers when one corner quarter-square of every test X-ray is blurred
    (the map's occluder), the top-right corner against the top-left as a control."""
    result = {}
    height, width = classifier.spec.height, classifier.spec.width
    corners = {"as they are": None,
               "top-right quarter blurred": (slice(0, height // 4), slice(width * 3 // 4, None)),
               "top-left quarter blurred": (slice(0, height // 4), slice(0, width // 4))}
    for label in classifier.labels:
        counts = dict.fromkeys(corners, 0)
        for item in test[label]:
            pixels = load_pixels(item_path(data, item), classifier.spec)
            blurred = occluder_pixels(pixels, "blur", default_patch(min(height, width)))
            for name, window in corners.items():
                trial = pixels.copy()
                if window is not None:
                    trial[window] = blurred[window]
                probabilities = classifier.run(classifier.prepare_input(trial)).probabilities
                counts[name] += classifier.verdict(probabilities) == classifier.positive_label
        result[label] = {"images": len(test[label]), f"called {classifier.positive_label}": counts}
        print(f"corner test {label}: {len(test[label])} images called "
              f"{classifier.positive_label}: {counts}")
    return result


def corner_sheet(data, test: dict[str, list[Item]], out: Path, seed: int, labels,
                 per_label: int = 16, columns: int = 8, cell: int = 112) -> str:
    """The top-right quarter of random test X-rays, a row pair per label (normal first, covid
    last): what the normal maps pointed at in 0.2.0, next to the same corner of the others."""
    rows = []
    for label in labels:
        rows += [random.Random(seed).sample(test[label], per_label)[i:i + columns]
                 for i in range(0, per_label, columns)]
    sheet = Image.new("L", (columns * cell, len(rows) * cell), 255)
    for r, paths in enumerate(rows):
        for c, item in enumerate(paths):
            gray = read_grayscale(item_path(data, item))
            width, height = gray.size
            corner = gray.crop((width * 3 // 4, 0, width, height // 4))
            sheet.paste(corner.resize((cell, cell), Image.Resampling.BILINEAR),
                        (c * cell, r * cell))
    name = "top-right-corners.png"
    sheet.save(out / name)
    return name


def gallery_block(rows: list[dict], model: str, images: str = "explain") -> str:
    """images: the folder of the PNGs, relative to the Markdown file."""
    lines = [f"Model `{model}`, default grid and occluder; images from its test split; "
             "evidence for covid.", "",
             "| true label | verdict | P(covid) | | heatmap |", "| --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['label']} | {row['verdict']} | {row['probability']:.3f} | "
                     f"{row['note']} | ![{row['file']}]({images}/{row['png']}) |")
    return "\n".join(lines)


def survey_block(result: dict, occluder: str) -> str:
    lines = [f"Strongest region of each map ({occluder} occluder), counted by where it lies "
             "(corners are quarter-squares, border the outer eighth):", "",
             "| label | images | strongest | " + " | ".join(REGIONS) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in REGIONS) + " |"]
    for label, entry in result.items():
        for colour, key in (("red (toward covid)", "red_peak_regions"),
                            ("blue (toward normal)", "blue_peak_regions")):
            counts = " | ".join(str(entry[key][r]) for r in REGIONS)
            lines.append(f"| {label} | {entry['images']} | {colour} | {counts} |")
    lines += ["", "| label | average map, top-right quarter | average map, inside |",
              "| --- | --- | --- |"]
    for label, entry in result.items():
        lines.append(f"| {label} | {entry['mean_map_top_right_quarter']:+.2f} | "
                     f"{entry['mean_map_inner']:+.2f} |")
    lines.append("")
    lines += [f"![average {label} map](explain/{entry['png']})" for label, entry in result.items()]
    return "\n".join(lines)


def corner_block(result: dict) -> str:
    names = list(next(iter(result.values())).values())[1]
    lines = ["| true label | test images | " + " | ".join(f"called covid, {n}" for n in names)
             + " |", "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
    for label, entry in result.items():
        counts = list(entry.values())[1]
        lines.append(f"| {label} | {entry['images']} | "
                     + " | ".join(str(counts[n]) for n in names) + " |")
    return "\n".join(lines)


def update_markdown(path: Path, name: str, block: str) -> None:
    start, end = MARKERS[name]
    text = path.read_text() if path.exists() else (
        f"# What the model looks at\n\n{DISCLAIMER}\n")
    if start not in text or end not in text:
        text += f"\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{block}\n{end}{tail}")


def data_folders(arguments: list[str] | None, card: dict):
    """One folder, or {root name: folder} for a model trained on several (item_path's form)."""
    if not arguments:
        folders = (card.get("data") or {}).get("folders")
        if folders:
            return {name: REPO / path if not Path(path).is_absolute() else Path(path)
                    for name, path in folders.items()}
        return REPO.parent / "shared/data/cxr"
    if len(arguments) == 1 and "=" not in arguments[0]:
        return Path(arguments[0])
    return {name: Path(path) for name, path in
            (argument.split("=", 1) if "=" in argument else (Path(argument).name, argument)
             for argument in arguments)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="folder with model_card.json (default: models/, else the smoke run)")
    parser.add_argument("--data", action="append", default=None, metavar="[NAME=]PATH",
                        help="the model's data folder(s); NAME=PATH for each root of a "
                             "multi-folder run (its split.csv root column). Default: the "
                             "folders the model card names, else ../shared/data/cxr")
    parser.add_argument("--split", type=Path, default=None,
                        help="split.csv (default: MODEL/training/split.csv)")
    parser.add_argument("--per-class", type=int, default=3)
    parser.add_argument("--errors", type=int, default=1,
                        help="misclassified test images per label to add (0: none)")
    parser.add_argument("--survey", type=int, default=40,
                        help="images per label for the survey (0: no survey)")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--occluder", choices=("blur", "mean"), default="blur")
    parser.add_argument("--out", type=Path, default=REPO / "docs/explain")
    parser.add_argument("--markdown", type=Path, default=REPO / "docs/explain.md")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    model_dir = args.model or default_model()
    classifier = Classifier.load(model_dir, num_threads=args.threads or default_threads(),
                                 guard=False)  # test X-rays; the guard is not what is shown
    labels = classifier.labels
    test = test_items(args.split or model_dir / "training" / "split.csv", labels)
    args.data = data_folders(args.data, classifier.card)
    args.out.mkdir(parents=True, exist_ok=True)

    chosen = [(item, label, "random")
              for label in reversed(labels)
              for item in random.Random(args.seed).sample(test[label], args.per_class)]
    if args.errors:
        wrong = find_errors(classifier, args.data, test)
        print(f"test split: {sum(map(len, test.values()))} images; misclassified: "
              + ", ".join(f"{len(paths)} {label}" for label, paths in wrong.items()))
        for label in reversed(labels):
            picked = random.Random(args.seed).sample(wrong[label],
                                                     min(args.errors, len(wrong[label])))
            chosen += [(item, label, "misclassified") for item in picked]

    start = time.perf_counter()
    rows = gallery(classifier, args.data, args.out, chosen, args.occluder)
    gallery_s = time.perf_counter() - start
    result = (survey(classifier, args.data, args.out, test, args.survey, args.seed + 1,
                     args.occluder) if args.survey else None)

    corners = (corner_sheet(args.data, test, args.out, args.seed + 2, labels)
               if args.survey else None)
    corner_counts = corner_test(classifier, args.data, test) if args.survey else None
    per_image = sorted(row["elapsed_ms"] for row in rows)
    per_inference = sorted(row["ms_per_inference"] for row in rows)
    summary = {"model": str(model_dir), "variant": classifier.variant,
               "runtime": classifier.runtime.label, "threads": classifier.num_threads,
               "occluder": args.occluder, "inferences_per_image": rows[0]["inferences"],
               "median_ms_per_image": per_image[len(per_image) // 2],
               "median_ms_per_inference": per_inference[len(per_inference) // 2],
               "gallery_wall_s_with_rendering": round(gallery_s, 2),
               "gallery": rows, "survey": result, "corner_sheet": corners,
               "corner_test": corner_counts}
    figures_json = args.out / f"figures{_suffix(args.occluder)}.json"
    figures_json.write_text(json.dumps(summary, indent=2) + "\n")
    if args.occluder == "blur":
        model_name = f"{model_dir.name}/{classifier.model_path.name}"
        images = os.path.relpath(args.out.resolve(), args.markdown.resolve().parent)
        update_markdown(args.markdown, "gallery", gallery_block(rows, model_name, images))
        if result:
            update_markdown(args.markdown, "survey", survey_block(result, args.occluder))
            update_markdown(args.markdown, "corners", corner_block(corner_counts))
    print(f"{len(rows)} heatmaps, {summary['inferences_per_image']} inferences each, median "
          f"{summary['median_ms_per_image']:.0f} ms per image "
          f"({summary['median_ms_per_inference']:.2f} ms per inference), "
          f"{classifier.num_threads} thread(s), {classifier.runtime.label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
