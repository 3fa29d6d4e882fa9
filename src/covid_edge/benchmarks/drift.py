"""How predictions hold up when the model is quantized: every variant on a labelled folder,
scored against the truth and against the float reference.

Each image is decoded once and given to every variant, so the variants see identical pixels and
differ only by what quantization did to them. The result is one JSON-ready dict; the report
(drift_report.py) is drawn from it alone.

TensorFlow-free unless a Keras model is asked for (`keras_source` / its runner import it then).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import DISCLAIMER, dataset, metrics
from ..classes import ClassScheme
from ..image_io import ImageReadError, read_image
from ..model_card import CARD_FILENAME, ModelCardError, load_card, preprocess_spec, sha256_file
from ..preprocess import PreprocessSpec, load_pixels, resize_gray, to_model_input

SCHEMA = "covid-edge/bench-drift/1"
# Table order: the reference candidates first, most faithful first, then the quantized ones.
VARIANT_ORDER = ("keras", "float32", "float16", "dynamic", "int8")
REFERENCE_ORDER = ("keras", "float32", "float16")
SPLITS = ("auto", "test", "val", "train", "all")
SPLIT_FILE = Path("training") / "split.csv"
# Images decoded per step: one batch for Keras, and a bound on memory on a Pi.
CHUNK = 32
LATENCY_SCHEMA_PREFIX = "covid-edge/bench-latency/"


class DriftError(Exception):
    """A drift benchmark that cannot run; the message says what to do."""


class DriftModelError(DriftError):
    """The models to compare cannot be loaded (no model card, no variant file, a file the
    runtime refuses): exit 3, as classify exits for a model it cannot load."""


class LatencyReportError(DriftError):
    """--latency names no latency report: a usage error (2), like the other options."""


@dataclass
class Source:
    """One model to evaluate: a TFLite variant of the card, or the Keras original."""

    name: str
    kind: str  # "tflite" or "keras"
    path: str
    bytes: int
    sha256: str
    description: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


# -- what to evaluate -------------------------------------------------------------------------

def card_sources(models_dir: Path) -> tuple[dict, list[Source]]:
    """The model card in `models_dir` and its variants whose files are there."""
    try:
        card = load_card(models_dir / CARD_FILENAME)
    except ModelCardError as exc:
        raise DriftModelError(f"{exc}; pass --models DIR, a folder that `covid-edge convert` "
                              "wrote") from None
    sources = []
    for name, entry in card["variants"].items():
        path = models_dir / entry.get("file", "")
        if entry.get("file") and path.is_file():
            sources.append(Source(name, "tflite", str(path), path.stat().st_size,
                                  sha256_file(path), entry.get("description", "")))
    if not sources:
        raise DriftModelError(f"{models_dir}: none of the model card's variant files is there")
    return card, sources


def keras_source(path: Path) -> Source:
    """The Keras model as a source; refuses early (before any work) without TensorFlow."""
    import importlib.util

    if importlib.util.find_spec("keras") is None or importlib.util.find_spec("tensorflow") is None:
        from .. import install_hint

        raise DriftError(f"--keras needs TensorFlow and Keras: {install_hint('train')} "
                         "(or leave --keras out: the float TFLite model is then the reference)")
    if not path.is_file() or path.suffix != ".keras":
        raise DriftError(f"{path}: --keras wants the model.keras file `covid-edge train` wrote")
    return Source("keras", "keras", str(path), path.stat().st_size, sha256_file(path),
                  "the trained Keras model (float32, TensorFlow)")


def order_sources(sources: list[Source]) -> list[Source]:
    rank = {name: i for i, name in enumerate(VARIANT_ORDER)}
    return sorted(sources, key=lambda s: rank.get(s.name, len(rank)))


def choose_reference(sources: list[Source]) -> tuple[str | None, str]:
    """The float model the others are compared with, and why that one."""
    names = [s.name for s in sources]
    for name in REFERENCE_ORDER:
        if name in names:
            why = {
                "keras": "the trained Keras model (--keras)",
                "float32": "the float32 TFLite model (no --keras given)",
                "float16": "the float16 TFLite model (no --keras given and no float32 file; "
                           "float16 weights round to about 3 significant digits)",
            }[name]
            return name, why
    return None, ("no float model (float32 or float16 TFLite, or --keras): agreement and "
                  "probability shift cannot be measured")


# -- which images ----------------------------------------------------------------------------

def read_split_file(path: Path) -> dict[str, str]:
    try:
        items, _, split = dataset.read_split(path)
    except (OSError, KeyError, ValueError) as exc:
        raise DriftError(f"{path}: not a readable split file ({exc}); it should have the "
                         "columns path,label,group,split that `covid-edge train` writes") from None
    return {item.path: part for item, part in zip(items, split)}


def select_images(data_dir: Path, split: str = "auto", split_file: Path | None = None,
                  limit: int | None = None, seed: int = 0, labels=dataset.LABELS
                  ) -> tuple[list[dataset.Item], dict]:
    """The labelled images to evaluate, and a record of how they were chosen.

    split "auto": when DATA_DIR shares files with the split the model was trained on, only its
    test split (training and validation images would flatter the model, and the model card's
    figures are on the test split); otherwise every image (new data). "all": every image.
    "test"/"val"/"train": that part of the split file. `limit`: at most that many per class.
    `labels`: the model's classes; images of other classes (folders or manifest labels) are
    left out.
    """
    labels = tuple(labels)
    wanted = (f"one sub-folder per class ({', '.join(labels)}) or a MANIFEST.csv with "
              "path,label columns")
    if Path(data_dir).is_dir() and not any(
            entry.is_dir() for entry in Path(data_dir).iterdir()) and not (
            Path(data_dir) / dataset.MANIFEST).is_file():
        raise DriftError(f"{data_dir}: needs {wanted}")
    try:
        items = [item for item in dataset.scan(data_dir) if item.label in labels]
    except FileNotFoundError as exc:
        raise DriftError(str(exc)) from None
    if not items:
        raise DriftError(f"{data_dir}: no images of the model's classes: needs {wanted}")
    selection = {"data_dir": str(data_dir), "images_in_folder": len(items), "requested": split,
                 "split": "all", "split_file": str(split_file) if split_file else None,
                 "limit_per_class": limit}
    chosen = items
    if split == "all":
        selection["reason"] = "every image in DATA_DIR (--split all)"
    elif split_file is None or not split_file.is_file():
        if split != "auto":
            raise DriftError(f"--split {split} needs the training split file: pass --split-file "
                             "PATH/split.csv (the model folder's training/split.csv)")
        selection["split_file"] = None
        selection["reason"] = ("every image in DATA_DIR: no training/split.csv beside the model "
                               "to tell training images from test images")
    else:
        parts = read_split_file(split_file)
        known = [item for item in items if item.path in parts]
        if split == "auto" and not known:
            selection["reason"] = ("every image in DATA_DIR: it shares no file name with the "
                                   "training split, so it is treated as new data")
        else:
            wanted = "test" if split == "auto" else split
            chosen = [item for item in items if parts.get(item.path) == wanted]
            in_split = sum(1 for part in parts.values() if part == wanted)
            selection.update({"split": wanted, "images_in_split": in_split,
                              "split_images_missing": in_split - len(chosen),
                              "images_not_in_split_file": len(items) - len(known)})
            if split == "auto":
                selection["reason"] = (
                    f"DATA_DIR holds the training data ({len(known)} of its images are in the "
                    f"split file): only its {wanted} split, as in the model card "
                    "(--split all for every image)")
            else:
                selection["reason"] = f"the {wanted} split of the split file (--split {wanted})"
            if not chosen:
                raise DriftError(f"{data_dir}: none of the {in_split} {wanted}-split images of "
                                 f"{split_file} is in this folder; pass --split all to use "
                                 "every image")
    if limit is not None:
        chosen = limit_per_class(chosen, limit, seed, labels)
        selection["reason"] += f"; at most {limit} per class (--limit)"
    selection["images"] = len(chosen)
    selection["per_class"] = {label: sum(item.label == label for item in chosen)
                              for label in labels}
    return chosen, selection


def limit_per_class(items: list[dataset.Item], limit: int, seed: int = 0,
                    labels=dataset.LABELS) -> list[dataset.Item]:
    """A seeded random `limit` per class (not the first in name order: names can carry a
    source hospital or date), kept in name order."""
    rng = np.random.default_rng(seed)
    kept = []
    for label in labels:
        pool = [item for item in items if item.label == label]
        kept += [pool[i] for i in sorted(rng.permutation(len(pool))[:limit])]
    return sorted(kept, key=lambda item: item.path)


# -- running the models ----------------------------------------------------------------------

class TFLiteRunner:
    def __init__(self, source: Source, runtime: str | None, threads: int | None):
        from ..edge_runtime.classifier import Classifier, ModelError, ModelIntegrityWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                self.classifier = Classifier.load(source.path, runtime=runtime,
                                                  num_threads=threads)
            except ModelError as exc:
                raise DriftModelError(f"{source.name}: {exc}") from None
        self.warnings = [f"{source.name}: {w.message}" for w in caught
                         if issubclass(w.category, ModelIntegrityWarning)]
        self.runtime = self.classifier.runtime.label

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Every class's probability (n, N), the model's own (before calibration)."""
        classifier = self.classifier
        return np.array([classifier.run(classifier.prepare_input(p)).probabilities
                         for p in pixels])

    def refusal(self, pixels: np.ndarray, colourfulness, size, gray=None) -> str | None:
        """The guard's reason to refuse this image, as `classify` would give it."""
        from .scoring import score_decoded

        return score_decoded(self.classifier, pixels, colourfulness, size, gray=gray).refused


