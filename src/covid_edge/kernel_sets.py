"""The int8 model under each kernel set of the installed runtime, and how far they disagree.

An int8 model's output is exact only up to the rounding of the kernels that compute it.
LiteRT ships several implementations of the same int8 arithmetic, chosen by the op resolver:
the XNNPACK delegate (the default), the builtin optimized kernels, and the plain reference
kernels; a Raspberry Pi's XNNPACK takes Arm kernels of its own. Each rounds differently, and a
rounding-sensitive model (MobileNetV2's depthwise layers) carries a difference of one step deep
in the network to several steps at the output. How far the kernel sets of one host disagree,
measured on many images, is what `covid-edge bench check` may forgive on another device: more
than that is not rounding but a different computation (preprocessing, runtime, a broken build).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

# name in the card -> (the runtime's OpResolverType member, what it runs)
KERNEL_SETS = {
    "xnnpack": ("AUTO", "XNNPACK delegate (LiteRT's default)"),
    "builtin": ("BUILTIN_WITHOUT_DEFAULT_DELEGATES", "builtin optimized kernels"),
    "reference": ("BUILTIN_REF", "reference kernels"),
}
# The card's reference outputs are the default kernel set's: what a device runs unless told.
DEFAULT_KERNEL_SET = "xnnpack"
# Below this, a difference is not told apart from rounding even between runs of one kernel set
# on different CPUs of one architecture (XNNPACK picks kernels by CPU feature): the floor of
# every tolerance.
NOISE_FLOOR_STEPS = 2


def _resolver_types(module):
    resolver = getattr(module, "OpResolverType", None)
    if resolver is None:
        resolver = getattr(getattr(module, "experimental", None), "OpResolverType", None)
    return resolver


def available(runtime) -> list[str]:
    """The kernel sets `runtime` (edge_runtime.interpreter.Runtime) can be asked for."""
    resolver = _resolver_types(runtime.module)
    if resolver is None:
        return [DEFAULT_KERNEL_SET]
    return [name for name, (member, _) in KERNEL_SETS.items() if hasattr(resolver, member)]


@dataclass
class KernelRunner:
    """One interpreter of the model with one kernel set; `run` gives its raw output units."""

    name: str
    interpreter: object
    input_index: int
    output_index: int

    def run(self, input_tensor: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input_index, input_tensor)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index).reshape(-1).astype(np.int64)


def runners(classifier, kernel_sets: Iterable[str] | None = None) -> dict[str, KernelRunner]:
    """An interpreter per kernel set for `classifier`'s model (one thread: the thread count
    changes nothing in the arithmetic but the order of work). A kernel set that lacks one of
    the model's ops (the reference kernels have no TILE version 3) is left out."""
    runtime = classifier.runtime
    resolver = _resolver_types(runtime.module)
    names = list(kernel_sets or available(runtime))
    result = {}
    for name in names:
        member, _ = KERNEL_SETS[name]
        kwargs = {"model_path": str(classifier.model_path), "num_threads": 1}
        if resolver is not None:
            kwargs["experimental_op_resolver_type"] = getattr(resolver, member)
        try:
            interpreter = runtime.module.Interpreter(**kwargs)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError):
            continue
        # Tensor indices belong to the model file: the classifier's hold for every interpreter.
        result[name] = KernelRunner(name, interpreter, classifier.input_details["index"],
                                    classifier.output_details["index"])
    return result


def raw_outputs(classifier, pixels: Iterable[np.ndarray],
                kernel_sets: Iterable[str] | None = None, progress=None) -> dict[str, np.ndarray]:
    """kernel set -> (images, output units) raw int8 outputs of `classifier`'s model on each
    uint8 (height, width) image of `pixels`."""
    chosen = runners(classifier, kernel_sets)
    rows: dict[str, list] = {name: [] for name in chosen}
    for image in (progress or (lambda items: items))(pixels):
        tensor = classifier.prepare_input(image)
        for name, runner in chosen.items():
            rows[name].append(runner.run(tensor))
    units = int(np.prod(classifier.output_details["shape"]))
    return {name: np.asarray(values, dtype=np.int64).reshape(-1, units)
            for name, values in rows.items()}


def steps_between(a, b) -> int:
    """The largest difference, in output steps, between two raw outputs (any shape)."""
    a = np.atleast_1d(np.asarray(a, dtype=np.int64))
    b = np.atleast_1d(np.asarray(b, dtype=np.int64))
    return int(np.max(np.abs(a - b)))


