"""A copy of a training split file in which one part (e.g. the validation images) is marked
`test` and everything else `held-out`, so that `covid-edge bench shift --split-file` and
`bench sources --split-file` score that part only.

    python scripts/split_as_test.py runs/0.3.0/split.csv val ../shared/data/cxr-more \
        > runs/val-as-test.csv

Why: the benchmarks score a split's test images (the held-out ones). A choice between two
training runs must be made on validation images instead, or it spends the held-out data
(docs/bench/0.3.0/longer-training.md). DATA_DIRS are the roots training read: images their
MANIFEST.csv names that the split file does not (labels training dropped with --map, such as
tuberculosis and nodule) are written as `held-out` too, since the benchmarks would otherwise
count them as never seen and score them.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

FIELDS = ("path", "label", "group", "split", "source", "root")


def rewrite(split_rows: list[dict], part: str, manifests: dict[str, list[dict]]) -> list[dict]:
    """split_rows with `part` -> test and every other split -> held-out, plus a held-out row
    for each manifest image (by root name) the split does not name."""
    out = [{**{k: row.get(k, "") for k in FIELDS},
            "split": "test" if row["split"] == part else "held-out"} for row in split_rows]
    named = {(row.get("root", ""), row["path"]) for row in split_rows}
    next_group = max((int(row["group"]) for row in split_rows), default=-1) + 1
    for root, rows in manifests.items():
        for row in rows:
            if (root, row["path"]) not in named:
                out.append({"path": row["path"], "label": row["label"], "group": next_group,
                            "split": "held-out", "source": row.get("source", ""),
                            "root": root})
                next_group += 1
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("split_file", type=Path)
    parser.add_argument("part", help="the split to mark test, e.g. val")
    parser.add_argument("data_dirs", nargs="*", type=Path,
                        help="training's data roots with a MANIFEST.csv")
    args = parser.parse_args(argv)
    with open(args.split_file, newline="", encoding="utf-8") as handle:
        split_rows = list(csv.DictReader(handle))
    if not any(row["split"] == args.part for row in split_rows):
        parser.error(f"{args.split_file} has no {args.part!r} images")
    manifests = {}
    for data_dir in args.data_dirs:
        manifest = data_dir / "MANIFEST.csv"
        if not manifest.is_file():
            parser.error(f"{data_dir}: no MANIFEST.csv")
        with open(manifest, newline="", encoding="utf-8") as handle:
            manifests[data_dir.name] = list(csv.DictReader(handle))
    writer = csv.DictWriter(sys.stdout, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rewrite(split_rows, args.part, manifests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
