"""`covid-edge convert`: a trained run -> TFLite variants, each loaded back, evaluated on the
test split through the edge runtime, and described in a model card."""

from __future__ import annotations

import csv
import json
import platform
import shlex
import shutil
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

from .. import DISCLAIMER, __version__, dataset, kernel_sets, metrics, model_card
from ..classes import ClassScheme
from ..preprocess import PreprocessSpec, load_pixels
from ..edgetpu.compile import EdgeTpuCompileError, compiled_name, prepare_for_edgetpu
from ..edge_runtime.guard import OOD_STATS_FILENAME
from .bias_correction import BiasCorrectionError, correct_bias
from .card_markdown import TRAINING_PICTURES, write_markdown
from .quantize import (VARIANT_DESCRIPTIONS, VARIANTS, check_loadable, convert_variant,
                       export_saved_model, input_is_lossless, representative_images,
                       variant_filename, with_features)

TRAINING_FILES = (*TRAINING_PICTURES.values(), "metrics.json", "history.csv", "split.csv")


class ConvertError(Exception):
    """A run folder or output folder that conversion cannot use."""


class ModelFileError(ConvertError):
    """A model file that is there but that Keras cannot load (exit 3, as for any bad model)."""


def tolerance_command(models_dir: Path, which: str) -> str:
    """The command that measures a tolerance again, as the card records it: a figure in a card
    names what reruns it (convert measures it first; this script repeats it on the same
    validation images without converting)."""
    return (f"python scripts/measure_tolerance.py --models {shlex.quote(str(models_dir))} "
            f"--which {which}")


def load_run(model_path: Path) -> dict:
    run_path = model_path.parent / "run.json"
    if not run_path.is_file():
        raise ConvertError(f"no run.json beside {model_path}: convert needs the folder that "
                           "`covid-edge train` wrote (model.keras, run.json, split.csv)")
    return json.loads(run_path.read_text())


def check_out_dir(out_dir: Path, force: bool) -> None:
    ours = [variant_filename(v) for v in VARIANTS] + [model_card.CARD_FILENAME,
                                                       compiled_name(variant_filename("int8")),
                                                       OOD_STATS_FILENAME]
    existing = [name for name in ours if (out_dir / name).exists()]
    if existing and not force:
        raise ConvertError(f"{out_dir} already holds {', '.join(existing)}; choose another "
                           "--out or pass --force to overwrite")