class KerasRunner:
    def __init__(self, source: Source, spec: PreprocessSpec, scheme: ClassScheme):
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        try:
            self.model = keras.models.load_model(source.path, compile=False)
        except Exception as exc:  # noqa: BLE001 - Keras' refusals come as many types
            raise DriftModelError(f"{source.path}: Keras cannot load it "
                                  f"({type(exc).__name__}: {exc})") from None
        shape = tuple(self.model.input_shape[1:])
        if shape != spec.input_shape:
            raise DriftError(f"{source.path} takes {shape} but the model card's preprocessing "
                             f"makes {spec.input_shape}: this Keras model is not the one the "
                             "TFLite files were converted from")
        self.spec = spec
        self.scheme = scheme
        self.warnings: list[str] = []
        self.runtime = f"keras {keras.__version__}"

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        x = to_model_input(np.asarray(pixels), self.spec)
        # A direct call, not predict(): no per-call dataset set-up for a batch this small.
        output = np.asarray(self.model(x, training=False), dtype=np.float64)
        return self.scheme.probabilities(output.reshape(len(x), self.scheme.output_size))


def make_runners(sources: list[Source], spec: PreprocessSpec, runtime: str | None,
                 threads: int | None, scheme: ClassScheme) -> dict:
    return {s.name: (KerasRunner(s, spec, scheme) if s.kind == "keras" else
                     TFLiteRunner(s, runtime, threads)) for s in sources}


