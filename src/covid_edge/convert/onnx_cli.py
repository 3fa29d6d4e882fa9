"""`covid-edge export-onnx`: the int8 model as ONNX for ONNX Runtime / OpenVINO, checked."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import DISCLAIMER
from ..edge_runtime.json_command import JsonFailureCommand
from ..cli_paths import file_error

EPILOG = f"""\b
The export runs only where its verdicts were checked: each installed backend
(onnxruntime, openvino) classifies --data's images from the same int8 input
tensors as the TFLite model, and the agreement goes into FILE.onnx.json. classify,
explain and serve refuse a backend whose agreement is missing or below 99.5%.

\b
Examples:
  covid-edge export-onnx --data ../shared/data/cxr
  covid-edge classify scans/ --model models/covid-edge-int8.onnx --runtime openvino

\b
Exit status: 0 written and every installed backend agrees >= 99.5%; 1 written, but a
backend agrees less (it will not be used); 2 bad options, no image in --data, or an --out
that exists (replaced only with --force, never the model) or cannot be written; 3 the model
cannot be loaded or the export failed. With --json, every failure prints a JSON document
with "error" and "exit_code".

{DISCLAIMER}"""


@click.command(cls=JsonFailureCommand, epilog=EPILOG)
@click.argument("model", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--data", "data_dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Labelled X-rays to check the export on: the model's test split when "
                   "training/split.csv beside the model names files in DATA, else every "
                   "image in DATA.")
@click.option("--limit", type=click.IntRange(min=10), default=400, show_default=True,
              help="Images to check, spread evenly over the list.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="ONNX file to write. Default: beside the model, same name, .onnx.")
@click.option("--force", is_flag=True, help="Replace an existing --out file and its sidecar.")
@click.option("--json", "as_json", is_flag=True, help="Print the sidecar as JSON.")
def export_onnx(model, data_dir, limit, out_path, force, as_json):
    """Export the int8 TFLite MODEL (default: the released one) to ONNX with int8 QDQ
    operators (tf2onnx; needs the train and onnx extras), then check its verdicts against
    the TFLite model with every installed ONNX backend."""
    from ..edge_runtime.classifier import Classifier, ModelError
    from ..edge_runtime.classify_cli import collect_inputs
    from . import onnx_export

    try:
        classifier = Classifier.load(model, num_threads=None, guard=False)
    except ModelError as exc:
        raise file_error(str(exc)) from None
    tflite_path = classifier.model_path
    out_path = out_path or tflite_path.with_suffix(".onnx")
    _check_out(out_path, tflite_path, force)
    images = _check_images(tflite_path.parent, data_dir, limit, collect_inputs)
    if not images:
        raise click.UsageError(f"{data_dir}: no image to check the export on")
    try:
        sidecar = onnx_export.export_onnx(tflite_path, out_path)
    except onnx_export.ExportError as exc:
        raise file_error(str(exc)) from None
    except Exception as exc:  # tf2onnx's own failures
        raise file_error(f"tf2onnx could not export {tflite_path.name}: {exc}") from None
    backends = onnx_export.installed_backends()
    if not backends:
        from .. import install_hint
        click.echo(f"warning: no ONNX backend installed ({install_hint('onnx')}): the "
                   "export is written but unchecked, and will not be used", err=True)
    results = {name: onnx_export.measure_agreement(classifier, out_path, name, images)
               for name in backends}
    sidecar = onnx_export.record_agreement(out_path, sidecar, results, str(data_dir))
    if as_json:
        click.echo(json.dumps(sidecar, indent=2))
    else:
        click.echo(f"wrote {out_path} and {out_path.name}.json ({sidecar['exporter']}, "
                   f"opset {sidecar['opset']})")
        for name, result in results.items():
            click.echo(f"  {name}: {result.agreeing}/{result.images} verdicts agree with "
                       f"{tflite_path.name} ({result.fraction:.2%}), max |dp| "
                       f"{result.max_abs_dp:.3f}")
    failing = [n for n, r in results.items() if r.fraction < onnx_export.AGREEMENT_MIN]
    if failing:
        click.echo(f"error: {', '.join(failing)} below {onnx_export.AGREEMENT_MIN:.1%}: "
                   "it will not run this export", err=True)
        click.get_current_context().exit(1)


def _check_out(out_path: Path, tflite_path: Path, force: bool) -> None:
    """Before the export: the model itself is never replaced, an earlier file (or its
    sidecar) only with --force, and the folder must take the new files."""
    import os

    from ..cli_paths import check_out_folder

    sidecar = out_path.with_name(out_path.name + ".json")
    if out_path.exists() and out_path.resolve() == tflite_path.resolve():
        raise click.BadParameter(f"{out_path} is the model to export", param_hint="--out")
    if out_path.is_dir():
        raise click.BadParameter(f"{out_path} is a folder; name a .onnx file",
                                 param_hint="--out")
    existing = [str(p) for p in (out_path, sidecar) if os.path.lexists(p)]
    if existing and not force:
        raise click.BadParameter(f"{existing[0]} exists; pass --force to replace it",
                                 param_hint="--out")
    check_out_folder(out_path.parent)


def _check_images(model_dir: Path, data_dir: Path, limit: int, collect_inputs) -> list[Path]:
    split_csv = model_dir / "training" / "split.csv"
    images: list[Path] = []
    if split_csv.is_file():
        from ..dataset import read_split
        items, _, split = read_split(split_csv)
        images = [data_dir / item.path for item, part in zip(items, split)
                  if part == "test" and (data_dir / item.path).is_file()]
    if not images:
        images, _ = collect_inputs((str(data_dir),))
    if len(images) > limit:
        step = len(images) / limit
        images = [images[int(i * step)] for i in range(limit)]
    return images
