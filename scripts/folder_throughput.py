"""How close folder scoring comes to the interpreter's own speed, measured in one run.

    python scripts/folder_throughput.py [--model DIR] [--images 200] [--rounds 3]
                                        [--threads 1,2] [--sixteen-bit 12]

Three ways through the same images, alternated round by round so that a busy machine slows
all of them alike:
  inference only   prepared inputs fed to the interpreter (+ the feature test): the ceiling
  one by one       Classifier.classify_file per image (decode, checks, inference in turn)
  pipelined        pipeline.classify_paths: the next files prepared in threads meanwhile,
                   as `covid-edge classify` does
on a folder of 224-px JPEGs written from ../shared/data/cxr (the goal: pipelined >= 85% of
inference only, at 1 and 2 threads), and on 16-bit PNGs at 2500x3000 (pipelined against one
by one). Prints images/s and ratios; measures, asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))
SHARED_CXR = REPO_ROOT.parent / "shared" / "data" / "cxr"

from covid_edge.benchmarks.cpu_features import cpu_features, summary  # noqa: E402
from covid_edge.benchmarks.device_info import cpu_model, usable_cores  # noqa: E402
from covid_edge.edge_runtime.classifier import Classifier  # noqa: E402
from covid_edge.edge_runtime.pipeline import classify_paths, default_workers  # noqa: E402


def sources(count: int) -> list[Path]:
    files = sorted((SHARED_CXR / "covid").glob("*")) + sorted((SHARED_CXR / "normal").glob("*"))
    step = max(1, len(files) // count)
    return files[::step][:count]


def write_copies(folder: Path, count: int, suffix: str, save) -> list[Path]:
    """`count` source X-rays, each grayscale and written by save(gray image, path)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for index, source in enumerate(sources(count)):
        path = folder / f"{index:05d}{suffix}"
        with Image.open(source) as img:
            save(img.convert("L"), path)
        out.append(path)
    return out


def write_jpegs(folder: Path, count: int) -> list[Path]:
    return write_copies(folder, count, ".jpg", lambda gray, path: gray.resize(
        (224, 224), Image.Resampling.BILINEAR).save(path, quality=90))


def write_sixteen_bit(folder: Path, count: int) -> list[Path]:
    """2500x3000 16-bit PNGs holding 12 bits of data, as digital radiographs come."""
    def save(gray, path):
        values = np.asarray(gray.resize((2500, 3000), Image.Resampling.BILINEAR))
        Image.fromarray(values.astype(np.uint16) * 16 + np.uint16(300)).save(path)
    return write_copies(folder, count, ".png", save)


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


def run_inference_only(classifier: Classifier, inputs: list[np.ndarray]) -> float:
    start = time.perf_counter()
    for tensor in inputs:
        features = classifier.run(tensor).features
        if classifier.guard is not None:
            classifier.guard.feature_reason(features)
    return per_second(len(inputs), time.perf_counter() - start)


def run_one_by_one(classifier: Classifier, files: list[Path]) -> float:
    start = time.perf_counter()
    for path in files:
        classifier.classify_file(path)
    return per_second(len(files), time.perf_counter() - start)


def run_pipelined(classifier: Classifier, files: list[Path]) -> float:
    start = time.perf_counter()
    for _ in classify_paths(classifier, files):
        pass
    return per_second(len(files), time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model folder or file (default: released)")
    parser.add_argument("--images", type=int, default=200, help="224-px JPEGs in the folder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--sixteen-bit", type=int, default=12,
                        help="16-bit PNGs to time (0: skip)")
    args = parser.parse_args()

    print(f"host: {cpu_model()}, {usable_cores()} usable cores; {summary(cpu_features())}")
    print(f"preparing threads: {default_workers()}; {args.rounds} rounds, the three ways "
          "alternated within each; median images/s of the rounds, ratios per round")
    with tempfile.TemporaryDirectory(prefix="covid-edge-throughput-") as scratch:
        jpegs = write_jpegs(Path(scratch) / "jpeg", args.images)
        sixteen = (write_sixteen_bit(Path(scratch) / "png16", args.sixteen_bit)
                   if args.sixteen_bit else [])
        for threads in [int(t) for t in args.threads.split(",")]:
            classifier = Classifier.load(args.model, num_threads=threads)
            prepared = [classifier.prepare_file(path) for path in jpegs]
            inputs = [p.input_tensor for p in prepared if hasattr(p, "input_tensor")]
            run_inference_only(classifier, inputs[:10])  # warm-up (XNNPACK packs weights)
            ceiling, serial, piped = [], [], []
            for _ in range(args.rounds):
                ceiling.append(run_inference_only(classifier, inputs))
                serial.append(run_one_by_one(classifier, jpegs))
                piped.append(run_pipelined(classifier, jpegs))
            ratio = statistics.median(np.divide(piped, ceiling))
            print(f"\n{threads} interpreter thread(s), {len(jpegs)} 224-px JPEGs "
                  f"({len(inputs)} reach the interpreter):")
            print(f"  inference only  {statistics.median(ceiling):7.1f} images/s")
            print(f"  one by one      {statistics.median(serial):7.1f} images/s  "
                  f"({statistics.median(np.divide(serial, ceiling)):.0%} of inference only)")
            print(f"  pipelined       {statistics.median(piped):7.1f} images/s  "
                  f"({ratio:.0%} of inference only; goal >= 85%: "
                  f"{'met' if ratio >= 0.85 else 'MISSED'})")
            if sixteen:
                serial16, piped16 = [], []
                for _ in range(args.rounds):
                    serial16.append(run_one_by_one(classifier, sixteen))
                    piped16.append(run_pipelined(classifier, sixteen))
                gain = statistics.median(np.divide(piped16, serial16))
                print(f"  16-bit 2500x3000 PNGs ({len(sixteen)}): one by one "
                      f"{statistics.median(serial16):.2f} images/s, pipelined "
                      f"{statistics.median(piped16):.2f} images/s ({gain:.2f}x)")


if __name__ == "__main__":
    main()
