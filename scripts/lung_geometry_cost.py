"""What the lung mask's geometry costs per film: its connected lung fields (mask_runs) and the
rest of `geometry()`, on the released lung model's masks of real X-rays and of the guard's
lateral/CT/knee tuning pictures.

    python scripts/lung_geometry_cost.py [--films 300] [--rounds 9] [--src OTHER_CHECKOUT/src]

--src times another checkout's code on the same masks (the masks always come from this
checkout's lung model), e.g. `git worktree add /tmp/before <commit>` and
`--src /tmp/before/src`: run both, one after the other, to compare. Prints the best of
--rounds per film in ms; measures, asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared" / "data"


def pictures(films: int) -> tuple[list[Path], list[Path]]:
    """(frontal films, half normal and half covid; the lateral/CT/knee pictures)."""
    frontal = sorted((SHARED / "cxr" / "normal").glob("*"))[:films - films // 2]
    frontal += sorted((SHARED / "cxr" / "covid").glob("*"))[:films // 2]
    return frontal, sorted((SHARED / "not-frontal-chest").rglob("*.jpg"))


def best_per_film(function, masks, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for mask in masks:
            function(mask)
        best = min(best, time.perf_counter() - start)
    return best * 1000.0 / len(masks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--films", type=int, default=300, help="frontal films (half covid)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--src", type=Path, default=REPO_ROOT / "src",
                        help="the covid_edge code to time (default: this checkout's)")
    args = parser.parse_args()
    sys.path.insert(0, str(args.src.resolve()))

    from covid_edge.benchmarks.cpu_features import cpu_features, summary
    from covid_edge.edge_runtime import lungs
    from covid_edge.image_io import read_grayscale

    segmenter = lungs.LungSegmenter.load(REPO_ROOT / "models" / "lungs")
    print(f"code: {lungs.__file__}")
    print(f"host: {summary(cpu_features())}")
    for label, files in zip(("frontal films", "lateral/CT/knee pictures"),
                            pictures(args.films)):
        if not files:
            continue
        chosen = [segmenter.segment(read_grayscale(path)).mask for path in files]
        runs = sum(len(lungs.mask_runs(mask).starts) for mask in chosen) / len(chosen)
        fields = best_per_film(lungs.mask_runs, chosen, args.rounds)
        geometry = best_per_film(lungs.geometry, chosen, args.rounds)
        print(f"{len(chosen)} {label} ({runs:.0f} row runs per mask): connected fields "
              f"(mask_runs) {fields:.3f} ms, all of geometry() {geometry:.3f} ms per picture")


if __name__ == "__main__":
    main()