def predict(data_dir: Path, items: list[dataset.Item], runners: dict, spec: PreprocessSpec,
            progress=None, guarded: str | None = None
            ) -> tuple[list[dataset.Item], dict[str, np.ndarray], list[dict], list]:
    """Probabilities of every variant for every readable image; unreadable images are left
    out of all variants alike and returned with the reason. `guarded`: the variant whose
    guard is asked about every image too (what `classify` would refuse); the last value is
    its reason per kept image (None: accepted), empty without `guarded`."""
    kept, unreadable, refusals = [], [], []
    outputs: dict[str, list] = {name: [] for name in runners}
    for start in range(0, len(items), CHUNK):
        chunk, pixels = [], []
        for item in items[start:start + CHUNK]:
            try:
                decoded = read_image(data_dir / item.path, target_size=(spec.width, spec.height),
                                     high_bit_depth=spec.high_bit_window)
                pixels.append(resize_gray(decoded.gray, spec))  # = load_pixels
                chunk.append(item)
            except ImageReadError as exc:
                unreadable.append({"path": item.path, "label": item.label, "error": str(exc)})
                continue
            if guarded is not None:
                refusals.append(runners[guarded].refusal(pixels[-1], decoded.colourfulness,
                                                         decoded.size, decoded.gray))
        if pixels:
            batch = np.stack(pixels)
            for name, runner in runners.items():
                outputs[name].append(runner(batch))
            kept += chunk
        if progress is not None:
            progress(len(items[start:start + CHUNK]))
    probabilities = {name: (np.concatenate(parts) if parts else np.empty((0, 0)))
                     for name, parts in outputs.items()}
    return kept, probabilities, unreadable, refusals


# -- the figures ---------------------------------------------------------------------------

