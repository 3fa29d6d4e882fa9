"""Occlusion heatmaps for a few held-out test X-rays of each class, for the README/model card.

    PYTHONPATH=src python scripts/explain_gallery.py            # the released model in models/
    PYTHONPATH=src python scripts/explain_gallery.py --model runs/smoke/export

Picks --per-class images of each label from the model's own test split (training/split.csv
beside the model card, so no image the model was trained or tuned on), draws each heatmap into
docs/explain/, writes their figures to docs/explain/figures.json, and rewrites the table between
the gallery markers in docs/explain.md (the prose around it is written by a person who looked
at the pictures, and is left alone). Prints what it cost: inferences and milliseconds.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from covid_edge import DISCLAIMER  # noqa: E402
from covid_edge.dataset import LABELS, read_split  # noqa: E402
from covid_edge.edge_runtime.classifier import Classifier, default_threads  # noqa: E402
from covid_edge.edge_runtime.explain import explain_file  # noqa: E402

START, END = "<!-- gallery:start -->", "<!-- gallery:end -->"


def default_model() -> Path:
    released = REPO / "models"
    return released if (released / "model_card.json").is_file() else REPO / "runs/smoke/export"


def pick(split_csv: Path, per_class: int, seed: int) -> list[tuple[str, str]]:
    items, _, split = read_split(split_csv)
    chosen = []
    for label in reversed(LABELS):  # covid first
        test = sorted(item.path for item, part in zip(items, split)
                      if part == "test" and item.label == label)
        chosen += [(path, label) for path in random.Random(seed).sample(test, per_class)]
    return chosen


def table(rows: list[dict], model: str) -> str:
    lines = [f"Model: `{model}`; occlusion sensitivity, default grid. Images from the test split.",
             "", "| true label | verdict | P(covid) | heatmap |", "| --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['label']} | {row['verdict']} | {row['probability']:.3f} | "
                     f"![{row['file']}](explain/{row['png']}) |")
    return "\n".join(lines)


def update_markdown(path: Path, block: str) -> None:
    text = path.read_text() if path.exists() else (
        "# What the model looks at\n\n" + f"{START}\n{END}\n\n{DISCLAIMER}\n")
    if START not in text or END not in text:
        text += f"\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{block}\n{END}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="folder with model_card.json (default: models/, else the smoke run)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/cxr")
    parser.add_argument("--split", type=Path, default=None,
                        help="split.csv (default: MODEL/training/split.csv)")
    parser.add_argument("--per-class", type=int, default=3)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--occluder", choices=("blur", "mean"), default="blur")
    parser.add_argument("--out", type=Path, default=REPO / "docs/explain")
    parser.add_argument("--markdown", type=Path, default=REPO / "docs/explain.md")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    model_dir = args.model or default_model()
    split_csv = args.split or model_dir / "training" / "split.csv"
    classifier = Classifier.load(model_dir, num_threads=args.threads or default_threads())
    args.out.mkdir(parents=True, exist_ok=True)

    rows = []
    start = time.perf_counter()
    for relative, label in pick(split_csv, args.per_class, args.seed):
        explanation, figure = explain_file(classifier, args.data / relative,
                                           occluder=args.occluder)
        png = f"{label}-{Path(relative).stem}.png"
        if args.occluder != "blur":
            png = png.replace(".png", f"-{args.occluder}.png")
        figure.save(args.out / png)
        rows.append({"file": relative, "label": label, "png": png, **explanation.figures()})
        print(f"{label:>6} {Path(relative).name:<22} {explanation.verdict:<6} "
              f"P={explanation.probability:.3f}  {explanation.inferences} inferences "
              f"{explanation.elapsed_ms:7.0f} ms  max drop {explanation.heatmap.max():+.3f} "
              f"max rise {-explanation.heatmap.min():+.3f}")
    wall_s = time.perf_counter() - start

    per_inference = [row["ms_per_inference"] for row in rows]
    summary = {"model": str(model_dir), "variant": classifier.variant,
               "runtime": classifier.runtime.label, "threads": classifier.num_threads,
               "images": len(rows), "inferences_per_image": rows[0]["inferences"],
               "median_ms_per_image": sorted(r["elapsed_ms"] for r in rows)[len(rows) // 2],
               "median_ms_per_inference": sorted(per_inference)[len(per_inference) // 2],
               "wall_s_with_rendering": round(wall_s, 2), "rows": rows}
    name = "figures.json" if args.occluder == "blur" else f"figures-{args.occluder}.json"
    (args.out / name).write_text(json.dumps(summary, indent=2) + "\n")
    if args.occluder == "blur":
        model_name = f"{model_dir.name}/{classifier.model_path.name}"
        update_markdown(args.markdown, table(rows, model_name))
    print(f"{len(rows)} images, {summary['inferences_per_image']} inferences each, median "
          f"{summary['median_ms_per_image']:.0f} ms per image "
          f"({summary['median_ms_per_inference']:.2f} ms per inference), "
          f"{classifier.num_threads} thread(s), {classifier.runtime.label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
