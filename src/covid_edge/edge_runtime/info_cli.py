"""`covid-edge info`: which model, which runtime, which sample images. Fast and import-free:
runtimes are found with importlib.util.find_spec and versioned from package metadata, so
asking does not import TensorFlow (seconds and hundreds of MB on a Raspberry Pi)."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from importlib import metadata
from pathlib import Path

import click

from .. import DISCLAIMER, __version__
from ..classes import ClassScheme, ClassSchemeError
from .calibration import TemperatureScaling
from .display import decision_rule
from ..model_card import CARD_FILENAME, ModelCardError, card_for_model, load_card, \
    released_models_dir, sha256_file
from .interpreter import RUNTIME_NAMES

EXIT_OK, EXIT_MODEL = 0, 3
# Distributions that may provide each runtime's top-level module.
RUNTIME_DISTRIBUTIONS = {
    "ai_edge_litert": ("ai-edge-litert", "ai-edge-litert-nightly"),
    "tflite_runtime": ("tflite-runtime", "tflite-runtime-nightly"),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tensorflow-aarch64",
                   "tf-nightly"),
}
SAMPLE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}



def _echo(text: str = "", **kwargs) -> None:
    """click.echo, each line folded to 100 columns under its own indentation."""
    lines = []
    for line in str(text).split("\n"):
        indent = " " * (len(line) - len(line.lstrip(" ")))
        lines.append(textwrap.fill(line, 100, subsequent_indent=indent + "    ",
                                   break_on_hyphens=False, break_long_words=False)
                     if len(line) > 100 else line)
    click.echo("\n".join(lines), **kwargs)

def runtimes_report() -> dict:
    """Installed runtimes (without importing them) and the one `classify` would pick."""
    installed = {}
    for name in RUNTIME_NAMES:
        if importlib.util.find_spec(name) is None:
            installed[name] = None
            continue
        installed[name] = next((version for dist in RUNTIME_DISTRIBUTIONS[name]
                                if (version := _dist_version(dist))), "unknown version")
    selected = next((name for name in RUNTIME_NAMES if installed[name]), None)
    return {"selected": selected, "installed": installed, "edgetpu": edgetpu_report()}


def host_report() -> dict:
    """The CPU (benchmarks.cpu_features: flags and kernel paths) and the variant it favours."""
    from ..benchmarks.cpu_features import cpu_features, summary, variant_pick

    features = cpu_features()
    return {"cpu": features, "summary": summary(features), "pick": variant_pick(features)}


def edgetpu_report() -> dict:
    """libedgetpu's version and device count, read through its C API (no device is opened)."""
    from .devices import DeviceError, open_edgetpu_library

    try:
        return {"available": True, **open_edgetpu_library().to_dict()}
    except DeviceError as exc:
        return {"available": False, "reason": str(exc)}


def _dist_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def model_report(model_path: Path | None) -> dict:
    """The model card summary for `model_path` (a .tflite file or a folder) or the released model.
    Raises ModelCardError."""
    if model_path is None or model_path.is_dir():
        directory = released_models_dir() if model_path is None else model_path
        card = load_card(directory / CARD_FILENAME)
        variant = card.get("default_variant", "int8")
    else:
        if not model_path.is_file():
            raise ModelCardError(f"{model_path}: no such model file")
        card, variant = card_for_model(model_path)
        directory = model_path.parent
    variants = {}
    for name, entry in card["variants"].items():
        path = directory / entry.get("file", "")
        variants[name] = {
            "file": str(path),
            "present": path.is_file(),
            # A file swapped or rebuilt since the card was written: its metrics are not its own.
            "matches_card": _matches(path, entry.get("sha256")),
            "bytes": path.stat().st_size if path.is_file() else entry.get("bytes"),
            "input_dtype": entry.get("input_dtype"),
            "metrics": entry.get("metrics", {}),
        }
    try:
        scheme = ClassScheme.from_card(card)
    except ClassSchemeError as exc:
        raise ModelCardError(f"{directory / CARD_FILENAME}: {exc}") from None
    samples = sorted(str(path) for path in (directory / "samples").glob("*")
                     if path.suffix.lower() in SAMPLE_SUFFIXES)
    return {
        "name": card.get("name"),
        "version": card.get("version"),
        "card": str(directory / CARD_FILENAME),
        "selected_variant": variant,
        "labels": card["labels"],
        "positive_label": card["positive_label"],
        "output_kind": scheme.output_kind,
        "decision_rule": decision_rule(scheme),
        "threshold": card["threshold"],
        "threshold_rule": card.get("threshold_rule"),
        "preprocessing": card["preprocessing"],
        "variants": variants,
        "devices": card.get("devices"),
        "samples": samples,
        "ood_guard": _guard_summary(card.get("ood_guard")),
        "calibration": _calibration_summary(card.get("calibration")),
        "lung_model": lung_model_report(directory),
    }


