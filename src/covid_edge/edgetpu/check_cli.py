"""`covid-edge check-edgetpu MODEL.tflite`: would the Edge TPU compiler map this model?"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .. import DISCLAIMER
from ..edge_runtime.json_command import JsonErrorCommand, emit_error
from .compatibility import CORAL_SUPPORTED_OPS_URL, Report, check_file
from .package import read_compiled_model
from .tflite_graph import SchemaUnavailable, TfliteFormatError

EXIT_MAPS = 0
EXIT_CPU_FALLBACK = 1
EXIT_UNREADABLE = 3
# CPU ops listed by default; --cpu-only lists them all, --all every op.
CPU_ROWS_SHOWN = 12


# A missing file or a folder is checked in the command, not by click.Path(exists=True): it is
# "not a readable .tflite file" (exit 3, with the JSON error under --json), not a usage error.
@click.command("check-edgetpu", cls=JsonErrorCommand, epilog=DISCLAIMER)
@click.argument("model", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--cpu-only", is_flag=True,
              help="List every op that would run on the CPU (by default: the first "
                   f"{CPU_ROWS_SHOWN}).")
@click.option("--all", "all_ops", is_flag=True, help="List every op, mapped or not.")
def check_edgetpu(model: str, as_json: bool, cpu_only: bool, all_ops: bool):
    """Forecast, op by op, which parts of MODEL (.tflite) the Coral Edge TPU compiler would
    map and which would fall back to the CPU, and why.

    It reads the file only (no TensorFlow, no compiler). The Edge TPU needs full-integer
    quantization end to end (int8 or uint8), batch 1, fixed shapes, at most 3 innermost
    non-unit dimensions, one subgraph, and only the operations in Coral's table. The compiler
    partitions the graph once: from the first op it cannot map, the rest runs on the CPU.
    An already compiled model (its graph holds an edgetpu-custom-op) is recognised as such.

    \b
    Exit status:
      0  the whole graph would map, or the file is already compiled
      1  some ops would run on the CPU (reasons listed)
      2  usage error
      3  not a readable .tflite file (missing, a folder, or not TFLite)

    \b
    Examples:
      covid-edge check-edgetpu models/covid-edge-int8.tflite
      covid-edge check-edgetpu model.tflite --cpu-only
      covid-edge check-edgetpu model.tflite --json | jq .summary
    """
    problem = not_a_file(model)
    if problem:
        unreadable(model, problem, as_json)
    try:
        report = check_file(model)
        compiled = read_compiled_model(model) if report.compiled else None
    except (TfliteFormatError, SchemaUnavailable) as exc:
        unreadable(model, str(exc), as_json)
    except OSError as exc:  # unreadable: permissions, an I/O error
        unreadable(model, f"{model}: cannot read it ({exc.strerror or exc})", as_json)
    if as_json:
        payload = report.to_dict()
        payload["min_runtime_version"] = compiled.min_runtime_version if compiled else None
        payload["disclaimer"] = DISCLAIMER
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(render(report, cpu_only=cpu_only, all_ops=all_ops,
                          min_runtime_version=compiled.min_runtime_version if compiled else None,
                          sibling=int8_sibling(model)))
    sys.exit(EXIT_MAPS if report.compiled or report.fully_mapped else EXIT_CPU_FALLBACK)


def not_a_file(model: str) -> str | None:
    """Why MODEL cannot be a .tflite file to read (missing, a folder), or None."""
    path = Path(model)
    if path.is_dir():
        inside = sorted(path.glob("*.tflite"))
        hint = (f": name one of its .tflite files, e.g. {inside[0]}" if inside
                else " (it holds no .tflite file)")
        return f"{model}: a folder, not a .tflite file{hint}"
    if not path.exists():
        return f"{model}: no such file"
    return None


def unreadable(model: str, message: str, as_json: bool):
    """Exit 3; under --json, the shared error document ({"error", "exit_code", ...}) that
    classify, explain and bench check print, so a script reads every failure the same way."""
    if as_json:
        emit_error(message, EXIT_UNREADABLE, file=model)
    click.echo(f"covid-edge check-edgetpu: {message}", err=True)
    sys.exit(EXIT_UNREADABLE)


def int8_sibling(model: str) -> str | None:
    """The int8 file of the same model card, when MODEL is another variant of it: that file,
    not converter flags, is the answer for a user of a released model."""
    from ..model_card import ModelCardError, card_for_model

    try:
        card, variant = card_for_model(Path(model))
    except (ModelCardError, OSError, KeyError, TypeError, ValueError):
        return None
    entry = (card.get("variants") or {}).get("int8") or {}
    if variant == "int8" or not entry.get("file"):
        return None
    path = Path(model).parent / entry["file"]
    return str(path) if path.is_file() else None


def render(report: Report, cpu_only: bool = False, min_runtime_version: int | None = None,
           all_ops: bool = False, sibling: str | None = None) -> str:
    """The verdict first (summary, partition point, what to do), then the op table."""
    lines = [f"Edge TPU check: {report.path}", summary_line(report)]
    if sibling:
        lines.append(f"Use the int8 model for the Edge TPU: this file is another variant of "
                     f"the same model card, and {sibling} is its full-integer build "
                     f"(covid-edge check-edgetpu {sibling}).")
    first = report.first_unmapped
    if first is not None:
        lines.append(f"Partition point: op #{first.index} {first.label} is the first op the "
                     f"compiler cannot map; it and the {report.ops_after_first_unmapped} ops "
                     "after it run on the CPU (the compiler partitions only once).")
    if report.compiled:
        lines.append("Already compiled for the Edge TPU: edgetpu_compiler has replaced the "
                     "mapped part of the graph with an edgetpu-custom-op.")
    rows = [op for op in report.ops if all_ops or not op.mapped]
    hidden = 0
    if not (all_ops or cpu_only) and len(rows) > CPU_ROWS_SHOWN:
        hidden, rows = len(rows) - CPU_ROWS_SHOWN, rows[:CPU_ROWS_SHOWN]
    if not rows:
        lines.append("(no op would run on the CPU; --all lists every op)")
    else:
        width = max(len(op.label) for op in rows)
        several = len({op.subgraph for op in report.ops}) > 1
        lines.append("")
        lines.append(f"{'#':>4}  {'op':<{width}}  {'v':>2}  {'where':<6}  reason")
        for op in rows:
            index = f"{op.subgraph}:{op.index}" if several else str(op.index)
            where = "EDGETPU" if report.compiled and op.mapped else (
                "MAPPED" if op.mapped else "CPU")
            detail = op.reasons[0] if op.reasons else (f"note: {op.notes[0]}" if op.notes else "")
            lines.append(f"{index:>4}  {op.label:<{width}}  {op.version:>2}  {where:<6}  "
                         f"{detail}")
            for extra in op.reasons[1:]:
                lines.append(f"{'':>4}  {'':<{width}}  {'':>2}  {'':<6}  {extra}")
        if hidden:
            lines.append(f"... and {hidden} more op(s) on the CPU (--cpu-only lists them, "
                         "--all every op)")
    lines.append("")
    if min_runtime_version is not None:
        lines.append(f"Needs Edge TPU runtime {min_runtime_version} or newer (`covid-edge info` "
                     "shows the installed one; libedgetpu1-std 16.0 is runtime 14).")
    # Converter flags are advice for someone converting; with an int8 sibling there is
    # nothing to convert.
    for issue in ([] if sibling else report.model_issues):
        lines.append(f"Model: {issue}")
    for note in report.notes:
        lines.append(f"Note: {note}")
    lines.append(f"Supported operations: {CORAL_SUPPORTED_OPS_URL}")
    lines.append(DISCLAIMER)
    return "\n".join(lines)


def summary_line(report: Report) -> str:
    total = len(report.ops)
    if report.compiled:
        custom = ", ".join(f"#{op.index}" for op in report.edgetpu_custom_ops)
        left = report.on_cpu
        return (f"Summary: already compiled; {len(report.edgetpu_custom_ops)} edgetpu-custom-op "
                f"({custom}) on the Edge TPU, {left} op{'s' if left != 1 else ''} left on the "
                "CPU by the compiler.")
    if report.fully_mapped:
        return f"Summary: all {total} ops would map to the Edge TPU."
    return (f"Summary: {report.mapped} of {total} ops would map to the Edge TPU; "
            f"{report.on_cpu} would run on the CPU.")
