"""`covid-edge bench latency`: how fast the models run on this device."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from .. import DISCLAIMER
from ..progress import progress_bar
from ..edge_runtime.devices import DEVICES
from ..edge_runtime.json_command import JsonFailureCommand


class OptionError(click.ClickException):
    """A bad option found after parsing (an --out that holds a report or cannot be written):
    exit 2, as for the options click itself rejects."""

    exit_code = 2


def _parse_threads(ctx, param, value):
    """'1,2,4' or '1-4' -> [1, 2, 4] / [1, 2, 3, 4]."""
    if value is None:
        return None
    counts = []
    try:
        for part in value.split(","):
            part = part.strip()
            if "-" in part:
                low, high = (int(v) for v in part.split("-", 1))
                # range() would make '3-1' empty, and the error would then blame the counts.
                if low > high:
                    raise click.BadParameter(
                        f"{part} is a reversed range: write the lower count first "
                        f"({high}-{low})")
                counts += range(low, high + 1)
            elif part:
                counts.append(int(part))
    except ValueError:
        raise click.BadParameter("give thread counts like 1,2,4 or 1-4") from None
    if not counts or min(counts) < 1:
        raise click.BadParameter("thread counts must be 1 or more")
    return sorted(set(counts))


def _check_runtime(ctx, param, value):
    """An unknown runtime name is a bad option (exit 2); a known one that is not installed
    is found when the run starts (exit 1, with the pip command to install it)."""
    if value is None or value == "all":
        return value
    from .runner import RUNTIME_MODULES

    names = [name.strip() for name in value.split(",") if name.strip()]
    choices = f"choose from all, {', '.join(RUNTIME_MODULES)}"
    if not names:
        raise click.BadParameter(f"name a runtime: {choices}")
    unknown = [name for name in names if name not in RUNTIME_MODULES]
    if unknown:
        raise click.BadParameter(f"unknown runtime {unknown[0]!r}: {choices}")
    return value


def _check_out(out_dir: Path, force: bool) -> None:
    """Both ways --out can fail, checked before the first measurement: a run of many minutes
    should not end in 'could not write the report'."""
    from . import report as reporting

    try:
        reporting.check_writable(out_dir, force)
    except reporting.ReportExistsError as exc:
        raise OptionError(str(exc)) from None
    try:
        reporting.check_can_write(out_dir)
    except OSError as exc:
        raise OptionError(f"--out {out_dir}: cannot write the report there "
                          f"({exc.strerror or exc}): choose another folder") from None


def _count(items, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _command_line(models, reference, runtimes, threads, xnnpack, device, runs, warmup, images,
                  end_to_end) -> str:
    """The run spelled out in full, for the report: what to type to repeat it."""
    words = ["covid-edge", "bench", "latency", *map(str, models)]
    if reference:
        words += ["--reference", str(reference)]
    words += ["--runtime", ",".join(runtimes), "--threads", ",".join(map(str, threads)),
              "--xnnpack", xnnpack, "--device", device, "--runs", str(runs),
              "--warmup", str(warmup)]
    if images:
        words += ["--images", str(images)]
    if not end_to_end:
        words.append("--no-end-to-end")
    return shlex.join(words)


def _check_reference(ctx, param, value):
    """A missing reference says where Google's model is: it is not shipped with covid-edge."""
    if value is not None and not value.is_file():
        raise click.BadParameter(
            f"{value}: no such file. Google's uint8 MobileNetV2 is not shipped with covid-edge: "
            "in a clone with ../shared beside it, use "
            "../shared/reference/mobilenet_v2_1.0_224_quant.tflite; elsewhere copy it from "
            "there or from github.com/google-coral/test_data (mobilenet_v2_1.0_224_quant.tflite)")
    return value


EXIT_NOT_A_MODEL = 3  # as classify's "model cannot be loaded"

EPILOG = f"""\b
Examples:
  covid-edge bench latency --reference ../shared/reference/mobilenet_v2_1.0_224_quant.tflite
  covid-edge bench latency models/ --threads 1 --xnnpack on --out bench/
  covid-edge bench latency models/covid-edge-int8.tflite models/lungs/lungs-int8.tflite
  covid-edge bench latency my.tflite --runtime all --json > latency.json
  covid-edge bench latency --device auto      # adds the Coral Edge TPU if present

\b
Exit status: 0 every configuration was measured or skipped for a reason
(an Edge TPU model without an Edge TPU); 1 one failed or the run could not
start (a runtime not installed, no Edge TPU); 2 bad options (an unknown
runtime, a reversed thread range, an --out that holds a report without
--force or cannot be written); 3 a named file is no TensorFlow Lite model.

{DISCLAIMER}"""


@click.command(cls=JsonFailureCommand, epilog=EPILOG)
@click.argument("models", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--reference", type=click.Path(dir_okay=False, path_type=Path),
              callback=_check_reference,
              help="A model to compare against, measured in the same run, thread for thread: "
                   "Google's uint8 ImageNet MobileNetV2 (mobilenet_v2_1.0_224_quant.tflite) "
                   "has our backbone: the ratio shows whether conversion added slow ops.")