def spread(raw: dict[str, np.ndarray]) -> dict:
    """How far the kernel sets disagree on the same images: per pair, and per image the largest
    difference between any two (the quantity a tolerance must cover)."""
    names = list(raw)
    pairs = {}
    per_image = np.zeros(len(next(iter(raw.values()))), dtype=np.int64)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            steps = np.max(np.abs(raw[first] - raw[second]), axis=1)
            per_image = np.maximum(per_image, steps)
            pairs[f"{first}-{second}"] = {"max_steps": int(steps.max()),
                                          "p99_steps": float(np.percentile(steps, 99)),
                                          "mean_steps": round(float(steps.mean()), 3)}
    return {"images": int(len(per_image)), "pairs": pairs,
            "max_steps": int(per_image.max()) if len(per_image) else 0,
            "p99_steps": float(np.percentile(per_image, 99)) if len(per_image) else 0.0,
            "p999_steps": float(np.percentile(per_image, 99.9)) if len(per_image) else 0.0,
            "histogram": {str(k): int(v) for k, v in
                          zip(*np.unique(per_image, return_counts=True))}}


def tolerance_steps(measured: dict, noise_floor: int = NOISE_FLOOR_STEPS) -> int:
    """The tolerance a device gets: the largest cross-kernel difference seen on the measured
    images plus the noise floor. The largest, not a percentile: the check runs a handful of
    samples, and a legitimate kernel path that lands one of them in the tail must not fail;
    the spread is far below what a wrong preprocessing or runtime gives (every sample off)."""
    return int(measured["max_steps"]) + int(noise_floor)


def closest(device_raw: dict[str, object], references: dict[str, dict[str, object]]) -> dict:
    """Which kernel set's reference outputs `device_raw` (file -> raw) is closest to:
    kernel set -> largest difference over the files, and the closest one."""
    distances = {}
    for name, raws in references.items():
        shared = [file for file in device_raw if file in raws and device_raw[file] is not None]
        if shared:
            distances[name] = max(steps_between(device_raw[f], raws[f]) for f in shared)
    best = min(distances, key=lambda name: (distances[name], name != DEFAULT_KERNEL_SET),
               default=None)
    return {"max_steps": distances, "closest": best}


def describe(names: Iterable[str]) -> dict[str, str]:
    return {name: KERNEL_SETS[name][1] for name in names}


def images_of(paths: Iterable[Path], spec):
    """uint8 pixels of each file, decoded as the runtime decodes them."""
    from .preprocess import load_pixels

    for path in paths:
        yield load_pixels(path, spec)


def _card_raw(values) -> object:
    """One image's raw output as the card stores it: a number for one unit, else a list."""
    values = [int(v) for v in np.atleast_1d(values)]
    return values[0] if len(values) == 1 else values


def measure(classifier, paths: list[Path], progress=None) -> tuple[dict, dict]:
    """Every available kernel set's raw outputs on `paths` (kernel set -> (images, units)) and
    their spread (see `spread`)."""
    paths = (progress or (lambda items: items))(list(paths))
    raw = raw_outputs(classifier, images_of(paths, classifier.spec))
    return raw, {"kernel_sets": list(raw), **spread(raw)}


def store(reference: dict, card_dir: Path, classifier, measured: dict, *, measured_on: str,
          command: str) -> dict:
    """Put the tolerance from `measured` (a `spread`) and every kernel set's outputs on the
    samples into `reference` (a card's "reference_outputs", changed in place and returned)."""
    from .benchmarks.device_info import host_line

    files = [image["file"] for image in reference["images"]]
    samples = raw_outputs(classifier, images_of((card_dir / file for file in files),
                                                classifier.spec), measured.get("kernel_sets"))
    names = list(samples)
    for index, image in enumerate(reference["images"]):
        image["raw_by_kernel_set"] = {name: _card_raw(samples[name][index]) for name in names}
    steps = tolerance_steps(measured)
    scale = float(classifier.output_details["quantization"][0])
    reference["kernel_sets"] = describe(names)
    reference["tolerance"] = {
        "raw_output_steps": steps,
        "probability": steps * scale,
        "measured": {
            "rule": f"the largest difference between any two kernel sets on any measured "
                    f"image, plus a noise floor of {NOISE_FLOOR_STEPS} steps",
            "noise_floor_steps": NOISE_FLOOR_STEPS,
            "images_from": measured_on,
            "runtime": classifier.runtime.label,
            "host": host_line(),
            "command": command,
            **measured,
        },
    }
    return reference


def record(reference: dict, card_dir: Path, classifier, measured_paths: list[Path], *,
           measured_on: str, command: str, progress=None) -> dict:
    """Measure the tolerance on `measured_paths` and store it (`measure`, then `store`).

    measured_paths: the images the spread is measured on (never the test split: the tolerance
    is chosen on them); measured_on says which they are, command how to measure it again.
    """
    _, measured = measure(classifier, measured_paths, progress)
    return store(reference, card_dir, classifier, measured, measured_on=measured_on,
                 command=command)
