"""Plans a latency benchmark (models x runtimes x targets x threads) and runs each
configuration in its own worker process.

Configurations run ordered runtime > target > threads > model, so that the models being compared
(our int8, the reference, our float32) are measured next to each other in time: heat or a
background job then slows them alike instead of biasing a ratio.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .. import DISCLAIMER
from ..tflite_file import NOT_TFLITE, header_problem
from ..model_card import CARD_FILENAME, ModelCardError, load_card, released_models_dir, sha256_file
from . import device_info
from .latency import Job, compare, goal_summary
from .worker import RESULT_MARKER

SCHEMA = "covid-edge/bench-latency/1"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
# End-to-end timing cycles through these; more images add nothing but wall time.
MAX_IMAGES = 64
# The variants `covid-edge convert` writes, fastest-to-read order for tables.
VARIANT_ORDER = ("int8", "dynamic", "float16", "float32")
# Top-level module -> the runtime name used by edge_runtime.interpreter.
RUNTIME_MODULES = {"ai_edge_litert": "ai_edge_litert", "tflite_runtime": "tflite_runtime",
                   "tensorflow": "tensorflow"}
RUNTIME_INSTALL_HINTS = {"ai_edge_litert": "pip install ai-edge-litert",
                         "tflite_runtime": "pip install tflite-runtime",
                         "tensorflow": "pip install tensorflow"}


class BenchmarkError(Exception):
    """A benchmark that cannot start; the message says what to do."""


class NotAModelError(BenchmarkError):
    """A named file that is there but is no TensorFlow Lite model (exit 3, as for classify)."""


def _check_tflite(path: Path) -> None:
    """Refused before any measuring process starts: otherwise every configuration fails on
    it in turn and the run ends with a count of failures."""
    problem = header_problem(path)
    if problem == NOT_TFLITE:
        problem += "; bench latency measures .tflite files and ONNX exports"
    if problem:
        raise NotAModelError(f"{path}: {problem}")


def installed_runtimes() -> list[str]:
    """Runtimes that are installed, found without importing any (TensorFlow costs seconds)."""
    return [name for name, module in RUNTIME_MODULES.items()
            if importlib.util.find_spec(module) is not None]


def choose_runtimes(requested: str | None) -> list[str]:
    """None -> the first installed; 'all' -> every installed; else a comma-separated list."""
    installed = installed_runtimes()
    if not installed:
        raise BenchmarkError("no TFLite interpreter is installed: pip install ai-edge-litert")
    if requested is None:
        return installed[:1]
    if requested == "all":
        return installed
    names = [name.strip() for name in requested.split(",") if name.strip()]
    for name in names:
        if name not in RUNTIME_MODULES:
            raise BenchmarkError(
                f"unknown runtime {name!r}: choose from all, {', '.join(RUNTIME_MODULES)}")
        if name not in installed:
            raise BenchmarkError(
                f"the {name} runtime is not installed ({RUNTIME_INSTALL_HINTS[name]})")
    return list(dict.fromkeys(names))


def _model_entry(path: Path, label: str, role: str, variant: str | None = None,
                 card_dir: Path | None = None) -> dict:
    return {"label": label, "path": str(path), "role": role, "variant": variant,
            "card_dir": str(card_dir) if card_dir else None,
            "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _card_variants(directory: Path) -> list[tuple[str, Path]]:
    card = load_card(directory / CARD_FILENAME)
    variants = []
    for name, variant in card["variants"].items():
        path = directory / variant["file"]
        if path.is_file():
            variants.append((name, path))
    order = {name: i for i, name in enumerate(VARIANT_ORDER)}
    return sorted(variants, key=lambda item: order.get(item[0], len(order)))


def onnx_backends() -> list[str]:
    """The ONNX backends installed (the onnx extra), found without importing them."""
    from ..edge_runtime.onnx_backends import ONNX_RUNTIMES

    return [name for name in ONNX_RUNTIMES if importlib.util.find_spec(name) is not None]


def _onnx_exports(card_dir: Path) -> list[Path]:
    """`covid-edge export-onnx`'s exports in a model folder: .onnx files with their sidecar."""
    from ..edge_runtime.onnx_backends import sidecar_path

    return [path for path in sorted(Path(card_dir).glob("*.onnx"))
            if sidecar_path(path).is_file()]