@click.option("--runtime", "runtime", metavar="NAME[,NAME]|all", callback=_check_runtime,
              help="ai_edge_litert, tflite_runtime, tensorflow, or all installed. "
                   "Default: the first installed, in that order (TensorFlow only if asked).")
@click.option("--threads", callback=_parse_threads, metavar="LIST",
              help="Thread counts to sweep, e.g. 1,2 or 1-4. Default: 1 to the number of cores.")
@click.option("--xnnpack", type=click.Choice(["on", "off", "both"]), default="both",
              show_default=True, help="Run with the XNNPACK CPU delegate, without, or both.")
@click.option("--device", type=click.Choice(DEVICES), default="cpu",
              show_default=True,
              help="cpu; edgetpu: the Coral Edge TPU through libedgetpu (fails, saying "
                   "why, without one), measuring each model's _edgetpu.tflite build and "
                   "skipping models that have none; auto: CPU, plus the Edge TPU when its "
                   "delegate loads.")
@click.option("--runs", type=click.IntRange(min=2), default=100, show_default=True,
              help="Timed runs per configuration.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True,
              help="Untimed runs before timing.")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Images for end-to-end timing (decode + preprocess + inference). "
                   "Default: the samples shipped with the model.")
@click.option("--end-to-end/--no-end-to-end", default=True, show_default=True,
              help="Also time the whole path from an image file to a probability.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write latency.json, latency.md and plots/*.png here.")
@click.option("--force", is_flag=True, help="Overwrite an earlier report in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@click.option("--wide", is_flag=True,
              help="Every column on the terminal (p99, mean, std, first run); wider than 100.")
def latency(models, reference, runtime, threads, xnnpack, device, runs, warmup, images,
            end_to_end, out_dir, force, as_json, wide):
    """Measure latency, load time and memory of .tflite models on this device.

    MODELS are .tflite files, each measured as named, or folders written by
    `covid-edge convert`: every variant in the model card, plus the lung model
    beside it (lungs/, run before the classifier on every image) and any ONNX
    export; default: the released models. To time the lung model against one
    variant alone, name both files (see the examples). Each
    configuration (model x runtime x XNNPACK on/off x threads) runs in a fresh
    process: warm-up, then timed runs; p50/p90/p99, mean and std of inference
    alone and end-to-end, model load time and peak memory.

    The device (CPU, cores, OS, Python, runtime versions; on a Raspberry Pi
    the board, temperature and throttling before and after) is recorded with
    the results, with a warning when heat or a weak power supply slowed it.
    """
    from . import report as reporting
    from . import runner

    if out_dir is not None:
        _check_out(out_dir, force)
    try:
        runtimes = runner.choose_runtimes(runtime)
        entries = runner.resolve_models([str(m) for m in models],
                                        str(reference) if reference else None)
        image_files = runner.resolve_images(str(images) if images else None, entries)
        thread_counts = threads or runner.default_threads()
        targets, notes = runner.targets_for(device, xnnpack, runtimes)
        notes += runner.onnx_notes(entries)
    except runner.BenchmarkError as exc:
        error = click.ClickException(str(exc))
        if isinstance(exc, runner.NotAModelError):
            error.exit_code = EXIT_NOT_A_MODEL
        raise error from None
    if not image_files:
        notes.append("no sample images found (pass --images DIR): inference used a random "
                     "input and end-to-end timing was skipped")

    jobs = runner.plan(entries, runtimes, thread_counts, targets, runs, warmup, image_files,
                       end_to_end)
    settings = {
        "command": _command_line(models, reference, runtimes, thread_counts, xnnpack, device,
                                 runs, warmup, images, end_to_end),
        "runs": runs, "warmup": warmup, "threads": thread_counts, "xnnpack": xnnpack,
        "device": device, "runtimes": runtimes, "end_to_end": end_to_end and bool(image_files),
        "images": image_files,
    }
    if not as_json:
        click.echo(f"measuring {_count(jobs, 'configuration')} ({_count(entries, 'model')} x "
                   f"{_count(runtimes, 'runtime')} x {_count(targets, 'target')} x "
                   f"{_count(thread_counts, 'thread count')}), each in a fresh process", err=True)
    with progress_bar(len(jobs), "bench latency", as_json,
                      item_show_func=lambda job: job.describe() if job else None) as bar:
        result = runner.run_benchmark(entries, jobs, settings, notes,
                                      progress=lambda job, steps: bar.update(steps, job))

    if as_json:
        click.echo(reporting.to_json(result), nl=False)
    else:
        click.echo(reporting.terminal_table(result, wide=wide))
    if out_dir is not None:
        try:
            written, plot_note = reporting.write_report(result, out_dir, force=True)
        except OSError as exc:
            raise click.ClickException(f"could not write the report: {exc}") from None
        click.echo(f"wrote {', '.join(str(p) for p in written)}", err=True)
        if plot_note:
            click.echo(f"note: {plot_note}", err=True)
    failed = [r for r in result["results"] if r.get("status") == "error"]
    if failed:
        click.echo(f"error: {_count(failed, 'configuration')} failed; first: {failed[0]['model']} "
                   f"{failed[0].get('runtime')}: {failed[0].get('reason')}", err=True)
        sys.exit(1)