def versus_reference(items: list[dataset.Item], probs: np.ndarray, reference: np.ndarray,
                     threshold: float, scheme: ClassScheme) -> dict:
    """Verdict agreement and shift of P(positive) of one variant against the reference, with
    every image whose verdict flips (probs, reference: every class's probability, (n, N))."""
    verdicts = scheme.verdict_indices(probs, threshold)
    reference_verdicts = scheme.verdict_indices(reference, threshold)
    positive, reference_positive = probs[:, scheme.positive_index], reference[:, scheme.positive_index]
    shift = np.abs(positive - reference_positive)
    flipped = np.flatnonzero(verdicts != reference_verdicts)
    several = scheme.count > 2  # then a flip can be between two other classes: name both
    return {
        "agreement": float(np.mean(verdicts == reference_verdicts)) if len(probs) else None,
        "mean_abs_probability_difference": float(shift.mean()) if len(probs) else None,
        "max_abs_probability_difference": float(shift.max()) if len(probs) else None,
        "flips": [{"path": items[i].path, "label": items[i].label,
                   "reference_probability": float(reference_positive[i]),
                   "probability": float(positive[i]),
                   **({"reference_verdict": scheme.labels[reference_verdicts[i]],
                       "verdict": scheme.labels[verdicts[i]]} if several else {})}
                  for i in flipped],
    }


def model_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float,
                  scheme: ClassScheme) -> dict:
    """Positive-vs-rest figures (all a two-class report shows); with more classes also the
    N-class verdict's accuracy, N x N confusion matrix and per-class figures."""
    if scheme.count == 2:
        return metrics.binary_metrics(labels == scheme.positive_index,
                                      probs[:, scheme.positive_index], threshold)
    return metrics.class_metrics(labels, probs, scheme, threshold)


def evaluate(items: list[dataset.Item], probabilities: dict[str, np.ndarray],
             reference: str | None, threshold: float, scheme: ClassScheme) -> dict[str, dict]:
    labels = dataset.label_indices(items, scheme.labels)
    results = {}
    for name, probs in probabilities.items():
        entry = {"metrics": model_metrics(labels, probs, threshold, scheme)}
        if reference is not None:
            entry["versus_reference"] = versus_reference(items, probs, probabilities[reference],
                                                         threshold, scheme)
        results[name] = entry
    return results


def guard_figures(items: list[dataset.Item], probabilities: np.ndarray, refusals: list,
                  threshold: float, classifier) -> dict:
    """The guarded variant's figures as `classify` gives them: refused images have no verdict
    and are counted apart; probabilities on the calibrated scale people see."""
    accepted = np.array([reason is None for reason in refusals], dtype=bool)
    scheme = classifier.scheme
    labels = dataset.label_indices(items, scheme.labels)
    kept_items = [item for item, ok in zip(items, accepted) if ok]
    return {
        "variant": classifier.variant,
        "answered": int(accepted.sum()),
        "refused": [{"path": item.path, "label": item.label, "reason": reason}
                    for item, reason in zip(items, refusals) if reason is not None],
        "metrics": model_metrics(labels[accepted], probabilities[accepted], threshold, scheme)
        if len(kept_items) else None,
        "calibrated_threshold": classifier.calibrated_positive(threshold),
    }


def card_test_metrics(card: dict) -> dict[str, dict]:
    """The model card's own test-split figures, for the report to set beside ours."""
    figures = {name: entry["metrics"] for name, entry in card["variants"].items()
               if entry.get("metrics")}
    keras_test = (card.get("keras_metrics") or {}).get("test")
    if keras_test:
        figures["keras"] = keras_test
    return figures


# -- latency from `bench latency --out` -----------------------------------------------------

