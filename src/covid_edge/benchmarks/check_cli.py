"""`covid-edge bench check`: prove this device computes what the release computed."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import DISCLAIMER
from ..edge_runtime.cli_options import runtime_option, threads_option

EXIT_PASS, EXIT_FAIL, EXIT_CANNOT_RUN = 0, 1, 2

EPILOG = f"""\b
Examples:
  covid-edge bench check
  covid-edge bench check --models runs/v1/export --json > check.json

\b
Exit status: 0 every sample is within the tolerance, with its reference
verdict or near a boundary; 1 at least one is not (or the model file is
not the one the card describes); 2 the check could not run (no model card,
no reference outputs, sample images missing, no runtime) or bad options.

{DISCLAIMER}"""


@click.command(epilog=EPILOG)
@click.option("--models", "models_dir", type=click.Path(exists=True, file_okay=False,
                                                         path_type=Path),
              help="A folder `covid-edge convert` wrote. Default: the released models.")
@threads_option
@runtime_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def check(models_dir, threads, runtime_name, as_json):
    """Check that this device reproduces the model's reference outputs.

    The model card stores what the int8 model output for the sample X-rays
    shipped in samples/ when it was released, under each of LiteRT's int8
    kernel sets (XNNPACK, builtin optimized, reference). This runs them again
    here and compares, image by image: raw int8 output (in quantization
    steps), probability and verdict, against the card's tolerance, and says
    which kernel set this device's outputs are closest to. Run it after
    installing on a Raspberry Pi. Needs no labels and no TensorFlow.

    \b
    The tolerance is measured, not assumed: the largest difference between
    the kernel sets on the validation images the card names, plus 2 steps.

    \b
    What a pass proves: this device's image decoder, preprocessing and
    runtime compute what a legitimate int8 implementation of the released
    model computes, within the rounding differences int8 kernels are seen
    to have, and give the reference verdicts. A grossly wrong input (an
    inverted or half-contrast image) moves some samples beyond it and fails.
    The lung model's masks are checked the same way (per-pixel steps and the
    share of mask pixels that agree, both measured across kernel sets).

    \b
    What it does not prove: that outputs are bit-identical (they need not
    be), that this device's accuracy equals the card's (a sample whose
    reference is within the tolerance of the threshold is reported "near
    the threshold": its verdict may differ between int8 kernels and does
    not fail the check; run `bench drift` on labelled images for accuracy),
    that a subtle input change (a few grey levels) is absent, or anything
    about other images than the samples. Cards written before
    the measurement (0.2.0) state a fixed 2-step tolerance, which only
    LiteRT's XNNPACK on x86-64 meets.
    """
    from ..edge_runtime.classifier import default_threads
    from ..model_card import ModelCardError, released_models_dir
    from . import check as checking

    ctx = click.get_current_context()
    try:
        if models_dir is None:
            try:
                models_dir = released_models_dir()
            except ModelCardError:
                raise checking.CheckError(
                    "the released models are not installed with this copy of covid-edge: pass "
                    "--models DIR, a folder that `covid-edge convert` wrote") from None
        result = checking.run(models_dir, runtime=runtime_name,
                              threads=threads or default_threads())
    except checking.CheckError as exc:
        click.echo(f"error: {exc}", err=True)
        if as_json:
            click.echo(json.dumps({"error": str(exc), "passed": False,
                                   "exit_code": EXIT_CANNOT_RUN, **exc.details,
                                   "disclaimer": DISCLAIMER}, indent=2))
        ctx.exit(EXIT_CANNOT_RUN)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(checking.terminal_table(result))
    ctx.exit(EXIT_PASS if result["passed"] else EXIT_FAIL)
