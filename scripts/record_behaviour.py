"""Put the headline of the per-source and shift reports into the model card and the README.

    python scripts/record_behaviour.py --sources docs/bench/sources/sources.json \
        --shift docs/bench/shift/shift.json --models models --readme README.md

Writes model_card.json's "behaviour_on_other_sources", re-renders MODEL_CARD.md from the card,
and replaces the README's section between its behaviour markers with the same text, so the
figures in both come from the reports and nowhere else. Refuses reports made with another
model than the card's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from covid_edge.benchmarks import card_summary  # noqa: E402
from covid_edge.convert.card_markdown import write_markdown  # noqa: E402
from covid_edge.model_card import CARD_FILENAME, report_mismatch  # noqa: E402

START, END = "<!-- behaviour:start -->", "<!-- behaviour:end -->"


def relative(path: Path) -> str:
    return path.resolve().relative_to(ROOT).as_posix()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=Path, required=True, help="sources.json")
    parser.add_argument("--shift", type=Path, required=True, help="shift.json")
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--readme", type=Path, help="README.md to update between the markers")
    parser.add_argument("--unknowns", type=Path,
                        help="a Markdown list of what the figures cannot show (one '- ' item "
                             "per line), kept in the card's \"unknowns\" and MODEL_CARD.md")
    args = parser.parse_args()

    card_path = args.models / CARD_FILENAME
    card = json.loads(card_path.read_text(encoding="utf-8"))
    sources = json.loads(args.sources.read_text(encoding="utf-8"))
    shift = json.loads(args.shift.read_text(encoding="utf-8"))
    for report in (sources, shift):
        mismatch = report_mismatch(report["model"], card)
        if mismatch:
            sys.exit(f"{report['command']}: {mismatch}")
    summary = card_summary.summarise(sources, shift, relative(args.sources.parent /
                                                              "sources.md"),
                                     relative(args.shift.parent / "shift.md"))
    card[card_summary.CARD_KEY] = summary
    if args.unknowns:
        card["unknowns"] = [line[2:].strip() for line in
                            args.unknowns.read_text(encoding="utf-8").splitlines()
                            if line.startswith("- ")]
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {card_path} and {write_markdown(card, args.models)}")
    if args.readme:
        text = args.readme.read_text(encoding="utf-8")
        if START not in text or END not in text:
            sys.exit(f"{args.readme}: no {START} ... {END} markers")
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        section = "\n".join(card_summary.markdown(summary)).rstrip() + "\n"
        args.readme.write_text(f"{head}{START}\n{section}{END}{tail}", encoding="utf-8")
        print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