def load_latency(path: Path) -> dict:
    """A latency.json, given as the file or the folder `bench latency --out` wrote."""
    if path.is_dir():
        path = path / "latency.json"
    wanted = "pass the latency.json that `covid-edge bench latency --out DIR` wrote"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LatencyReportError(f"{path}: no such file; {wanted}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        # A decoder's position in an image or a CSV tells the user nothing.
        raise LatencyReportError(f"{path}: not JSON, so not a latency report; {wanted}"
                                 ) from None
    except OSError as exc:
        raise LatencyReportError(f"{path}: cannot read it ({exc.strerror}); {wanted}") from None
    if not isinstance(report, dict) or not str(report.get("schema", "")).startswith(
            LATENCY_SCHEMA_PREFIX):
        raise LatencyReportError(f"{path}: not a `covid-edge bench latency` report; {wanted}")
    report["_path"] = str(path)
    return report


def latency_for(sources: list[Source], latency_report: dict) -> dict[str, dict]:
    """p50 at 1 thread per variant, matched by the file's sha256 (the very same file, not just
    the same variant name); XNNPACK on preferred, the runtime's default."""
    models = latency_report.get("models", [])
    runtimes = latency_report.get("settings", {}).get("runtimes") or []
    found = {}
    for source in sources:
        labels = {m["label"] for m in models if m.get("sha256") == source.sha256}
        candidates = [r for r in latency_report.get("results", [])
                      if r.get("status") == "ok" and r.get("model") in labels
                      and r.get("threads") == 1 and r.get("target") == "cpu"]
        if not candidates:
            continue
        candidates.sort(key=lambda r: (r.get("xnnpack") is not True,
                                       runtimes.index(r["runtime"]) if r["runtime"] in runtimes
                                       else len(runtimes)))
        best = candidates[0]
        found[source.name] = {
            "p50_ms": best["inference"]["p50_ms"],
            "end_to_end_p50_ms": (best.get("end_to_end") or {}).get("p50_ms"),
            "runtime": best["runtime"], "xnnpack": best.get("xnnpack"), "threads": 1,
        }
    return found


def measure_latency(sources: list[Source], runners: dict, pixels: np.ndarray,
                    runs: int) -> dict[str, dict]:
    """p50 of inference at 1 thread for every TFLite variant, in this process, on a real
    X-ray: the latency column of the one-command table (`--latency-runs N`). A fresh
    1-thread interpreter per variant; XNNPACK as the runtime's default."""
    from ..edge_runtime.classifier import Classifier

    found = {}
    for source in sources:
        if source.kind != "tflite":
            continue
        classifier = Classifier.load(source.path, num_threads=1, guard=False,
                                     runtime=runners[source.name].classifier.runtime.name)
        prepared = classifier.prepare_input(pixels)
        for _ in range(max(2, runs // 10)):  # warm-up: first invokes allocate and pack
            classifier.run(prepared)
        times = [classifier.run(prepared).latency_ms for _ in range(runs)]
        found[source.name] = {"p50_ms": float(np.median(times)), "end_to_end_p50_ms": None,
                              "runtime": classifier.runtime.label, "xnnpack": None,
                              "threads": 1, "runs": runs}
    return found


def latency_summary(latency_report: dict) -> dict:
    """Where the latency figures come from, and the latency reference model (Google's
    MobileNetV2, given to `bench latency --reference`) for the variants table."""
    device = latency_report.get("device", {})
    summary = {"path": latency_report.get("_path"), "created": latency_report.get("created"),
               "device": device.get("board_model") or device.get("cpu_model"),
               "cores": device.get("usable_cores"),
               "warnings": latency_report.get("warnings", []), "reference": None}
    reference = next((m for m in latency_report.get("models", [])
                      if m.get("role") == "reference"), None)
    if reference is not None:
        source = Source(Path(reference["path"]).stem, "tflite", reference["path"],
                        reference.get("bytes", 0), reference.get("sha256", ""))
        measured = latency_for([source], latency_report).get(source.name)
        summary["reference"] = {"name": source.name, "path": source.path,
                                "bytes": source.bytes,
                                "p50_ms": measured["p50_ms"] if measured else None}
    return summary


# -- the whole run ---------------------------------------------------------------------------

def run(data_dir: Path, models_dir: Path, *, keras_path: Path | None = None,
        split: str = "auto", split_file: Path | None = None, limit: int | None = None,
        runtime: str | None = None, threads: int | None = None,
        latency_report: dict | None = None, latency_runs: int | None = None,
        command: str = "", on_start=None, progress=None) -> dict:
    """Evaluate every variant on DATA_DIR; a dict ready for JSON.

    `on_start(n_images)` is called once the images are chosen; `progress(n)` after each chunk.
    """
    from .device_info import describe_device

    card, sources = card_sources(models_dir)
    if keras_path is not None:
        sources.append(keras_source(keras_path))
    sources = order_sources(sources)
    if split_file is None and (models_dir / SPLIT_FILE).is_file():
        split_file = models_dir / SPLIT_FILE
    try:
        spec = preprocess_spec(card)
        threshold = float(card["threshold"])
        scheme = ClassScheme.from_card(card)
    except (KeyError, TypeError, ValueError) as exc:
        raise DriftModelError(f"{models_dir / CARD_FILENAME}: invalid model card ({exc})"
                              ) from None
    items, selection = select_images(data_dir, split, split_file, limit, labels=scheme.labels)
    reference, reference_why = choose_reference(sources)

    runners = make_runners(sources, spec, runtime, threads, scheme)
    default = card.get("default_variant", "int8")
    guarded = default if default in runners and hasattr(runners[default], "refusal") else None
    if on_start is not None:
        on_start(len(items))
    started = time.perf_counter()
    kept, probabilities, unreadable, refusals = predict(data_dir, items, runners, spec,
                                                        progress, guarded)
    elapsed = time.perf_counter() - started
    if not kept:
        raise DriftError(f"{data_dir}: none of the {len(items)} selected images could be read "
                         f"(first: {unreadable[0]['path']}: {unreadable[0]['error']})")

    results = evaluate(kept, probabilities, reference, threshold, scheme)
    guard = guard_figures(kept, probabilities[guarded], refusals, threshold,
                          runners[guarded].classifier) if guarded else None
    latency = latency_for(sources, latency_report) if latency_report else {}
    measured_here = None
    if latency_runs:
        sample = load_pixels(data_dir / kept[0].path, spec)
        latency = measure_latency(sources, runners, sample, latency_runs)
        device = describe_device()
        measured_here = {"path": f"measured in this run ({latency_runs} invokes per variant, "
                                 "1 thread, after a warm-up)",
                         "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "device": device.get("board_model") or device.get("cpu_model"),
                         "cores": device.get("usable_cores"), "warnings": [],
                         "reference": None}
    card_figures = card_test_metrics(card)
    variants = []
    for source in sources:
        entry = {**source.to_dict(), "runtime": runners[source.name].runtime,
                 **results[source.name], "latency": latency.get(source.name),
                 "model_card_test_metrics": card_figures.get(source.name)}
        variants.append(entry)

    notes = [w for runner in runners.values() for w in runner.warnings]
    if unreadable:
        notes.append(f"{len(unreadable)} image(s) could not be read and were left out of every "
                     f"variant (first: {unreadable[0]['path']}: {unreadable[0]['error']})")
    if selection.get("split_images_missing"):
        notes.append(f"{selection['split_images_missing']} image(s) of the "
                     f"{selection['split']} split are not in DATA_DIR")
    if latency_report is not None:
        # Keras is not a .tflite file: `bench latency` never measures it.
        unmatched = [s.name for s in sources if s.name not in latency and s.kind == "tflite"]
        if unmatched:
            notes.append("no 1-thread CPU latency in the latency report for "
                         f"{', '.join(unmatched)} (latency is matched by file sha256)")
    int8 = next((v for v in variants if v["name"] == "int8"), None)
    flips = int8["versus_reference"]["flips"] if int8 and "versus_reference" in int8 else None
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "disclaimer": DISCLAIMER,
        "command": command,
        "model": {"name": card.get("name"), "version": card.get("version"),
                  "card": str(models_dir / CARD_FILENAME), "threshold": threshold,
                  "threshold_rule": card.get("threshold_rule"),
                  "positive_label": card.get("positive_label"),
                  "labels": list(scheme.labels), "output_kind": scheme.output_kind,
                  "input_size": [spec.height, spec.width]},
        "selection": selection,
        "reference": {"variant": reference, "why": reference_why},
        "n_images": len(kept),
        "elapsed_s": round(elapsed, 1),
        "device": describe_device(),
        "variants": variants,
        "int8_flips": flips,
        # The figures above are the models alone, every image; this is what `classify` answers
        # with the released variant and its guard: refused images get no verdict.
        "guard": guard,
        "unreadable": unreadable,
        "latency": (measured_here if measured_here else
                    latency_summary(latency_report) if latency_report else None),
        "notes": notes,
        # P(positive) per variant (the plots read it); with more classes every class's too.
        "predictions": [
            {"path": item.path, "label": item.label,
             "probabilities": {name: float(probabilities[name][i, scheme.positive_index])
                               for name in probabilities},
             **({"class_probabilities": {name: [float(p) for p in probabilities[name][i]]
                                         for name in probabilities}}
                if scheme.count > 2 else {})}
            for i, item in enumerate(kept)],
    }
