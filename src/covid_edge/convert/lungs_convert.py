"""`covid-edge convert-lungs`: the trained lung U-Net -> int8 TFLite + lung model card.

run folder (train-lungs) -> SavedModel -> full-integer int8 TFLite calibrated on training
images (through the same preprocessing) -> upsamplings rewritten as ops XNNPACK runs
(upsample_ops) -> checks: integer-only, lossless int8 input, Dice of
int8 against float on the run's scored part (the held-out source, or validation) -> card.
"""

from __future__ import annotations

import csv
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from ..edge_runtime.lungs import LUNG_CARD_FILENAME
from ..model_card import sha256_file
from ..preprocess import PreprocessSpec, to_model_input
from . import lungs_data, quantize, upsample_ops
from .lungs_train import MASK_THRESHOLD, predict, score

MODEL_FILENAME = "lungs-int8.tflite"
MAX_INT8_DICE_LOSS = 0.005  # issue 11: int8 may lose at most this much mean Dice
MAX_FILE_BYTES = 1_500_000
UPSAMPLING_REWRITE = "nearest upsampling as CONCATENATION + DEPTH_TO_SPACE"


def read_parts(run_dir: Path, data: lungs_data.LungData) -> dict[str, np.ndarray]:
    with open(run_dir / "split.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if [row["image"] for row in rows] != data.names.tolist():
        raise ValueError(f"{run_dir}/split.csv lists other images than the data given; pass the "
                         "data the run was trained on")
    part = np.array([row["split"] for row in rows])
    return {name: np.flatnonzero(part == name) for name in ("train", "val", "test")}


def integer_only(interpreter) -> list[str]:
    return [t["name"] for t in interpreter.get_tensor_details()
            if np.dtype(t["dtype"]).kind == "f"]


def int8_probabilities(segmenter, pixels: np.ndarray) -> np.ndarray:
    return np.stack([segmenter.probabilities(p)[0] for p in pixels])


def convert(run_dir: str | Path, data: str | Path, out_dir: str | Path, *,
            calibration_images: int = 200, loso: tuple = (), seed: int = 0,
            version: str = "dev", force: bool = False, log=print) -> dict:
    import keras

    from ..edge_runtime.interpreter import select_runtime
    from ..edge_runtime.lungs import LungSegmenter
    from . import lungs_model

    started = time.time()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    existing = [out_dir / name for name in (MODEL_FILENAME, LUNG_CARD_FILENAME)
                if (out_dir / name).exists()]
    if existing and not force:
        raise FileExistsError(f"{out_dir} already holds a lung model ({existing[0].name}); "
                              "pass --force to replace it, or choose another --out")
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    spec = PreprocessSpec.from_dict(run["preprocessing"])
    limit = run["config"].get("limit_per_source")
    if lungs_data.content_hash(data, limit) not in (None, run["data_sha256"]):
        raise ValueError(f"{data}: not the data {run_dir} was trained on (content hash differs)")
    loaded = lungs_data.load(data, spec, limit_per_source=limit)
    if loaded.data_hash != run["data_sha256"]:
        raise ValueError(f"{data}: not the data {run_dir} was trained on (content hash differs)")
    parts = read_parts(run_dir, loaded)
    hold_out = run["config"].get("hold_out")
    scored_part = "test" if len(parts["test"]) else "val"
    model = lungs_model.runtime_model(
        keras.saving.load_model(run_dir / "model.keras", compile=False))

    rng = np.random.default_rng(seed)
    calibration = rng.permutation(parts["train"])[:calibration_images]

    frames = [loaded.pixels[index] for index in calibration]
    seen = loaded.pixels[calibration]
    if seen.min() > 0 or seen.max() < 255:
        # The input's int8 range is calibrated from what it sees: only when black and white
        # both occur does it come out as exactly pixel - 128 (lossless). A small calibration
        # set may lack them; one grey ramp adds them.
        ramp = np.linspace(0, 255, spec.height * spec.width).round().astype(np.uint8)
        frames.append(ramp.reshape(spec.height, spec.width))

    def representative():
        for pixels in frames:
            yield [to_model_input(pixels[np.newaxis], spec)]

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        saved = quantize.export_saved_model(model, Path(tmp) / "saved_model")
        log(f"int8 conversion, calibrated on {len(calibration)} training images")
        tflite = quantize.convert_variant(saved, "int8", representative)
    tflite, upsamplings = upsample_ops.rewrite(tflite)
    model_path = out_dir / MODEL_FILENAME
    model_path.write_bytes(tflite)

    runtime = select_runtime()
    interpreter = runtime.interpreter(str(model_path), num_threads=1, xnnpack=False)
    interpreter.allocate_tensors()
    floats = integer_only(interpreter)
    if floats:
        raise ValueError(f"{model_path.name}: not integer-only; float tensors {floats[:5]}")
    input_detail = interpreter.get_input_details()[0]
    input_q = quantize._quantization(input_detail)
    lossless = quantize.input_is_lossless(spec, input_q, np.dtype(input_detail["dtype"]).name)
    ops = quantize.op_names(interpreter)

    card = {
        "name": "covid-edge-lungs-unet",
        "version": version,
        "task": "lung field segmentation of frontal chest X-rays (both lungs in one mask)",
        "file": MODEL_FILENAME,
        "sha256": sha256_file(model_path),
        "size_bytes": model_path.stat().st_size,
        "preprocessing": spec.to_dict(),
        "input": {"shape": [int(v) for v in input_detail["shape"]],
                  "dtype": np.dtype(input_detail["dtype"]).name, "quantization": input_q,
                  "lossless": bool(lossless)},
        "output": ("lung probability per pixel, [1, H, W, 1] int8 (dequantize with the "
                   "output's scale and zero point)"
                   + ("; the adult convention's output of a network trained with one per "
                      "convention (the lung behind the heart left out)"
                      if run["config"].get("convention_heads") else "")),
        "mask_threshold": MASK_THRESHOLD,
        "ops": ops,
        "integer_only": True,
    }
    device_interpreter = runtime.interpreter(str(model_path), num_threads=1)
    device_interpreter.allocate_tensors()
    segmenter = LungSegmenter(device_interpreter, runtime, card, model_path)
    part = loaded.subset(parts[scored_part])
    log(f"scoring float and int8 on the {scored_part} part ({len(part)} images)")
    float_metrics, float_dice, _ = score(predict(model, part.pixels, spec), part)
    int8_metrics, int8_dice, _ = score(int8_probabilities(segmenter, part.pixels), part)
    loss = {source: round(float_metrics[source]["dice_mean"] - int8_metrics[source]["dice_mean"], 4)
            for source in float_metrics}
    worst = max(loss.values())
    card.update({
        "metrics": {
            "scored_on": (f"held-out source {hold_out} (never seen in training)" if hold_out else
                          "validation part (10% of each source, not trained on; the "
                          "leave-one-source-out figures below are the evaluation)"),
            "scored_at": run["scored_at"],
            "float": float_metrics, "int8": int8_metrics,
            "int8_dice_loss": loss,
            "int8_dice_loss_max": MAX_INT8_DICE_LOSS,
            "int8_within_target": bool(worst <= MAX_INT8_DICE_LOSS),
            "file_within_target": bool(model_path.stat().st_size <= MAX_FILE_BYTES),
        },
        "held_out_source": hold_out,
        "mask_conventions": run["mask_conventions"],
        "training": {key: run[key] for key in ("config", "data_sha256", "split_counts",
                                                "best_epoch", "versions", "seconds")},
        "conversion": {"calibration_images": int(len(calibration)), "seed": seed,
                       "grey_ramp_added": len(frames) > len(calibration),
                       "graph_rewrites": {UPSAMPLING_REWRITE: upsamplings},
                       "python": platform.python_version(),
                       "tensorflow": __import__("tensorflow").__version__,
                       "seconds": round(time.time() - started, 1)},
        "licences": "trained on Montgomery (public), Shenzhen masks (CC BY-NC-SA 4.0), JSRT "
                    "(research and education) and Kermany/V7 (CC BY 4.0) pairs: research, "
                    "non-commercial use",
    })
    card["reproduce"] = reproduce_commands(run["config"], out_dir, loso, version)
    if loso:
        card["leave_one_source_out"] = loso_summary(loso, LUNG_CARD_FILENAME)
    (out_dir / LUNG_CARD_FILENAME).write_text(json.dumps(card, indent=2) + "\n",
                                              encoding="utf-8")
    # The release (models/lungs) gets reference outputs on the bundled samples (models/samples)
    # for `covid-edge bench check`.
    samples = sorted(p for p in (out_dir.parent / "samples").glob("*")
                     if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if samples:
        from ..benchmarks.lungs_check import write_reference

        card["reference_outputs"] = write_reference(out_dir, samples, LUNG_CARD_FILENAME)
    return card


def reproduce_commands(config: dict, out_dir: Path, loso, version: str = "dev") -> list[str]:
    """The commands that remake this file (training on any Keras backend; this release trained
    on JAX on a GPU machine, so a rerun elsewhere matches in figures, not bit for bit)."""
    options = (f"--image-size {config['image_size']} --base-filters {config['base_filters']} "
               f"--depth {config['depth']} --decoder-convs {config['decoder_convs']} "
               f"{'--separable' if config['separable'] else '--full-convs'} "
               f"--epochs {config['epochs']} --batch-size {config['batch_size']} "
               f"--learning-rate {config['learning_rate']:g} --seed {config['seed']}"
               + (" --convention-heads" if config.get("convention_heads") else ""))
    commands = []
    for directory in loso:
        # The held-out source and run folder from the fold's own card: folders are named freely.
        fold = json.loads((Path(directory) / LUNG_CARD_FILENAME).read_text(encoding="utf-8"))
        source = fold["held_out_source"]
        run_dir = fold["training"]["config"].get("out_dir") or Path(directory).parent
        commands.append(f"covid-edge train-lungs ../shared/data/lungs --hold-out {source} "
                        f"--out {run_dir} {options}")
        commands.append(f"covid-edge convert-lungs {run_dir} --data ../shared/data/lungs "
                        f"--out {directory}")
    hold_out = f"--hold-out {config['hold_out']} " if config.get("hold_out") else ""
    commands.append(f"covid-edge train-lungs ../shared/data/lungs {hold_out}--out RUN_DIR "
                    f"{options}")
    commands.append(f"covid-edge convert-lungs RUN_DIR --data ../shared/data/lungs --out {out_dir}"
                    + "".join(f" --loso {d}" for d in loso)
                    + (f" --model-version {version}" if version != "dev" else "")
                    + " --force")
    return commands


def loso_summary(directories, card_filename: str) -> dict:
    """The held-out figures of the leave-one-source-out conversions, one per source."""
    summary = {}
    for directory in directories:
        card = json.loads((Path(directory) / card_filename).read_text(encoding="utf-8"))
        source = card.get("held_out_source")
        if not source:
            raise ValueError(f"{directory}: not a leave-one-source-out conversion (no held-out "
                             "source)")
        summary[source] = {"float": card["metrics"]["float"][source],
                           "int8": card["metrics"]["int8"][source],
                           "int8_dice_loss": card["metrics"]["int8_dice_loss"][source],
                           "trained_on": [s for s in lungs_data.SOURCES if s != source],
                           "run_sha256": card["sha256"]}
    return summary
