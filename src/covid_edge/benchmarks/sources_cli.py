"""`covid-edge bench sources`: the model's figures per source of X-rays, with 95% intervals."""

from __future__ import annotations

import click

from .. import DISCLAIMER
from ..edge_runtime.json_command import JsonErrorCommand
from .labelled_cli import (SETS_HELP, check_out, command_line, finish, labelled_options,
                           load_images, load_model, progress)

EPILOG = f"""\b
Examples:
  covid-edge bench sources ../shared/data/cxr ../shared/data/cxr-more
  covid-edge bench sources cxr=../shared/data/cxr hospital-b=scans/ --out bench/
  covid-edge bench sources ../shared/data/cxr-more --limit 20 --json > sources.json

{SETS_HELP}

\b
Exit status: 0 every image was scored; 1 some images could not be read
(the figures leave them out and the report lists them); 2 bad options or
sets; 3 the model cannot be loaded.

{DISCLAIMER}"""


@click.command(cls=JsonErrorCommand, epilog=EPILOG)
@labelled_options
def sources(sets, model_path, split_file, part, limit, seed, threads, runtime_name,
            no_guard, out_dir, force, as_json):
    """How the model does on each source of X-rays, with 95% intervals.

    Every image of SETS is classified once, by the device's own code path.
    Per source and pooled: n, accuracy, sensitivity and specificity with
    Wilson intervals, and ROC AUC with a DeLong interval; with the guard on
    (refused images have no verdict, and are counted) and off (the model
    alone). Labels that are not the model's classes (pneumonia, tuberculosis
    for a covid/normal model) get "called covid" rates. A model that follows
    the hospital instead of the disease shows here, not on its test split.
    """
    from . import sources as per_source
    from . import sources_report as reporting

    check_out(out_dir, force, reporting.check_writable, as_json)
    classifier = load_model(model_path, runtime_name, threads, no_guard, as_json)
    images, selection = load_images(classifier, sets, split_file, limit, seed, as_json,
                                   part)
    with progress("bench sources", as_json) as (start, advance):
        report = per_source.run(classifier, images, selection, command=command_line(),
                                on_start=start, progress=advance)
    finish(report, as_json, out_dir, reporting.write_report, reporting.terminal_table)