def _matches(path: Path, expected: str | None) -> bool | None:
    """Whether the file is the one the card describes (None: no file or no sha256 to check)."""
    if not expected or not path.is_file():
        return None
    return sha256_file(path) == expected


def lung_model_report(directory: Path) -> dict | None:
    """The lung model that runs with this classifier (DIR/lungs, else the released one)."""
    from .lungs import LUNG_DIR, LungModelError, default_model_path, load_lung_card

    folder = directory / LUNG_DIR
    try:
        card, path = load_lung_card(folder if folder.is_dir() else default_model_path())
    except LungModelError as exc:
        return {"error": str(exc)}
    metrics = card.get("metrics", {})
    return {
        "name": card.get("name"), "version": card.get("version"), "file": str(path),
        "present": path.is_file(), "bytes": path.stat().st_size if path.is_file() else None,
        "sha256": card.get("sha256"), "input": card.get("input", {}).get("shape"),
        "mask_threshold": card.get("mask_threshold"),
        "validation_dice": (metrics.get("int8") or {}).get("all", {}).get("dice_mean"),
        "held_out": {source: values["int8"]["dice_mean"]
                     for source, values in (card.get("leave_one_source_out") or {}).items()},
        "guard_rule": card.get("guard_rule"),
        "mask_convention": ("adult (the lung behind the heart left out); trained with one "
                            "output per mask convention"
                            if (card.get("training") or {}).get("config", {}).get(
                                "convention_heads")
                            else "one output for all the sources' mask conventions"),
    }


def _guard_summary(guard: dict | None) -> dict | None:
    if not guard:
        return None
    summary = {key: guard.get(key) for key in ("stats_file", "components", "threshold",
                                               "quantile", "validation_acceptance")}
    summary["groups"] = guard.get("groups") or ["all"]
    summary["test_acceptance"] = (guard.get("test") or {}).get("acceptance")
    other = guard.get("non_xray") or {}
    summary["non_xray_rejection"] = other.get("rejection")
    summary["non_xray_images"] = other.get("images")
    return summary


def _calibration_summary(calibration: dict | None) -> dict | None:
    if not calibration:
        return None
    return {key: calibration.get(key) for key in ("temperature", "threshold", "ece_before",
                                                  "ece_after")}