def pick_samples(items, split, count: int, probabilities: dict[str, np.ndarray],
                 threshold: float, scheme: ClassScheme, exclude=frozenset(), part: str = "val",
                 avoid=frozenset()) -> list[dataset.Item]:
    """`count` correctly classified images of split `part`, shared among the classes (the
    positive class first), to ship and to pin reference outputs on: none of `exclude` (those
    the guard refuses), and none of `avoid` (those near a verdict boundary) unless a label has
    too few others. `probabilities`: path -> per-class probabilities (convert passes the int8
    model's on the validation images).

    Their P(positive) spreads from confident towards the threshold: reference outputs that
    all sit at the ends of the int8 range would let a device that computes differently pass
    `covid-edge bench check`.
    """
    chosen = []
    order = [scheme.positive] + [label for label in reversed(scheme.labels)
                                 if label != scheme.positive]
    shares = [count // len(order) + (index < count % len(order)) for index in range(len(order))]
    for label, take in zip(order, shares):
        positive = label == scheme.positive
        of_label = [item for item, where in zip(items, split)
                    if where == part and item.label == label and item.path in probabilities
                    and item.path not in exclude]
        clear = [item for item in of_label if item.path not in avoid]

        def right(pool):
            return [item for item in pool
                    if scheme.verdict(probabilities[item.path], threshold) == label]
        # A weak model (a quick trial) gets too few right, or too few clear of the threshold.
        pool = next((pool for pool in (right(clear), clear, right(of_label))
                     if len(pool) >= take), of_label)
        # Not too close to the threshold: a shipped sample should not flip between variants.
        targets = (threshold + (1 - threshold) * np.linspace(0.95, 0.25, take) if positive
                   else threshold * np.linspace(0.05, 0.45, take))
        for target in targets:
            best = min((item for item in pool if item not in chosen),
                       key=lambda item: abs(probabilities[item.path][scheme.positive_index]
                                            - target))
            chosen.append(best)
    return chosen


def evaluate(classifier, data_dirs, items, progress) -> np.ndarray:
    """The model's own per-class probabilities (n, N), before calibration (`classifier`
    without the guard)."""
    probabilities = np.empty((len(items), classifier.scheme.count))
    for index, item in enumerate(progress(items, f"testing {classifier.variant}")):
        prediction = classifier.classify_file(dataset.item_path(data_dirs, item))
        if prediction.error:
            raise ConvertError(f"{item.path}: {prediction.error}")
        probabilities[index] = list(prediction.raw_probabilities.values())
    return probabilities


def keras_probabilities(run_dir: Path, scheme: ClassScheme) -> dict[str, np.ndarray]:
    """path -> the Keras model's per-class probabilities, from the run's predictions.csv."""
    result = {}
    with open(run_dir / "predictions.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if scheme.output_kind == "softmax":
                result[row["path"]] = np.array([float(row[f"p_{label}"])
                                                for label in scheme.labels])
            else:
                result[row["path"]] = scheme.probabilities(float(row["probability"]))
    return result


def rethreshold(run: dict, items, split, keras_probs: dict, scheme: ClassScheme,
                target: float, log) -> dict:
    """The run with its screening threshold chosen again on the validation split for
    `target` sensitivity (`convert --target-sensitivity`), and its Keras metrics recomputed
    at that threshold."""
    parts = {name: [item for item, part in zip(items, split) if part == name]
             for name in dataset.SPLITS}
    probabilities = {name: np.array([keras_probs[item.path] for item in chosen])
                     for name, chosen in parts.items()}
    labels = {name: dataset.label_indices(chosen, scheme.labels)
              for name, chosen in parts.items()}
    positive = scheme.positive_index
    threshold = metrics.screening_threshold(labels["val"] == positive,
                                            probabilities["val"][:, positive], target)
    name = "COVID" if scheme.positive == "covid" else scheme.positive
    rule = (f"highest threshold with validation {name} sensitivity >= {target:.0%} (chosen at "
            f"conversion, `convert --target-sensitivity {target:g}`; training chose "
            f"{run['threshold']:.4f} for {run['config']['target_sensitivity']:.0%}; "
            "screening: a missed COVID case costs more than a false alarm)")
    if scheme.count > 2:
        rule += f"; below it, the verdict is the most probable of {', '.join(scheme.others)}"
    log(f"threshold {run['threshold']:.4f} -> {threshold:.4f}: {rule}")
    return run | {"threshold": threshold, "threshold_rule": rule,
                  "metrics": {name: metrics.class_metrics(labels[name], probabilities[name],
                                                          scheme, threshold)
                              for name in dataset.SPLITS},
                  "target_sensitivity_at_conversion": target}


def run_data_dirs(run: dict, data_dir: str | Path | None):
    """Where the run's images are: its one folder (--data overrides it), or {root: folder}."""
    if run.get("data_dirs"):
        if data_dir is not None:
            raise ConvertError("this run read several data folders (run.json data_dirs); "
                               "--data cannot stand in for them: restore those paths")
        missing = [path for path in run["data_dirs"].values() if not Path(path).is_dir()]
        if missing:
            raise ConvertError(f"data folder {missing[0]} (from run.json) is not here")
        return {name: Path(path) for name, path in run["data_dirs"].items()}
    folder = Path(data_dir or run["data_dir"])
    if not folder.is_dir():
        raise ConvertError(f"data folder {folder} (from run.json) is not here; pass --data DIR")
    return folder


def convert(model_path: str | Path, out_dir: str | Path, *, data_dir: str | Path | None = None,
            calibration_size: int = 300, sample_count: int = 6, seed: int = 0,
            log=print, progress=None, force: bool = False, edgetpu: bool = False,
            non_xray_dirs: tuple = (), ood_train_images: int = 2000,
            ood_components: int | None = None, ood_quantile: float = 0.995,
            ood_per_label: bool = False,
            bias_correction: bool = True, target_sensitivity: float | None = None,
            tolerance_images: int | None = None) -> dict:
    import keras
    import tensorflow as tf

    from ..edge_runtime.classifier import Classifier

    progress = progress or (lambda items, label: items)
    model_path, out_dir = Path(model_path), Path(out_dir)
    run_dir = model_path.parent
    run = load_run(model_path)
    scheme = ClassScheme.from_card(run)
    data_dir = run_data_dirs(run, data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_out_dir(out_dir, force)

    spec = PreprocessSpec.from_dict(run["preprocessing"])
    items, _, split = dataset.read_split(run_dir / "split.csv")
    train_items = [item for item, part in zip(items, split) if part == "train"]
    rng = np.random.default_rng(seed)
    calibration = [dataset.item_path(data_dir, train_items[i])
                   for i in sorted(rng.permutation(len(train_items))[:calibration_size])]
    log(f"loading {model_path}")
    try:
        model = keras.models.load_model(model_path, compile=False)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        # What the CLI's checks of the file cannot see (a config.json that is not a model's,
        # a zip without weights): one line, not Keras' traceback.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise ModelFileError(f"{model_path}: Keras cannot load it ({first})") from None

    variants, converted = {}, {}
    scratch = Path(tempfile.mkdtemp(prefix="covid-edge-convert-"))
    # Two outputs: the probability and the features the out-of-distribution guard measures.
    saved_model = export_saved_model(with_features(model), scratch / "saved_model")
    for variant in VARIANTS:
        log(f"converting {variant}: {VARIANT_DESCRIPTIONS[variant]}"
            + (f" (calibrated{' and bias-corrected' if bias_correction else ''} on "
               f"{len(calibration)} training images)" if variant == "int8" else ""))
        path = out_dir / variant_filename(variant)
        representative = representative_images(calibration, spec)
        converted[variant] = convert_variant(saved_model, variant, representative)
        correction = None
        if variant == "int8" and bias_correction:
            try:
                converted[variant], correction = correct_bias(
                    converted[variant], converted["float32"],
                    (batch[0] for batch in representative()), progress)
            except BiasCorrectionError as exc:
                raise ConvertError(f"int8 bias correction: {exc}") from None
        path.write_bytes(converted[variant])
        variants[variant] = {
            "file": path.name,
            "device": "cpu",
            "description": VARIANT_DESCRIPTIONS[variant],
            "bytes": path.stat().st_size,
            "sha256": model_card.sha256_file(path),
        }
        try:
            variants[variant].update(check_loadable(path, variant, scheme))
        except ValueError as exc:
            raise ConvertError(f"the {variant} file failed its check: {exc}") from None
        if variant == "int8":
            variants[variant]["bias_correction"] = ({"applied": True} | correction if correction
                                                    else {"applied": False})
        variants[variant]["input_lossless"] = input_is_lossless(
            spec, variants[variant]["input_quantization"], variants[variant]["input_dtype"])
        if not variants[variant]["input_lossless"]:
            log(f"warning: the {variant} input quantization "
                f"{variants[variant]['input_quantization']} merges grey levels; the calibration "
                "images probably lack pure black or white pixels")

    shutil.rmtree(scratch, ignore_errors=True)
    devices = {"cpu": variants["int8"]["file"]}
    edgetpu_entry = None
    if edgetpu:
        # Before the long evaluation: a model the Edge TPU cannot take fails fast.
        try:
            edgetpu_entry = prepare_for_edgetpu(out_dir / variants["int8"]["file"], out_dir,
                                                log=log)
        except EdgeTpuCompileError as exc:
            raise ConvertError(f"--edgetpu: {exc}") from None
        devices["edgetpu"] = edgetpu_entry["file"]

    samples_dir = out_dir / "samples"
    samples_dir.mkdir(exist_ok=True)
    stale = [path for path in samples_dir.iterdir()
             if path.is_file() and path.name.split("-", 1)[0] in scheme.labels]
    if stale:  # a previous conversion's samples (we are here with --force): theirs, not ours
        log(f"replacing {len(stale)} samples of the previous conversion in {samples_dir}")
        for path in stale:
            path.unlink()
    keras_probs = keras_probabilities(run_dir, scheme)
    if target_sensitivity is not None:
        run = rethreshold(run, items, split, keras_probs, scheme, target_sensitivity, log)

    card = {
        "schema_version": model_card.SCHEMA_VERSION,
        "name": "covid-edge-mobilenetv2",
        "version": __version__,
        "created": date.today().isoformat(),
        "disclaimer": DISCLAIMER,
        "task": ("frontal chest X-ray: COVID-19 vs normal (screening research)"
                 if scheme.count == 2 else
                 f"frontal chest X-ray: {' / '.join(scheme.labels)} (screening research; the "
                 f"verdict screens for {scheme.positive})"),
        "architecture": "MobileNetV2 (alpha 1.0), ImageNet-initialised, GAP -> dropout -> "
                        + ("dense(1, sigmoid)" if scheme.output_kind == "sigmoid"
                           else f"dense({scheme.count}, softmax)"),
        "labels": list(scheme.labels),
        "positive_label": scheme.positive,
        **({"output_kind": scheme.output_kind} if scheme.output_kind != "sigmoid" else {}),
        "output": ("two outputs, told apart by shape: [1, 1] the probability of the positive "
                   "label; [1, 1280] the pooled penultimate features (out-of-distribution guard)"
                   if scheme.output_kind == "sigmoid" else
                   f"two outputs, told apart by shape: [1, {scheme.count}] the probability of "
                   "each label, in label order; [1, 1280] the pooled penultimate features "
                   "(out-of-distribution guard)"),
        "preprocessing": spec.to_dict(),
        "threshold": run["threshold"],
        "threshold_rule": run["threshold_rule"],
        "default_variant": "int8",
        "variants": variants,
        "devices": devices,
    }
    if edgetpu_entry is not None:
        card["edgetpu"] = edgetpu_entry
    model_card.write_json(card, out_dir)  # the runtime needs it to evaluate the files below

    from . import ood_fit
    from .calibrate import calibrate

    training_dir = out_dir / "training"
    training_dir.mkdir(exist_ok=True)
    val = [item for item, part in zip(items, split) if part == "val"]
    int8_path = out_dir / variants["int8"]["file"]
    card["ood_guard"], val_probabilities = ood_fit.fit_guard(
        Classifier.load(int8_path, guard=False), data_dir, train_items, val, out_dir,
        train_images=ood_train_images, components=ood_components, quantile=ood_quantile,
        per_label=ood_per_label,
        seed=seed, progress=progress, log=log, scratch=scratch)
    distances = card["ood_guard"].pop("_distances")
    model_card.write_json(card, out_dir)  # with the guard's statistics, for the runtime

    test = [item for item, part in zip(items, split) if part == "test"]
    labels = dataset.label_indices(test, scheme.labels)
    keras_test = np.array([keras_probs[item.path] for item in test])
    threshold = run["threshold"]
    keras_verdicts = scheme.verdict_indices(keras_test, threshold)
    probabilities, verdicts = {}, {}
    for variant in VARIANTS:
        classifier = Classifier.load(out_dir / variants[variant]["file"], num_threads=None,
                                     guard=False)
        probabilities[variant] = probs = evaluate(classifier, data_dir, test, progress)
        verdicts[variant] = scheme.verdict_indices(probs, threshold)
        variants[variant]["metrics"] = metrics.class_metrics(labels, probs, scheme, threshold)
        variants[variant]["versus_keras"] = {
            "agreement": float(np.mean(verdicts[variant] == keras_verdicts)),
            "mean_abs_probability_difference": float(np.mean(np.abs(probs - keras_test))),
            "max_abs_probability_difference": float(np.max(np.abs(probs - keras_test))),
        }
        if scheme.count > 2:
            variants[variant]["versus_keras"]["agreement_by_class"] = {
                label: float(np.mean(verdicts[variant][labels == index]
                                     == keras_verdicts[labels == index]))
                for index, label in enumerate(scheme.labels) if np.any(labels == index)}
        shown = variants[variant]["metrics"]
        log(f"{variant:>8} test: accuracy {shown['accuracy']:.4f}  AUC {shown['roc_auc']:.4f}  "
            f"sensitivity {shown['sensitivity']:.4f}  agreement with Keras "
            f"{variants[variant]['versus_keras']['agreement']:.4f}")
    int8_flips = [item.path for item, a, b in zip(test, verdicts["int8"], verdicts["float32"])
                  if a != b]
    variants["int8"]["versus_float32"] = {
        "agreement": 1.0 - len(int8_flips) / len(test),
        "flipped": int8_flips,
    }
    if scheme.count > 2:
        variants["int8"]["versus_float32"]["agreement_by_class"] = {
            label: float(np.mean(verdicts["int8"][labels == index]
                                 == verdicts["float32"][labels == index]))
            for index, label in enumerate(scheme.labels) if np.any(labels == index)}

    # Temperature scaling of the positive-vs-rest logit (calibration.py): fitted on P(positive).
    positive = scheme.positive_index
    val_labels = dataset.label_indices(val, scheme.labels)
    card["calibration"] = calibrate(
        np.asarray(val_probabilities)[:, positive], val_labels == positive,
        probabilities["int8"][:, positive], labels == positive, threshold,
        training_dir / "reliability.png", clip=variants["int8"]["output_quantization"]["scale"] / 2,
        log=log)
    ood_fit.measure_into(card["ood_guard"], distances, int8_path, data_dir, test,
                         scratch / "non_xray", non_xray_dirs, progress, seed,
                         training_dir / "ood_distances.png", log)
    shutil.rmtree(scratch, ignore_errors=True)

    int8 = Classifier.load(out_dir / variants["int8"]["file"])
    # The tolerance `bench check` grants a device: how far LiteRT's own int8 kernel sets
    # disagree on validation images (never the test split: the tolerance and the samples are
    # chosen on them).
    measured_items = val if not tolerance_images or tolerance_images >= len(val) else [
        val[i] for i in sorted(np.random.default_rng(seed).permutation(len(val))
                               [:tolerance_images])]
    log(f"measuring the device-check tolerance: {len(measured_items)} validation images under "
        "each int8 kernel set")
    measured_paths = [dataset.item_path(data_dir, item) for item in measured_items]
    measured_on = f"validation split ({len(measured_items)} of {len(val)} images)"
    val_raw, spread = kernel_sets.measure(
        int8, measured_paths, progress=lambda paths: progress(paths, "kernel sets"))
    tolerance_steps = kernel_sets.tolerance_steps(spread)
    log(f"device-check tolerance: {tolerance_steps} output steps (kernel sets differ by up to "
        f"{spread['max_steps']})")
    samples = pick_clear_samples(int8, measured_items, val_raw[kernel_sets.DEFAULT_KERNEL_SET],
                                 tolerance_steps, sample_count, data_dir, samples_dir)
    reference = []
    for item, path in samples:
        inference = int8.run(int8.prepare_input(load_pixels(path, spec)))
        raw = [int(value) for value in inference.raw]
        entry = {"file": f"samples/{path.name}", "sha256": model_card.sha256_file(path),
                 "label": item.label,
                 # A sigmoid model's one output stays a number (0.2.0's cards); N outputs a list.
                 "raw_output": raw[0] if len(raw) == 1 else raw,
                 "probability": inference.positive,
                 "verdict": int8.verdict(inference.probabilities)}
        if scheme.count > 2:
            entry["probabilities"] = scheme.as_dict(inference.probabilities)
        reference.append(entry)

    reference_outputs = kernel_sets.store(
        {"variant": "int8", "images": reference}, out_dir, int8, spread,
        measured_on=measured_on,
        command=tolerance_command(out_dir, "classifier"))

    card.update({
        "keras_metrics": run["metrics"],
        "reference_outputs": reference_outputs,
        "data": {
            "source": _data_description(run),
            # Each root of split.csv's root column, as the training command named it.
            **({"folders": dict(zip(run["data_dirs"], [run["config"]["data_dir"],
                                                       *run["config"]["more_data"]]))}
               if run.get("data_dirs") else {}),
            "content_sha256": run["data_sha256"],
            "manifest_sha256": _manifest_hash(data_dir),
            "split": "stratified by class, near-duplicate groups kept within one split "
                     "(training/split.csv)",
            "split_counts": run["split_counts"],
            "duplicate_groups": run["duplicate_groups"],
            "calibration_images": len(calibration),
        },
        "training": run["config"] | {"seconds": run.get("seconds")},
        "versions": run["versions"] | {
            "converter_tensorflow": tf.__version__, "keras_converter": keras.__version__,
            "runtime": variants["int8"]["runtime"], "python_convert": platform.python_version()},
        "reproduce": reproduce_commands(run, data_dir, calibration_size, seed, edgetpu,
                                        non_xray_dirs, bias_correction, ood_components,
                                        tolerance_images, ood_train_images=ood_train_images,
                                        ood_quantile=ood_quantile, ood_per_label=ood_per_label),
    })
    model_card.write_json(card, out_dir)
    refresh_lung_reference(out_dir, [path for _, path in samples], log, measured_paths,
                           f"{measured_on}, the classifier's X-rays", progress)
    for name in TRAINING_FILES:
        if (run_dir / name).exists():
            shutil.copyfile(run_dir / name, training_dir / name)
        else:  # an averaged run has no curves: none may stay from a conversion this overwrites
            (training_dir / name).unlink(missing_ok=True)
    write_markdown(card, out_dir)
    return card


def pick_clear_samples(int8, items, raw: np.ndarray, tolerance_steps: int, count: int,
                       data_dir, samples_dir: Path) -> list:
    """The samples `bench check` runs, chosen on validation images by the int8 model's own
    outputs (`raw`, one row per item): correctly classified, none whose verdict could change
    within the tolerance (a sample near the threshold says nothing when its verdict differs
    between kernels), none the guard refuses. [(item, copied path)]."""
    from ..benchmarks.check import verdicts_within
    from ..edge_runtime.classifier import _dequantize

    probabilities = {item.path: int8.scheme.probabilities(_dequantize(row, int8.output_details))
                     for item, row in zip(items, raw)}
    near = {item.path for item, row in zip(items, raw)
            if len(verdicts_within(int8, row, tolerance_steps)) > 1}
    refused: set[str] = set()
    split = ["val"] * len(items)
    for _ in range(10):
        chosen = pick_samples(items, split, count, probabilities, int8.model_threshold,
                              int8.scheme, refused, avoid=near)
        # A shipped sample answered "not a chest X-ray" would be a poor demonstration.
        newly = {item.path for item in chosen
                 if int8.classify_file(dataset.item_path(data_dir, item)).verdict
                 not in int8.labels}
        if not newly:
            break
        refused |= newly
    return [(item, _copy_sample(item, data_dir, samples_dir)) for item in chosen]


def refresh_lung_reference(out_dir: Path, samples: list[Path], log, measured_paths: list[Path],
                           measured_on: str, progress=None) -> None:
    """The lung model beside the classifier (OUT/lungs/) pins its reference outputs on the
    bundled samples; new samples need new references, or `bench check` would look for files
    that are gone. Its tolerance is measured on the X-rays the classifier's was, so that one
    conversion leaves both cards measured alike."""
    from ..edge_runtime.lungs import LUNG_CARD_FILENAME

    lung_dir = out_dir / "lungs"
    if not (lung_dir / LUNG_CARD_FILENAME).is_file():
        return
    from ..benchmarks import lungs_check

    lungs_check.write_reference(lung_dir, sorted(samples), LUNG_CARD_FILENAME)
    log(f"lung model: reference outputs recomputed on the {len(samples)} new samples")
    measured = lungs_check.measure_tolerance(
        lung_dir, measured_paths,
        progress=(lambda paths: progress(paths, "lung kernel sets")) if progress else None)
    tolerance = lungs_check.store_tolerance(
        lung_dir, LUNG_CARD_FILENAME, measured, measured_on=measured_on,
        command=tolerance_command(lung_dir.parent, "lungs"))
    log(f"lung model: device-check tolerance {tolerance['raw_output_steps']} output steps, "
        f"mask agreement >= {tolerance['mask_agreement']} ({len(measured_paths)} images)")


def _sample_path(item, samples_dir: Path) -> Path:
    return samples_dir / f"{item.label}-{Path(item.path).name}"


def _copy_sample(item, data_dirs, samples_dir: Path) -> Path:
    target = _sample_path(item, samples_dir)
    shutil.copyfile(dataset.item_path(data_dirs, item), target)
    return target


def _manifest_hash(data_dirs):
    """The manifest's sha256 (one data folder), or {root: sha256} for several."""
    if isinstance(data_dirs, dict):
        return {name: _manifest_hash(folder) for name, folder in data_dirs.items()}
    manifest = Path(data_dirs) / "MANIFEST.csv"
    return model_card.sha256_file(manifest) if manifest.is_file() else None


def _data_description(run: dict) -> str:
    if not run.get("data_dirs"):
        return ("COVID-19 Radiography Database (COVID and Normal), 224x224 grayscale copy in "
                "../shared/data/cxr; see its README for origin and caveats")
    config = run["config"]
    mapped = ", ".join(f"{old} -> {new}" for old, new in (config.get("label_map") or {}).items())
    return ("several data folders: " + ", ".join(run["data_dirs"]) + " (see each folder's "
            "README for origin, licences and caveats); classes " + ", ".join(run["labels"])
            + (f"; relabelled: {mapped}" if mapped else ""))


def reproduce_commands(run: dict, data_dir: Path, calibration_size: int, seed: int,
                       edgetpu: bool = False, non_xray_dirs=(),
                       bias_correction: bool = True,
                       ood_components: int | None = None,
                       tolerance_images: int | None = None, *,
                       ood_train_images: int = 2000, ood_quantile: float = 0.995,
                       ood_per_label: bool = False) -> list[str]:
    config = run["config"]
    run_dir = config.get("out_dir", "runs/v1")
    trains = training_commands(config, data_dir)
    convert = (f"covid-edge convert {run_dir}/model.keras --out models "
               f"--calibration-size {calibration_size} --seed {seed}"
               + (f" --target-sensitivity {run['target_sensitivity_at_conversion']:g}"
                  if run.get("target_sensitivity_at_conversion") else "")
               + (" --edgetpu" if edgetpu else "")
               + ("" if bias_correction else " --no-bias-correction")
               + ("" if ood_components is None else f" --ood-components {ood_components}")
               + ("" if ood_train_images == 2000 else f" --ood-train-images {ood_train_images}")
               + ("" if ood_quantile == 0.995 else f" --ood-quantile {ood_quantile:g}")
               + (" --ood-per-label" if ood_per_label else "")
               + "".join(f" --non-xray {folder}" for folder in non_xray_dirs)
               # The card's device-check tolerance depends on how many images measured it.
               + (f" --tolerance-images {tolerance_images}" if tolerance_images else ""))
    return [*trains, convert]


def training_commands(config: dict, data_dir: Path) -> list[str]:
    """The commands that made a run's model.keras, in order: for an average each
    ingredient's, then `average`; for a run started from another, that run's first."""
    extra = config.get("extra") or {}
    if extra.get("average"):
        averaged = extra["average"]
        # Ingredients continued from one run share its command: it is run once.
        commands = list(dict.fromkeys(command for ingredient in averaged["configs"]
                                      for command in training_commands(ingredient, data_dir)))
        out_dir = config.get("out_dir", "runs/v1")
        return [*commands, f"covid-edge average {' '.join(averaged['runs'])} --out {out_dir}"]
    if extra.get("start_from"):
        return [*training_commands(extra["start_from"]["config"], data_dir),
                train_command(config, data_dir)]
    return [train_command(config, data_dir)]


def train_command(config: dict, data_dir: Path) -> str:
    """The `covid-edge train` command a run's config was made by."""
    run_dir = config.get("out_dir", "runs/v1")
    # The paths as the user typed them (relative ones stay relative): a command to rerun.
    data_dir = config.get("data_dir", data_dir)
    folders = " ".join(str(folder) for folder in [data_dir, *config.get("more_data", ())])
    train = (f"covid-edge train {folders} --out {run_dir} --weights {config['weights']} "
             f"--image-size {config['image_size']} --batch-size {config['batch_size']} "
             f"--head-epochs {config['head_epochs']} --fine-tune-epochs "
             f"{config['fine_tune_epochs']} --fine-tune-from {config['fine_tune_from']} "
             f"--target-sensitivity {config['target_sensitivity']} "
             # Runs from before corner erasing existed had none.
             f"--corner-erase {config.get('corner_erase', 0.0)} --seed {config['seed']}")
    train += "".join(f" --map {old}={new}" for old, new in
                     (config.get("label_map") or {}).items())
    train += "".join(f" --validation-source {source}"
                     for source in config.get("validation_sources") or ())
    if config.get("positive", "covid") != "covid":
        train += f" --positive {config['positive']}"
    if config.get("crop"):
        train += f" --crop {config['crop']}"
    if config.get("limit_per_class"):
        train += f" --limit-per-class {config['limit_per_class']}"
    if config.get("start_from"):  # its split is the starting run's, implied
        train += f" --start-from {config['start_from']}"
    elif config.get("split_from"):
        train += f" --split-from {config['split_from']}"
    if config.get("consistency"):
        train += f" --consistency {config['consistency']:g}"
    if config.get("source_balance", "none") != "none":
        train += f" --source-balance {config['source_balance']}"
    # Runs from before these options existed had no invariance chain and the min-max stretch.
    train += (f" --invariance {config.get('invariance', 0.0)}"
              f" --high-bit-depth {config.get('high_bit_window', 'minmax')}")
    return train
