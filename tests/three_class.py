"""A small three-class (normal / pneumonia / covid) int8 model for the run-time tests.

Trained here in seconds on real X-rays from ../shared (a small conv net at 96x96, not
MobileNetV2: what is tested is the runtime's handling of N classes, not accuracy), converted
with the project's own converter helpers, with a softmax head named as training names it and the
'pool' features output the guard measures. The card is the released one with three labels,
"output_kind": "softmax", its own guard statistics, a temperature and reference outputs in the
softmax form (`raw_output` a list, `probabilities` per label).

Built once per test process, into a temporary folder (`three_class_models_dir()`), or by hand:
    python tests/three_class.py OUT_DIR
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

SHARED = REPO.parent / "shared" / "data"
LABELS = ("normal", "pneumonia", "covid")
FOLDERS = {"normal": SHARED / "cxr" / "normal", "pneumonia": SHARED / "cxr-more" / "pneumonia",
           "covid": SHARED / "cxr" / "covid"}
PER_CLASS = 48
SIZE = 96
TEMPERATURE = 1.3


def available() -> bool:
    return all(folder.is_dir() for folder in FOLDERS.values())


def training_images() -> dict[str, list[Path]]:
    return {label: sorted(folder.glob("*.jpg"))[:PER_CLASS] for label, folder in FOLDERS.items()}


def sample_images() -> dict[str, Path]:
    """One image per class that training did not see (the card's samples)."""
    return {label: sorted(folder.glob("*.jpg"))[PER_CLASS + 1] for label, folder in
            FOLDERS.items()}


def _card(released: dict) -> dict:
    card = json.loads(json.dumps(released))
    for key in ("edgetpu", "reference_outputs", "keras_metrics", "behaviour_on_other_sources",
                "training", "data", "reproduce", "devices"):
        card.pop(key, None)
    card.update(name="covid-edge-three-class-test", version="0.0.0-test",
                task="frontal chest X-ray: normal / pneumonia / covid (test model)",
                labels=list(LABELS), positive_label="covid", output_kind="softmax",
                architecture="small conv net -> GAP -> dense(3, softmax) (test fixture)",
                threshold=0.4, default_variant="int8",
                threshold_rule="fixed at 0.4 for the tests (not chosen on data)")
    card["preprocessing"].update(height=SIZE, width=SIZE)
    card["calibration"] = {"method": "temperature scaling (test value)",
                           "temperature": TEMPERATURE, "clip": 1.0 / 512.0}
    return card


def build(out_dir: Path) -> Path:
    """Train, convert and describe the model in out_dir; returns out_dir."""
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    from covid_edge.convert import quantize
    from covid_edge.convert.ood_fit import fit, with_threshold
    from covid_edge.edge_runtime.classifier import Classifier
    from covid_edge.edge_runtime.guard import OOD_STATS_FILENAME
    from covid_edge.model_card import preprocess_spec, sha256_file, write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    released = json.loads((REPO / "models" / "model_card.json").read_text())
    card = _card(released)
    spec = preprocess_spec(card)
    images = training_images()
    paths = [path for label in LABELS for path in images[label]]
    targets = np.array([LABELS.index(label) for label in LABELS for _ in images[label]])
    inputs = np.stack([quantize_free_input(path, spec) for path in paths])

    keras.utils.set_random_seed(0)
    x = keras.Input((SIZE, SIZE, 3), name="xray")
    h = x
    for filters in (8, 16, 32):
        h = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(h)
    pooled = keras.layers.GlobalAveragePooling2D(name=quantize.FEATURES_LAYER)(h)
    head = keras.layers.Dense(len(LABELS), activation="softmax",
                              name=quantize.PROBABILITY_LAYER)(pooled)
    model = keras.Model(x, head, name="three_class_test")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(inputs, targets, epochs=12, batch_size=16, verbose=0, shuffle=True)

    with tempfile.TemporaryDirectory() as scratch:
        saved = quantize.export_saved_model(quantize.with_features(model), Path(scratch) / "sm")
        tflite = quantize.convert_variant(saved, "int8",
                                          quantize.representative_images(paths[::3], spec))
    del tf
    model_file = out_dir / quantize.variant_filename("int8")
    model_file.write_bytes(tflite)
    card["variants"] = {"int8": {**released["variants"]["int8"],
                                 "file": model_file.name, "bytes": len(tflite),
                                 "sha256": sha256_file(model_file),
                                 "input_shape": [1, SIZE, SIZE, 3], "metrics": None,
                                 "versus_keras": None, "versus_float32": None}}
    for key in ("bias_correction", "features_output", "ops"):
        card["variants"]["int8"].pop(key, None)
    card.pop("ood_guard", None)
    write_json(card, out_dir)

    # The guard: statistics of the training images' features, as convert fits them.
    plain = Classifier.load(model_file, guard=False)
    features = np.stack([plain.run(plain.prepare_input(_pixels(path, spec))).features
                         for path in paths])
    # Twice the largest training distance: 144 training images are too few for a quantile,
    # and X-rays the model never saw (the samples, the tests' images) must pass.
    fitted = fit(features, components=8)
    stats = with_threshold(fitted, 2.0 * np.asarray(fitted.distance(features)), 1.0)
    stats_path = stats.save(out_dir / OOD_STATS_FILENAME)
    guard = dict(released["ood_guard"])
    for key in ("tuning", "test", "non_xray", "distance_histogram"):
        guard.pop(key, None)
    guard.update(stats_file=stats_path.name, stats_sha256=sha256_file(stats_path),
                 stats_bytes=stats_path.stat().st_size, components=8,
                 threshold=stats.threshold)
    card["ood_guard"] = guard

    # Samples and reference outputs in the softmax form bench check reads.
    samples = out_dir / "samples"
    samples.mkdir(exist_ok=True)
    reference = []
    for label, source in sample_images().items():
        target = samples / f"{label}-{source.name}"
        shutil.copyfile(source, target)
        inference = plain.run(plain.prepare_input(_pixels(target, spec)))
        reference.append({"file": f"samples/{target.name}", "sha256": sha256_file(target),
                          "label": label, "raw_output": [int(v) for v in inference.raw],
                          "probability": inference.positive,
                          "probabilities": plain.scheme.as_dict(inference.probabilities),
                          "verdict": plain.verdict(inference.probabilities)})
    card["reference_outputs"] = {"variant": "int8",
                                 "tolerance": {"raw_output_steps": 2,
                                               "probability": 2.0 / 256.0},
                                 "images": reference}
    write_json(card, out_dir)
    return out_dir


def _pixels(path: Path, spec):
    from covid_edge.preprocess import load_pixels
    return load_pixels(path, spec)


def quantize_free_input(path: Path, spec) -> np.ndarray:
    from covid_edge.preprocess import preprocess_file
    return preprocess_file(path, spec)


@functools.lru_cache(maxsize=None)
def three_class_models_dir() -> Path:
    """The model built once per process (TensorFlow is imported here only)."""
    return build(Path(tempfile.mkdtemp(prefix="covid-edge-3class-")))


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