@click.command(epilog=f"""\b
Exit codes:
  0  the model card was found and read
  3  no model card (the released model is not installed, or --model names none)

\b
Examples:
  covid-edge info
  covid-edge info --model runs/exp1/export
  covid-edge info --json | python -m json.tool

{DISCLAIMER}""")
@click.option("--model", "model_path", type=click.Path(path_type=Path),
              help="A .tflite file beside its model_card.json, or such a folder. "
                   "Default: the released model.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def info(model_path, as_json):
    """Describe the model (card, variants, test metrics, threshold, preprocessing), the TFLite
    runtimes installed, the bundled sample images, and this host's CPU with the model variant
    its int8 path favours. Imports no runtime."""
    runtimes = runtimes_report()
    host = host_report()
    try:
        model, model_error = model_report(model_path), None
    except ModelCardError as exc:
        model, model_error = None, str(exc)

    if as_json:
        click.echo(json.dumps({"covid_edge": __version__, "model": model,
                               "model_error": model_error, "runtimes": runtimes,
                               "host": host,
                               "disclaimer": DISCLAIMER}, indent=2))
    else:
        _echo(f"covid-edge {__version__}")
        if model is not None:
            _print_model(model)
        else:
            _echo(f"error: {model_error}", err=True)
        _print_runtimes(runtimes)
        _echo("\nHost:")
        _echo(f"  CPU: {host['summary']}")
        _echo(f"  pick: {host['pick']}; `covid-edge bench latency` measures every variant here")
        _echo("")
        _echo(DISCLAIMER)
    click.get_current_context().exit(EXIT_MODEL if model is None else EXIT_OK)


def _print_model(model: dict) -> None:
    spec = model["preprocessing"]
    _echo(f"\nModel: {model['name']} {model['version']}  ({model['card']})")
    output = ("one sigmoid unit, P(" + model["positive_label"] + ")"
              if model["output_kind"] == "sigmoid"
              else f"softmax over {len(model['labels'])} classes")
    _echo(f"  labels: {', '.join(model['labels'])}; positive: {model['positive_label']}; "
          f"output: {output}")
    _echo(f"  verdict: {model['decision_rule']}")
    calibration = model.get("calibration")
    positive = model["positive_label"]
    # The scale people read everywhere else (classify, serve, kiosk) leads; the model's raw
    # output, which the card's threshold is stored on, follows in brackets.
    shown = model["threshold"]
    if calibration:
        shown = calibration.get("threshold") or TemperatureScaling(
            float(calibration["temperature"])).apply(model["threshold"])
    _echo(f"  threshold: {shown:.3f}: {positive} when P({positive}) >= it "
               f"(the calibrated P that classify shows; {model['threshold']:.4f} on the model's "
               "raw output)")
    if model["threshold_rule"]:
        _echo(f"    rule: {model['threshold_rule']}")
    if calibration:
        ece = (f"; test ECE {calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}"
               if calibration.get("ece_before") is not None else "")
        _echo(f"  calibration: temperature {calibration['temperature']:.3f}{ece}")
    guard = model.get("ood_guard")
    if guard:
        measured = ""
        if guard["test_acceptance"] is not None and guard["non_xray_rejection"] is not None:
            measured = (f"; test X-rays accepted {guard['test_acceptance']:.1%}, non-X-ray "
                        f"images refused {guard['non_xray_rejection']:.1%} of "
                        f"{guard['non_xray_images']}")
        _echo(f"  out-of-distribution guard: feature distance <= {guard['threshold']:.2f} "
              f"({guard['components']} components"
              + ("" if guard["groups"] == ["all"] else f" per label: {', '.join(guard['groups'])}")
              + f"){measured}")
    else:
        _echo("  out-of-distribution guard: image checks only (no statistics in the card)")
    _echo(f"  preprocessing: {spec.get('height')}x{spec.get('width')}x{spec.get('channels')}"
               f", {spec.get('resize_filter')} resize, x = pixel * {spec.get('scale'):.6g} "
               f"{'-' if spec.get('offset', 0) < 0 else '+'} {abs(spec.get('offset', 0)):g}")
    for key in ("color", "aspect_ratio", "high_bit_depth"):
        if spec.get(key):
            _echo(f"    {key.replace('_', ' ')}: {spec[key]}")
    if spec.get("crop"):
        _echo(f"    crop: to the {spec['crop']} (lung model's box + {spec.get('crop_margin')} "
                   "margin) before the resize")
    _echo("  variants:")
    for name, variant in model["variants"].items():
        marker = "*" if name == model["selected_variant"] else " "
        size = _size(variant["bytes"])
        missing = ("  (file missing)" if not variant["present"] else
                   "  (NOT the file the card describes: sha256 differs; its figures below are "
                   "not this file's)" if variant.get("matches_card") is False else "")
        metrics = ", ".join(f"{key} {_fmt(value)}" for key, value in variant["metrics"].items()
                            if not isinstance(value, (dict, list)))
        _echo(f"   {marker} {name:<8} {Path(variant['file']).name}  {size}{missing}")
        if metrics:
            _echo(f"       test: {metrics}")
    _echo("    (* = used by `covid-edge classify` without --model)")
    for device, file in (model.get("devices") or {}).items():
        present = (Path(model["card"]).parent / file).is_file()
        missing = "" if present else (
            "  (not here: compile the int8 model with edgetpu_compiler; docs/coral.md)"
            if device == "edgetpu" else "  (file missing)")
        _echo(f"  --device {device}: {file}{missing}")
    lungs = model.get("lung_model")
    if lungs and "error" not in lungs:
        held_out = ", ".join(f"{s} {d:.3f}" for s, d in lungs["held_out"].items())
        _echo(f"  lung model: {lungs['name']} {lungs['version']}, {Path(lungs['file']).name}"
                   f"  {_size(lungs['bytes'])}, input {lungs['input']}, mask threshold "
                   f"{lungs['mask_threshold']} (guard: frontal-film check; crop mode; explain)")
        _echo(f"    mask convention: {lungs['mask_convention']}")
        if held_out:
            _echo(f"    int8 Dice on held-out sources: {held_out}")
    elif lungs:
        _echo(f"  lung model: not available ({lungs['error']})")
    if model["samples"]:
        _echo("  sample images (try `covid-edge classify` on them):")
        for sample in model["samples"]:
            _echo(f"    {sample}")


def _print_runtimes(runtimes: dict) -> None:
    _echo("\nRuntimes:")
    for name, version in runtimes["installed"].items():
        state = version if version else "not installed"
        marker = "*" if name == runtimes["selected"] else " "
        _echo(f"   {marker} {name:<15} {state}")
    if runtimes["selected"] is None:
        _echo("  no TFLite runtime: pip install ai-edge-litert")
    else:
        _echo("    (* = used by `covid-edge classify` without --runtime)")
    edgetpu = runtimes["edgetpu"]
    if edgetpu["available"]:
        _echo(f"  Edge TPU runtime: {edgetpu['library']}, "
                   f"{edgetpu['version'] or 'version unknown'}, "
                   f"{edgetpu['devices'] if edgetpu['devices'] is not None else '?'} device(s)")
    else:
        _echo(f"  Edge TPU runtime: none ({edgetpu['reason'].split(';')[0]})")


def _size(size: int | None) -> str:
    if not size:
        return "size unknown"
    return f"{size / 1e6:.2f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
