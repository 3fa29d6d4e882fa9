"""What TensorFlow's pooling CPU allocator does for `covid-edge train` on this host.

    python scripts/training_speed.py [--rounds 3] [--limit-per-class 150]

Runs one short training command (full-size 224 px images, the invariance chain on, head 1 +
fine-tune 1 epoch) in fresh processes, alternating TF_CPU_ALLOCATOR_USE_BFC=false (TensorFlow's
default) and true (what covid-edge's training commands set), and prints the median wall,
user and kernel (sys) seconds and peak memory of each, the ratio default / pooled pair by
pair, and whether both wrote the same predictions, metrics and history byte for byte. Measures,
asserts nothing; names the host's CPU first.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from covid_edge.benchmarks.cpu_features import cpu_features, summary  # noqa: E402
from covid_edge.benchmarks.device_info import cpu_model  # noqa: E402

SHARED = ROOT.parent / "shared"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_224_imagenet_no_top.weights.h5"


def run_once(out: Path, pooled: bool, limit: int) -> dict:
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true" if pooled else "false",
               PYTHONPATH=str(ROOT / "src"))
    command = [sys.executable, "-m", "covid_edge.cli", "train", str(SHARED / "data" / "cxr"),
               "--out", str(out), "--weights", str(WEIGHTS), "--limit-per-class", str(limit),
               "--head-epochs", "1", "--fine-tune-epochs", "1", "--invariance", "0.5", "--force"]
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own usage, its peak memory too
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"the training command failed (exit {child.returncode}): "
                         + " ".join(command))
    return {"wall": wall, "user": usage.ru_utime, "sys": usage.ru_stime,
            "peak_mb": usage.ru_maxrss / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit-per-class", type=int, default=150)
    args = parser.parse_args()
    print(f"host: {cpu_model()}; {summary(cpu_features())}; load average {os.getloadavg()[0]:.1f} at the start")
    results = {False: [], True: []}
    with tempfile.TemporaryDirectory() as scratch:
        outs = {pooled: Path(scratch) / ("pooled" if pooled else "default")
                for pooled in (False, True)}
        for round_index in range(args.rounds):
            for pooled in (False, True):
                results[pooled].append(run_once(outs[pooled], pooled, args.limit_per_class))
            print(f"round {round_index + 1}: default {results[False][-1]['wall']:.1f} s, "
                  f"pooled {results[True][-1]['wall']:.1f} s wall", flush=True)
        same = all(filecmp.cmp(outs[False] / name, outs[True] / name, shallow=False)
                   for name in ("predictions.csv", "metrics.json", "history.csv"))
    print(f"\n`covid-edge train ../shared/data/cxr --limit-per-class {args.limit_per_class} "
          f"--head-epochs 1 --fine-tune-epochs 1 --invariance 0.5`, {args.rounds} rounds "
          "(median seconds):")
    print(f"{'allocator':<28}{'wall':>8}{'user':>8}{'sys':>8}{'peak MB':>9}")
    for pooled, name in ((False, "default (BFC false)"), (True, "pooled (BFC true)")):
        rows = results[pooled]
        print(f"{name:<28}" + "".join(f"{statistics.median(r[key] for r in rows):8.1f}"
                                      for key in ("wall", "user", "sys"))
              + f"{statistics.median(r['peak_mb'] for r in rows):9.0f}")
    ratios = [a["wall"] / b["wall"] for a, b in zip(results[False], results[True])]
    print(f"default / pooled wall time, pair by pair: median {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f})")
    print("predictions, metrics and history: " + ("byte for byte the same" if same
                                                  else "DIFFERENT"))
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
