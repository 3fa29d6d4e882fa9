"""`covid-edge bench shift`: verdict flips when the same X-ray arrives another way."""

from __future__ import annotations

import click

from .. import DISCLAIMER
from ..edge_runtime.json_command import JsonErrorCommand
from .labelled_cli import (EXIT_USAGE, SETS_HELP, check_out, command_line, fail, finish,
                           labelled_options, load_images, load_model, progress)

EPILOG = f"""\b
Examples:
  covid-edge bench shift ../shared/data/cxr                  # its test split
  covid-edge bench shift ../shared/data/cxr --limit 25 -p jpeg-q75 -p camera-capture
  covid-edge bench shift scans/ --out bench/ --json > shift.json
  covid-edge bench shift --list                              # the perturbations

{SETS_HELP}

\b
Exit status: 0 every image was scored; 1 some images could not be read
(the figures leave them out); 2 bad options or sets; 3 the model cannot be
loaded.

{DISCLAIMER}"""


def _list_perturbations(ctx, _param, value):
    if not value or ctx.resilient_parsing:
        return
    from .perturbations import CATALOGUE, available

    for p in CATALOGUE:
        missing = "" if available(p) else f"  [needs {p.needs}]"
        click.echo(f"{p.name:18s} {p.group:10s} {p.description}{missing}")
    ctx.exit(0)


@click.command(cls=JsonErrorCommand, epilog=EPILOG)
@click.option("--list", is_flag=True, expose_value=False, is_eager=True,
              callback=_list_perturbations, help="List the perturbations and exit.")
@click.option("-p", "--perturbation", "names", multiple=True,
              help="Run only this perturbation (repeatable). Default: all of them.")
@labelled_options
def shift(names, sets, model_path, split_file, part, limit, seed, threads, runtime_name,
          no_guard, out_dir, force, as_json):
    """How often the verdict changes when the same X-ray arrives another way.

    Each image of SETS is classified as it is, then as copies that a
    deployment meets: re-saved as JPEG (quality 90 to 10), resampled,
    exported as a 2048-px 16-bit PNG or a 12-bit DICOM, EXIF-rotated, with
    other gamma, contrast and brightness, noise, blur, a small rotation or
    shift, black borders, burned-in text, and photographed by a camera on a
    light box or monitor. Every copy is written as a file and read back by the
    device's own reader. Per perturbation: the verdict flip rate (95% Wilson
    interval), mean and max change of the probability, the change of accuracy
    and ROC AUC, and the copies the guard refuses. Seeded: the same command
    gives the same copies.
    """
    from ..edge_runtime.classifier import default_threads
    from . import shift as shifting
    from . import shift_report as reporting

    check_out(out_dir, force, reporting.check_writable, as_json)
    try:
        perturbations, notes = shifting.choose(list(names))
    except shifting.ShiftError as exc:
        fail(str(exc), EXIT_USAGE, as_json)
    classifier = load_model(model_path, runtime_name, threads, no_guard, as_json)
    images, selection = load_images(classifier, sets, split_file, limit, seed, as_json,
                                   part)
    with progress("bench shift", as_json) as (start, advance):
        try:
            report = shifting.run(classifier, images, selection, perturbations, seed=seed,
                                  workers=threads or default_threads(), notes=notes,
                                  command=command_line(), on_start=start,
                                  progress=advance)
        except shifting.ShiftError as exc:
            fail(str(exc), EXIT_USAGE, as_json)
    finish(report, as_json, out_dir, reporting.write_report, reporting.terminal_table)