def onnx_notes(models: list[dict]) -> list[str]:
    """What the report says about ONNX exports it found but cannot time."""
    exports = [m for m in models if m.get("role") == "onnx"]
    if exports and not onnx_backends():
        from .. import install_hint

        return [f"{', '.join(Path(m['path']).name for m in exports)}: no ONNX backend is "
                f"installed, so it was not timed ({install_hint('onnx')})"]
    return []


def resolve_models(paths: list[str], reference: str | None) -> list[dict]:
    """Model files to measure: a named file as given; a folder with a model card as its
    variants, the lung model beside them (run before the classifier on every image) and its
    ONNX exports; other folders as their .tflite files; nothing given -> the released folder.
    A lung model file named beside a named classifier of the same card is paired with it
    (the lung/classifier ratio and goal)."""
    if not paths:
        try:
            paths = [str(released_models_dir())]
        except ModelCardError:
            raise BenchmarkError(
                "the released models are not installed with this copy of covid-edge: "
                "pass model files or a folder that `covid-edge convert` wrote") from None
    found: list[tuple[Path, str | None, Path | None]] = []  # (file, variant, card folder)
    whole_folders: list[Path] = []  # card folders named as folders: companions come along
    for given in paths:
        path = Path(given)
        if path.is_dir():
            if (path / CARD_FILENAME).is_file():
                try:
                    variants = _card_variants(path)
                except ModelCardError as exc:
                    raise BenchmarkError(str(exc)) from None
                found += [(file, name, path) for name, file in variants]
                whole_folders.append(path)
            else:
                files = sorted(path.glob("*.tflite"))
                if not files:
                    raise BenchmarkError(f"{path}: no .tflite files in this folder")
                found += [(file, None, None) for file in files]
        elif path.is_file() and path.suffix.lower() == ".onnx":
            found.append((path, "onnx", None))
        elif path.is_file():
            variant, card_dir = None, None
            if (path.parent / CARD_FILENAME).is_file():
                try:
                    for name, file in _card_variants(path.parent):
                        if file.name == path.name:
                            variant, card_dir = name, path.parent
                except ModelCardError:
                    pass
            found.append((path, variant, card_dir))
        else:
            raise BenchmarkError(f"{path}: no such model file or folder")

    card_dirs = list(dict.fromkeys(card_dir for _, _, card_dir in found if card_dir))
    whole_folders = list(dict.fromkeys(whole_folders))
    lung_card_dirs = {lungs.resolve(): card_dir for card_dir in card_dirs
                      if (lungs := _lung_model_beside(card_dir)) is not None}

    def lung_label(card_dir: Path) -> str:
        return "lungs" if len(card_dirs) == 1 else f"{card_dir.name}/lungs"

    models, labels, measured = [], set(), set()

    def add(file: Path, label: str, role: str, variant=None, card_dir=None) -> None:
        measured.add(file.resolve())
        models.append(_model_entry(file, label, role, variant, card_dir))

    exports = [(file, card_dir) for file, variant, card_dir in found if variant == "onnx"]
    found = [item for item in found if item[1] != "onnx"]
    for file, _, _ in found:
        _check_tflite(file)
    for card_dir in whole_folders:
        exports += [(file, card_dir) for file in _onnx_exports(card_dir)]
    for file, variant, card_dir in found:
        if file.resolve() in measured:
            continue  # the same file given twice
        lung_dir = lung_card_dirs.get(file.resolve()) if variant is None else None
        if lung_dir is not None:
            add(file, lung_label(lung_dir), "lungs", None, lung_dir)
            continue
        if variant and len(card_dirs) > 1:
            label = f"{card_dir.name}/{variant}"
        else:
            label = variant or file.stem
        if label in labels:
            label = str(file)
        labels.add(label)
        add(file, label, "ours" if variant else "other", variant, card_dir)
    for card_dir in whole_folders:
        lungs = _lung_model_beside(card_dir)
        if lungs is not None and lungs.resolve() not in measured:
            add(lungs, lung_label(card_dir), "lungs", None, card_dir)
    for file, card_dir in exports:
        if file.resolve() in measured:
            continue
        label = file.stem.removeprefix("covid-edge-") + " ONNX"
        if card_dir is not None and len(card_dirs) > 1:
            label = f"{card_dir.name}/{label}"
        add(file, label, "onnx", None, card_dir)
    if reference is not None:
        path = Path(reference)
        if not path.is_file():
            raise BenchmarkError(f"{path}: no such reference model")
        _check_tflite(path)
        models.append(_model_entry(path, "reference", "reference"))
    return models


