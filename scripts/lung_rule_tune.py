"""Retune the guard's frontal-film limits (edge_runtime/lung_guard.LungRule) on the tuning sets.

    python scripts/lung_rule_tune.py                                # the released lung model
    python scripts/lung_rule_tune.py --lungs runs/lungs-heads/int8  # another one

Every tuning image (scripts/lung_guard_eval.py --tune's sets: not-frontal-chest and the
validation splits) is read once through `classify`'s own path: its lung geometry, and whether
the guard's other checks (image checks, feature distance) refuse it. Each candidate rule is then
`LungRule.reason` on the stored geometry: an image is refused when either refuses, as in the
guard. One limit at a time, in LungRule's order, each fixed before the next: the value that
accepts the most frontal tuning films while every not-frontal set stays refused >= 95%; ties go
to the strictest value; with no such value the limit keeps its present one. The grid is
docs/bench/lungs/ship-heads.md's, written before it was run. Never run it on evaluation sets.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from lung_guard_eval import guard_and_lungs, load_with_lungs, sets

from covid_edge.edge_runtime.classifier import Classifier
from covid_edge.edge_runtime.guard import NOT_CHEST_XRAY
from covid_edge.edge_runtime.lung_guard import LungRule
from covid_edge.progress import progress_bar

GOAL_REFUSED = 0.95
GRID = {  # LungRule's order; each list holds the present value
    "min_field_area": [0.005, 0.01, 0.02],
    "min_balance": [0.20, 0.25, 0.30, 0.35],
    "max_height_offset": [0.15, 0.20, 0.25],
    "max_top_offset": [0.10, 0.12, 0.14, 0.16, 0.18, 0.20],
    "min_confidence": [0.86, 0.88, 0.90, 0.91, 0.92, 0.93],
    "max_total": [0.60, 0.70, 0.80],
}


def score_images(classifier: Classifier) -> dict[str, tuple[bool, list]]:
    """set name -> (frontal, [(refused by the other checks, lung geometry), ...])"""
    scored = {}
    for name, (paths, frontal) in sets(tune=True).items():
        rows = []
        with progress_bar(len(paths), name) as bar:
            for path in paths:
                rows.append(_score(classifier, path))
                bar.update(1)
        scored[name] = (frontal, rows)
    return scored


def _score(classifier: Classifier, path: Path) -> tuple[bool, object]:
    """(refused by the guard's other checks, lung geometry) for one image; the lung rule is
    applied afterwards."""
    prediction, lung = guard_and_lungs(classifier, path, apply_rule=False)
    return prediction.verdict == NOT_CHEST_XRAY, lung.geometry


def outcome(rule: LungRule, scored) -> dict[str, int]:
    """set name -> images refused by the guard with this rule"""
    return {name: sum(other or rule.reason(geometry) is not None for other, geometry in rows)
            for name, (_, rows) in scored.items()}


def acceptable(rule: LungRule, scored) -> tuple[bool, int]:
    """(every not-frontal set refused >= 95%, frontal films accepted)"""
    refused = outcome(rule, scored)
    keeps = all(refused[name] >= GOAL_REFUSED * len(rows)
                for name, (frontal, rows) in scored.items() if not frontal)
    accepted = sum(len(rows) - refused[name] for name, (frontal, rows) in scored.items()
                   if frontal)
    return keeps, accepted


def not_frontal_refused(rule: LungRule, scored) -> str:
    refused = outcome(rule, scored)
    return ", ".join(f"{name.split(' ')[0]} {refused[name]}/{len(rows)}"
                     for name, (frontal, rows) in scored.items() if not frontal)


def strictness(limit: str, value: float) -> float:
    return value if limit.startswith("min_") else -value


def tune(rule: LungRule, scored, log=print) -> LungRule:
    for limit, values in GRID.items():
        tried = []
        for value in values:
            keeps, accepted = acceptable(dataclasses.replace(rule, **{limit: value}), scored)
            tried.append((value, keeps, accepted))
            candidate = dataclasses.replace(rule, **{limit: value})
            log(f"  {limit} = {value:<5g}: frontal accepted {accepted}; refused "
                f"{not_frontal_refused(candidate, scored)}: {'holds' if keeps else 'fails'}")
        good = [(accepted, strictness(limit, value), value)
                for value, keeps, accepted in tried if keeps]
        if good:
            rule = dataclasses.replace(rule, **{limit: max(good)[2]})
        log(f"{limit}: {getattr(rule, limit):g}" + ("" if good else " (kept: no value holds)"))
    return rule


def report(rule: LungRule, scored, title: str) -> None:
    refused = outcome(rule, scored)
    print(title)
    for name, (frontal, rows) in scored.items():
        n, k = len(rows), refused[name]
        print(f"  {name:>28}: {n:5d} images, " + (f"accepted {n - k} (refused {k})" if frontal
                                                 else f"refused {k} ({k / n:.1%})"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lungs", type=Path, default=None,
                        help="a lung model folder (default: the one the classifier loads)")
    parser.add_argument("--model", type=Path, default=None,
                        help="the classifier (default: the released model)")
    args = parser.parse_args()
    classifier = load_with_lungs(parser, args.model, args.lungs)
    if classifier is None:
        return 1
    scored = score_images(classifier)
    start = classifier.lung_rule
    report(start, scored, f"present limits: {start.to_dict()}")
    tuned = tune(start, scored)
    report(tuned, scored, f"tuned limits: {tuned.to_dict()}")
    changed = {k: v for k, v in tuned.to_dict().items() if v != start.to_dict()[k]}
    print(f"changed: {changed or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
