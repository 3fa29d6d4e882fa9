"""`covid-edge explain`: a heatmap of where the deployed model looks, drawn over the X-ray."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .. import DISCLAIMER
from ..image_io import ImageReadError, read_image
from .classifier import ModelError, load_with_messages
from .explain import (DEFAULT_DISPLAY, LOG_ODDS, OCCLUDERS, VERDICT, count_inferences,
                      default_patch, default_stride, explain_pixels, patch_starts, render)
from .explain_coarse import DEFAULT_BUDGET, expected_inferences, explain_pixels_coarse
from .explain_lungs import attach_lungs
from .guard import NOT_CHEST_XRAY
from .cli_options import no_guard_option, runtime_option, threads_option
from .json_command import JsonErrorCommand
from .stdin_image import STDIN_ARGUMENT, read_stdin_image

EXIT_OK, EXIT_UNREADABLE, EXIT_USAGE, EXIT_MODEL = 0, 1, 2, 3
LONG_RUN_INFERENCES = 1000  # about 10 s at 1 thread without int8 dot products

HELP_EPILOG = f"""\b
How to read it (the colour is the drop in the model's log-odds of the class shown:
covid for a two-class model, the verdict's class for a model of more classes, or the
class --for names):
  red   hiding this region lowers the odds: it pushed the model toward that class
  blue  hiding this region raises the odds: it pushed the model away from it (toward
        normal, for the released covid / normal model)
  A model can score well while looking at the wrong things (text, markers, the
  edge of the film); the map shows what it used, not that this is medically right.

\b
Cost: 80 inferences of the model by default, plus one for the guard: the
coarse grid (7 x 7 patches edge to edge), then 30 of the in-between positions
where its neighbours disagree most; the rest are interpolated. Its maps
correlate >= 0.9 with the full grid's (scripts/explain_coarse_check.py). --full
scores every position: 1 + 13 x 13 = 170 inferences. Time: inferences x
`covid-edge bench latency`'s p50 on this device.

\b
Exit codes:
  0  the heatmap was written
  1  the image cannot be read, or the guard says it is not a chest X-ray
  2  usage error (output exists without --force, bad patch/stride, cannot write)
  3  the model cannot be loaded

\b
Examples:
  covid-edge explain chest.png -o chest-heatmap.png
  covid-edge explain scan.dcm -o scan-heatmap.png --patch 16 --stride 8 --json
  covid-edge explain chest.png --model models-3class/ --for covid   (evidence for covid
      even when the verdict is pneumonia)
  curl -s https://example.org/chest.png | covid-edge explain - -o chest-heatmap.png