def _lung_model_beside(card_dir: Path) -> Path | None:
    """The lung model (models/lungs/) that runs with the classifier in this folder, if any:
    every classified image pays for it too."""
    import json

    from ..edge_runtime.lungs import LUNG_CARD_FILENAME, LUNG_DIR

    card_path = Path(card_dir) / LUNG_DIR / LUNG_CARD_FILENAME
    try:
        path = card_path.parent / json.loads(card_path.read_text(encoding="utf-8"))["file"]
    except (OSError, ValueError, KeyError):
        return None
    return path if path.is_file() else None


def resolve_images(images_dir: str | None, models: list[dict]) -> list[str]:
    """Images for end-to-end timing and as realistic input: --images, else the samples the
    model card ships with, else the released model's samples; [] when there are none."""
    if images_dir is not None:
        folder = Path(images_dir)
        if not folder.is_dir():
            raise BenchmarkError(f"{folder}: --images must be a folder of images")
        images = _images_in(folder)
        if not images:
            raise BenchmarkError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return images
    candidates = [Path(m["card_dir"]) / "samples" for m in models if m.get("card_dir")]
    try:
        candidates.append(released_models_dir() / "samples")
    except ModelCardError:
        pass
    for folder in candidates:
        if folder.is_dir() and (images := _images_in(folder)):
            return images
    return []


def _images_in(folder: Path) -> list[str]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return [str(p) for p in files[:MAX_IMAGES]]


def default_threads() -> list[int]:
    return list(range(1, device_info.usable_cores() + 1))


def plan(models: list[dict], runtimes: list[str], threads: list[int], targets: list[tuple],
         runs: int, warmup: int, images: list[str], end_to_end: bool) -> list[Job]:
    """Every configuration, in the order that keeps compared models adjacent in time. ONNX
    exports run once per installed ONNX backend and thread count, next to the first CPU
    configuration of the TFLite models."""
    jobs = []
    exports = [m for m in models if m.get("role") == "onnx"]
    backends = onnx_backends() if exports else []
    first_cpu = next((t for t in targets if t[0] == "cpu"), None)
    for runtime in runtimes:
        for target, xnnpack in targets:
            for count in threads:
                for model in models:
                    if model.get("role") == "onnx":
                        continue
                    jobs.append(Job(model=model["path"], label=model["label"], runtime=runtime,
                                    threads=count, target=target, xnnpack=xnnpack, runs=runs,
                                    warmup=warmup, images=images, end_to_end=end_to_end))
                if runtime != runtimes[0] or (target, xnnpack) != first_cpu:
                    continue
                for backend in backends:
                    for model in exports:
                        jobs.append(Job(model=model["path"], label=model["label"],
                                        runtime=backend, threads=count, target="cpu",
                                        xnnpack=None, runs=runs, warmup=warmup, images=images,
                                        end_to_end=end_to_end))
    return jobs


def _worker_env() -> dict:
    env = dict(os.environ)
    # The worker must import this copy of covid_edge even when it is not pip-installed.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def call_worker(request: dict, timeout: float) -> dict:
    """Run one request in a fresh Python; errors come back as a result with status 'error'."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "covid_edge.benchmarks.worker"],
            input=json.dumps(request), capture_output=True, text=True, timeout=timeout,
            env=_worker_env(), check=False)
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"timed out after {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    # The process died before answering (a crash in native code, out of memory).
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"status": "error",
            "reason": f"the measuring process exited with code {done.returncode}: {tail}"}


def run_job(job: Job) -> dict:
    per_call_s = 5.0  # generous: a float32 model without XNNPACK on a Pi Zero
    timeout = 120 + per_call_s * (job.runs + job.warmup) * (2 if job.end_to_end else 1)
    result = call_worker({"job": job.to_dict()}, timeout)
    if result.get("status") != "ok":
        result.update({"model": job.label, "path": job.model, "runtime": job.runtime,
                       "target": job.target, "xnnpack": job.xnnpack, "threads": job.threads})
    return result


def edgetpu_available(runtime: str) -> tuple[bool, str | None]:
    """(delegate loads, why not / which libedgetpu), asked in a fresh process."""
    answer = call_worker({"action": "probe-edgetpu", "runtime": runtime}, timeout=60)
    if answer.get("edgetpu"):
        library = answer.get("library") or {}
        return True, (f"Edge TPU: {library.get('library')}, "
                      f"{library.get('version') or 'runtime version unknown'}, "
                      f"{library.get('devices')} device(s)")
    return False, answer.get("reason")


def targets_for(device: str, xnnpack: str, runtimes: list[str]) -> tuple[list[tuple], list[str]]:
    """(target, xnnpack) pairs for --device and --xnnpack, and notes for the report."""
    cpu = [("cpu", setting) for setting in {"on": [True], "off": [False],
                                            "both": [True, False]}[xnnpack]]
    if device == "cpu":
        return cpu, []
    reasons = {}
    for runtime in runtimes:
        ok, reason = edgetpu_available(runtime)
        if ok:
            return (cpu if device == "auto" else []) + [("edgetpu", None)], [reason]
        reasons[runtime] = reason
    reason = next(iter(reasons.values()), None) or "no Edge TPU delegate"
    if device == "edgetpu":
        raise BenchmarkError(reason)
    return cpu, [f"--device auto: CPU only ({reason})"]


def run_benchmark(models: list[dict], jobs: list[Job], settings: dict,
                  notes: list[str] | None = None, progress=None) -> dict:
    """Run `jobs`, bracketed by the device's state, and assemble the JSON report.
    `progress(job, steps)` is told when a job starts (0) and ends (1)."""
    state_before = device_info.thermal_state()
    started = time.perf_counter()
    results = []
    for job in jobs:
        if progress is not None:
            progress(job, 0)  # show what is being measured now
        results.append(run_job(job))
        if progress is not None:
            progress(job, 1)
    elapsed = time.perf_counter() - started
    state_after = device_info.thermal_state()

    warnings = device_info.state_warnings(state_before, state_after)
    if any(r.get("tensorflow_imported") and r.get("runtime") != "tensorflow" for r in results):
        warnings.append("TensorFlow was imported by a runtime other than tensorflow: "
                        "the base install would not have it (report this as a bug)")
    comparisons = compare(results, models)
    if any(c.get("reference", {}).get("comparable") is False for c in comparisons):
        warnings.append("our model and the reference have different input sizes: "
                        "their latency ratio is not a like-for-like comparison")
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "disclaimer": DISCLAIMER,
        "settings": settings,
        "device": device_info.describe_device(),
        "state_before": state_before,
        "state_after": state_after,
        "elapsed_s": round(elapsed, 1),
        "warnings": warnings,
        "notes": list(notes or []),
        "models": models,
        "results": results,
        "comparisons": comparisons,
        "goals": goal_summary(comparisons),
    }