{DISCLAIMER}"""


@click.command(cls=JsonErrorCommand, epilog=HELP_EPILOG)
@click.argument("image", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="PNG file to write. Default: IMAGE's name with -heatmap.png, in the "
                   "current folder (needed when IMAGE is -, an image on standard input).")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--model", "model_path", type=click.Path(path_type=Path),
              help="A .tflite file with its model_card.json beside it, or a folder that "
                   "`covid-edge convert` wrote. Default: the released int8 model.")
@click.option("--patch", type=click.IntRange(min=1), default=None,
              help="Side of the hidden square, in model-input pixels. Default: 1/7 of the "
                   "input side (32 at 224).")
@click.option("--stride", type=click.IntRange(min=1), default=None,
              help="Step between patches, at most --patch. Default: half the patch. Halving "
                   "it makes about four times as many inferences.")
@click.option("--full", is_flag=True,
              help=f"Score every patch position (170 inferences at the defaults) instead of "
                   f"the coarse-to-fine {DEFAULT_BUDGET}.")
@click.option("--occluder", type=click.Choice(OCCLUDERS), default="blur", show_default=True,
              help="What a hidden patch shows: the image blurred (keeps the brightness, so "
                   "no fake opacity appears in a dark lung) or the image mean.")
@click.option("--size", "display", type=click.IntRange(min=128, max=2048),
              default=DEFAULT_DISPLAY, show_default=True,
              help="Side of the X-ray in the figure, in pixels.")
@click.option("--for", "target", metavar="CLASS",
              help="Whose evidence to map: 'verdict' (the verdict's class) or a class name "
                   "such as covid. Default: the verdict's class for a model of more than two "
                   "classes, the positive class (covid) for a two-class model, whose map for "
                   "the other class is the same with the colours swapped.")
@no_guard_option
@threads_option
@runtime_option
@click.option("--json", "as_json", is_flag=True,
              help="Print the figures (probability, inferences, time, strongest regions) as "
                   "one JSON document on stdout.")
def explain(image, output, force, model_path, patch, stride, full, occluder, display, target,
            no_guard, threads, runtime_name, as_json):
    """Show where the model looks in IMAGE: an occlusion-sensitivity heatmap over the X-ray.

    Each square patch of the image the model sees is hidden in turn and the model is run
    again with the deployed TFLite model itself (the int8 one by default); the colour is how
    much the model's evidence (its log-odds) for a class dropped: covid for the released
    model, the verdict's class for a model of more classes, or the class --for names
    (e.g. --for covid on a normal / pneumonia / covid model). The figure (PNG) has the
    verdict, the colour bar and the disclaimer. The image first passes the same
    out-of-distribution guard as `classify`.
    """
    from_stdin = str(image) == STDIN_ARGUMENT
    if from_stdin and output is None:
        _fail("an image on standard input has no name to derive the heatmap's from: give "
              "-o FILE.png", EXIT_USAGE, as_json)
    output = output or Path(f"{image.stem}-heatmap.png")
    if output.suffix.lower() != ".png":
        raise click.BadParameter("write a .png file", param_hint="-o/--output")
    if output.exists() and not force:
        _fail(f"{output} exists; pass --force to overwrite it", EXIT_USAGE, as_json)
    if not output.parent.is_dir():
        _fail(f"{output.parent}: no such folder for the output", EXIT_USAGE, as_json)

    try:
        classifier, messages = load_with_messages(model_path, runtime=runtime_name,
                                                  threads=threads, guard=not no_guard)
    except ModelError as exc:
        _fail(f"cannot load the model: {exc}", EXIT_MODEL, as_json)
    for message in messages:
        click.echo(message, err=True)

    side = min(classifier.spec.height, classifier.spec.width)
    patch = patch or default_patch(side)
    stride = stride or default_stride(patch)
    try:
        patch_starts(side, patch, stride)
    except ValueError as exc:
        _fail(str(exc), EXIT_USAGE, as_json)
    if target is not None and target != VERDICT and target not in classifier.labels:
        _fail(f"--for {target}: this model's classes are {', '.join(classifier.labels)} "
              f"(or {VERDICT})", EXIT_USAGE, as_json)

    if from_stdin:
        image, reason = read_stdin_image()
        if reason:
            _fail(f"{STDIN_ARGUMENT}: {reason}", EXIT_UNREADABLE, as_json)
    try:
        decoded = read_image(image, target_size=(classifier.spec.width, classifier.spec.height),
                             high_bit_depth=classifier.spec.high_bit_window)
    except ImageReadError as exc:
        _fail(f"{image}: {exc}", EXIT_UNREADABLE, as_json)
    pixels, lung = classifier.pixels_from_gray(decoded.gray)
    # The same check `classify` makes: a map of what the model sees in a photo means nothing.
    prediction = classifier.classify_pixels(pixels, str(image), size=decoded.size,
                                            colourfulness=decoded.colourfulness, lung=lung)
    if prediction.verdict == NOT_CHEST_XRAY:
        _fail(f"{image}: {NOT_CHEST_XRAY}: {prediction.reason}; no heatmap written "
              "(--no-guard explains it anyway)", EXIT_UNREADABLE, as_json)

    height, width = classifier.spec.height, classifier.spec.width
    if full:
        total, method = count_inferences(height, width, patch, stride), explain_pixels
    else:
        total = expected_inferences(height, width, DEFAULT_BUDGET, patch, stride)
        method = explain_pixels_coarse
    show_progress = not as_json and sys.stderr.isatty()
    if total > LONG_RUN_INFERENCES and not show_progress:
        # No bar off a terminal: say up front why the command will be silent for a while.
        click.echo(f"note: {total} inferences at --patch {patch} --stride {stride} (the "
                   f"defaults make about {DEFAULT_BUDGET}); this takes a while", err=True)
    if show_progress:
        with click.progressbar(length=total - 1, label=f"explaining ({total} inferences)",
                               file=sys.stderr) as bar:
            explanation = method(classifier, pixels, patch=patch, stride=stride,
                                 occluder=occluder, progress=bar.update, target=target)
    else:
        explanation = method(classifier, pixels, patch=patch, stride=stride, occluder=occluder,
                             target=target)

    attach_lungs(classifier, explanation)
    figure = render(explanation, decoded.gray, str(image) if from_stdin else image.name,
                    display)
    try:
        figure.save(output, format="PNG")
    except OSError as exc:
        _fail(f"cannot write {output}: {exc.strerror or exc}", EXIT_USAGE, as_json)

    figures = explanation.figures()
    if as_json:
        document = {"image": str(image), "output": str(output), **figures,
                    "positive_label": classifier.positive_label,
                    "model": classifier.describe(), "runtime": classifier.runtime.label,
                    "threads": classifier.num_threads, "warnings": messages,
                    "disclaimer": DISCLAIMER}
        click.echo(json.dumps(document, indent=2))
    else:
        others = "".join(f", P({label}) = {p:.3f}"
                         for label, p in (explanation.probabilities or {}).items()
                         if label != classifier.positive_label and classifier.scheme.count > 2)
        click.echo(f"{explanation.verdict}: P({classifier.positive_label}) = "
                   f"{explanation.probability:.3f} (threshold {explanation.threshold:.3f})"
                   f"{others}")
        click.echo(f"heatmap: {output}")
        grid = f"{figures['grid'][0]}x{figures['grid'][1]}"
        scored = (f"{grid} patches" if full or figures['inferences'] > figures['grid'][0]
                  * figures['grid'][1] else f"coarse to fine over {grid} patch positions")
        click.echo(f"{figures['inferences']} inferences ({scored} of {patch}px, "
                   f"stride {stride}px, "
                   f"{occluder} occluder) in {figures['elapsed_ms']:.0f} ms, "
                   f"{figures['ms_per_inference']:.1f} ms each; runtime "
                   f"{classifier.runtime.label}, {classifier.num_threads} thread(s)")
        shown = explanation.target
        unit = "log-odds" if explanation.score == LOG_ODDS else f"P({shown})"
        several = classifier.scheme.count > 2
        if explanation.score == LOG_ODDS and (several or shown != classifier.positive_label):
            unit = f"log-odds of {shown}"
        blue = f"against {shown}" if several else f"for {explanation.against}"
        click.echo(f"hiding one region lowers the {unit} by up to {figures['max_drop']:.2f} "
                   f"(red, evidence for {shown}) and raises it by up to "
                   f"{figures['max_rise']:.2f} (blue, evidence {blue})")
        if figures.get("positive_evidence_in_lungs") is not None:
            click.echo(f"{figures['positive_evidence_in_lungs']:.0%} of the evidence for "
                       f"{shown} lies inside the lung fields (gold "
                       f"contour; they cover {figures['lung_area_share']:.0%} of the picture)")
        click.echo(DISCLAIMER)
    click.get_current_context().exit(EXIT_OK)


def _fail(message: str, code: int, as_json: bool):
    click.echo(f"error: {message}", err=True)
    if as_json:
        click.echo(json.dumps({"error": message, "exit_code": code, "disclaimer": DISCLAIMER},
                              indent=2))
    click.get_current_context().exit(code)
