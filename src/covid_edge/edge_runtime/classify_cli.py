"""`covid-edge classify`: the front door. Files, folders or globs in; one verdict per image out."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import click

from .. import DISCLAIMER
from ..formats import ACCEPTED_TEXT, IMAGE_SUFFIXES, UNREAD_IMAGE_SUFFIXES
from .classifier import Classifier, ModelError, Prediction, load_with_messages
from .display import probability_text, refusal_text, shown_path
from .guard import NOT_CHEST_XRAY
from .pipeline import classify_paths
from .cli_options import device_option, no_guard_option, runtime_option, threads_option
from .stdin_image import STDIN_ARGUMENT, StdinImage, read_stdin_image
from .json_command import JsonErrorCommand, emit_error

# DICOM files need the [dicom] extra (pydicom); image_io says so when it is missing.
PROGRESS_MIN_IMAGES = 20
CSV_FIELDS = ("path", "verdict", "probability", "threshold", "latency_ms", "total_ms", "runtime",
              "error", "reason", "raw_probability", "ood_distance", "lung_fields", "lung_fraction",
              "lung_balance")

EXIT_OK, EXIT_UNREADABLE, EXIT_USAGE, EXIT_MODEL = 0, 1, 2, 3

HELP_EPILOG = f"""\b
Exit codes:
  0  every image was read and answered: one of the model's classes, or "not a chest X-ray"
     (the guard's answer is a result, not a failure; scripts find it in the verdict and
     reason)
  1  some inputs could not be read (the others were classified): missing, damaged,
     not PNG/JPEG/TIFF/BMP/DICOM, a pipe or device, or over the memory budget per image
  2  usage error, no image found in the given paths, or --csv FILE cannot be written
     (an existing FILE is replaced only with --force, never when it is one of the images)
  3  the model cannot be loaded (missing, not TFLite, Edge-TPU-only, no runtime, an
     invalid model card, its guard statistics missing or not matching the card: use
     --no-guard), or --device edgetpu cannot be honoured (no libedgetpu, no Edge TPU,
     model not compiled)
  130  interrupted (Ctrl-C); an earlier --csv FILE is left as it was
With --json, every failure prints a JSON document with "error" and "exit_code".

\b
Examples:
  covid-edge classify chest.png
  covid-edge classify scans/ --csv results.csv
  covid-edge classify "scans/**/*.jpg" --json > results.json
  curl -s https://example.org/chest.png | covid-edge classify -   (an image on standard input)
  covid-edge classify chest.png --model runs/exp1/export/covid-edge-float16.tflite
  covid-edge classify scans/ --device edgetpu    (Coral: runs covid-edge-int8_edgetpu.tflite)
  covid-edge classify photo.jpg --no-guard       (a verdict even for what is no chest X-ray)

{DISCLAIMER}"""


class InputProblem(Exception):
    """A command-line path that names no image."""


def collect_inputs(arguments: tuple[str, ...], skipped: Counter | None = None,
                   stdin: Callable[[], tuple[StdinImage | None, str | None]] | None = None
                   ) -> tuple[list, list[tuple[str, str]]]:
    """Expand files, folders (recursively, sorted) and globs (expanded here because shells on
    Windows do not) into image paths; also return (argument, reason) for those naming none.
    `skipped`, when given, counts the files of UNREAD_IMAGE_SUFFIXES the folders held, by
    suffix. `stdin`, when given, is called for the argument "-": (a StdinImage, None) or
    (None, why not); it is read once, where "-" stands among the arguments."""
    files: list = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()
    skipped = Counter() if skipped is None else skipped
    stdin_read = False

    def add(path: Path) -> None:
        key = _identity(path)
        if key not in seen:
            seen.add(key)
            files.append(path)

    for argument in arguments:
        if stdin is not None and argument == STDIN_ARGUMENT:
            if not stdin_read:
                stdin_read = True
                image, reason = stdin()
                if reason:
                    problems.append((argument, reason))
                else:
                    files.append(image)
            continue
        try:
            found, reason = _expand(argument, skipped)
        except (OSError, RuntimeError) as exc:
            # A name too long, a folder that vanished while listed: this argument only.
            found, reason = [], f"cannot be listed ({getattr(exc, 'strerror', None) or exc})"
        if reason:
            problems.append((argument, reason))
        for image in found:
            add(image)
    return files, problems


def _expand(argument: str, skipped: Counter) -> tuple[list[Path], str | None]:
    """The images one argument names, or the reason it names none. Anything that is not a
    folder is passed on as it is: read_image refuses pipes, devices and link loops by type,
    as a per-file error."""
    path = Path(argument)
    if path.is_dir():
        found = _images_in(path, skipped)
        return found, None if found else f"folder holds no {ACCEPTED_TEXT} image"
    if os.path.lexists(path):
        return [path], None  # whatever its name, read_image will say if it is no image
    if glob.has_magic(argument):
        images = []
        for match in map(Path, sorted(glob.glob(argument, recursive=True))):
            if match.is_dir():
                images.extend(_images_in(match, skipped))
            elif match.suffix.lower() in IMAGE_SUFFIXES:
                images.append(match)
        return images, None if images else "pattern matches no image"
    return [], "no such file or folder"


def _identity(path: Path):
    """What makes two arguments the same file; a link loop has no resolved path."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def _images_in(folder: Path, skipped: Counter) -> list[Path]:
    # Dot files are skipped: macOS leaves "._scan.jpg" resource forks that are not images.
    # Anything with an image name that is not a folder is kept, pipes and dangling links
    # included: they become per-file errors instead of vanishing silently.
    images = []
    for path in folder.rglob("*"):
        suffix = path.suffix.lower()
        if (suffix not in IMAGE_SUFFIXES and suffix not in UNREAD_IMAGE_SUFFIXES
                or any(part.startswith(".") for part in path.relative_to(folder).parts)
                or path.is_dir()):
            continue
        if suffix in IMAGE_SUFFIXES:
            images.append(path)
        else:
            skipped[suffix] += 1
    return sorted(images)


def skipped_note(skipped: Counter) -> str | None:
    """One line naming the pictures a folder search passed over, or None."""
    if not skipped:
        return None
    counts = ", ".join(f"{count} {suffix}" for suffix, count in sorted(skipped.items()))
    total = sum(skipped.values())
    return (f"note: skipped {counts} file{'s' if total > 1 else ''} in the folders searched: "
            f"covid-edge reads {ACCEPTED_TEXT}; save them as PNG or JPEG to classify them")


@click.command(cls=JsonErrorCommand, epilog=HELP_EPILOG)
@click.argument("paths", nargs=-1, metavar="PATH...")
@click.option("--model", "model_path", type=click.Path(path_type=Path),
              help="A .tflite file with its model_card.json beside it, or a folder that "
                   "`covid-edge convert` wrote. Default: the released int8 model.")
@threads_option
@runtime_option
@device_option
@no_guard_option
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document (model, runtime, results, summary) on stdout.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, allow_dash=True),
              help="Also write one CSV row per image to FILE ('-' for stdout), once every "
                   "image is done. An existing FILE is kept unless --force.")
@click.option("--force", is_flag=True, help="Replace an existing --csv FILE.")
def classify(paths, model_path, threads, runtime_name, device, no_guard, as_json, csv_path,
             force):
    """Classify chest X-ray images into the model's classes (normal, pneumonia or covid for
    the released int8 TFLite model; covid or normal for a two-class one such as 0.2.0).

    PATH may be an image file (PNG, JPEG, BMP, TIFF; 8- or 16-bit, gray or color; or DICOM .dcm
    with the [dicom] extra, displayed with its window/VOI LUT), a folder (its images are found
    recursively, in sorted order), a quoted glob such as "scans/**/*.png", or - for one image
    piped to standard input (a file named "-" is ./-). Each image gets every class's probability
    and a verdict by the screening rule: covid when P(covid) reaches the model card's threshold
    (chosen for high sensitivity), else the most probable other class. The table shows P(covid)
    and, for a model of more than two classes, each other class's probability; --json and --csv
    carry all of them. No TensorFlow is needed.

    The probability shown is calibrated (temperature scaling fitted on the validation split;
    the threshold shown is on the same scale, so the verdict is unchanged). An int8 model's
    probability moves in steps of 1/256: it is shown with two decimals, and ">0.99" or
    "<0.01" when the output sits at the end of its range (the model may be surer than it
    can say). First, a guard decides whether the image is like the X-rays the model was
    trained on: colour photos, blank frames, odd aspect ratios, X-rays without two plausible
    lung fields (lateral views, CT slices, other body parts; the lung model in models/lungs)
    and pictures whose features lie far from the training X-rays are "refused" (outside what
    this model was trained on), with the reason, and get no verdict ("not a chest X-ray" in
    --json and --csv); --no-guard turns it off.
    """
    if not paths:
        raise click.UsageError("give at least one image, folder or glob")
    if as_json and csv_path == "-":
        raise click.UsageError("--json and --csv - both want stdout; write the CSV to a file")

    _lossless_stdout()
    csv_target = _csv_target(csv_path, force)  # before any work: a bad --csv fails at once
    skipped = Counter()
    files, problems = collect_inputs(paths, skipped, stdin=read_stdin_image)
    _refuse_csv_over_input(csv_target, files)
    for argument, reason in problems:
        _error(f"{shown_path(argument)}: {reason}")
    note = skipped_note(skipped)
    if note:
        click.echo(note, err=True)
    if not files:
        _error("no image to classify")
        if as_json:
            emit_error("no image to classify", EXIT_USAGE,
                       results=[{"path": argument, "error": reason}
                                for argument, reason in problems])
        _exit(EXIT_USAGE)

    try:
        classifier, messages = load_with_messages(model_path, runtime=runtime_name,
                                                  threads=threads, device=device,
                                                  guard=not no_guard)
    except ModelError as exc:
        _error(f"cannot load the model: {exc}")
        if as_json:
            emit_error(str(exc), EXIT_MODEL)
        _exit(EXIT_MODEL)
    for message in messages:
        click.echo(message, err=True)

    table_on_stdout = not as_json and csv_path != "-"
    show_progress = (len(files) >= PROGRESS_MIN_IMAGES and not as_json
                     and click.get_text_stream("stderr").isatty())
    # With a progress bar on the terminal, lines are printed after it so the two do not mix.
    deferred: list[Prediction] = []
    predictions: list[Prediction] = []

    progress = (click.progressbar(files, label="classifying", file=sys.stderr)
                if show_progress else contextlib.nullcontext(files))
    try:
        if table_on_stdout and not show_progress:
            click.echo(_table_header(classifier))
        with progress as bar:
            # Files are prepared ahead in threads while the interpreter runs (pipeline.py).
            for _, prediction in zip(bar, classify_paths(classifier, files)):
                predictions.append(prediction)
                if show_progress:
                    deferred.append(prediction)
                elif not as_json:
                    _print_human(prediction, table_on_stdout, classifier)
    except KeyboardInterrupt:  # the root group ends the process with exit 130
        unwritten = f"; {csv_path} not written" if csv_target is not None else ""
        click.echo(f"\n{len(predictions)} of {len(files)} images classified before the "
                   f"interruption{unwritten}", err=True)
        raise
    if show_progress and table_on_stdout:
        click.echo(_table_header(classifier))
    for prediction in deferred:
        _print_human(prediction, table_on_stdout, classifier)

    failures = [p for p in predictions if not p.ok]
    summary = _summary(predictions, problems, classifier)
    if csv_path == "-":
        _write_csv(sys.stdout, predictions, problems, classifier.labels)
    elif csv_target is not None:
        _save_csv(csv_target, predictions, problems, classifier.labels, as_json)
    if as_json:
        document = {
            "model": classifier.describe(),
            "runtime": classifier.runtime.label,
            "device": classifier.device.to_dict(),
            "threads": classifier.num_threads,
            "threshold": classifier.threshold,
            "positive_label": classifier.positive_label,
            "disclaimer": DISCLAIMER,
            "warnings": messages,
            "results": [p.to_dict() for p in predictions]
            + [_problem_result(argument, reason, classifier) for argument, reason in problems],
            "summary": summary,
        }
        click.echo(json.dumps(document, indent=2))
    else:
        _print_footer(classifier, summary, err=not table_on_stdout)
    _exit(EXIT_UNREADABLE if failures or problems else EXIT_OK)


def _table_header(classifier: Classifier) -> str:
    width = _verdict_width(classifier)
    others = "".join(f" {_column(label):>{_width(label)}}" for label in _other_columns(classifier))
    threshold = f" {'threshold':>9}" if _threshold_column(classifier) else ""
    return (f"{'verdict':<{width}} {'P(' + classifier.positive_label + ')':>8}{threshold}"
            f"{others} {'latency':>10}  image")


def _threshold_column(classifier: Classifier) -> bool:
    """Two classes: the threshold beside P(positive), as the table always was. More: the
    footer states it with the rule, and the room goes to the other classes' columns (the
    table stays within 100 columns with a long path)."""
    return classifier.scheme.count == 2


def _other_columns(classifier: Classifier) -> tuple[str, ...]:
    """The classes whose probability gets a column beside P(positive): none for two classes
    (the other probability is 1 - P(positive): the table stays as it always was)."""
    return classifier.scheme.others if classifier.scheme.count > 2 else ()


def _column(label: str) -> str:
    # A long class name is cut so that the table of a many-class model stays narrow.
    return f"P({label[:7]})"


def _width(label: str) -> int:
    return max(len(_column(label)), 5)


def _verdict_width(classifier: Classifier) -> int:
    return max([9, *(len(label) + 1 for label in classifier.labels)])


def _print_human(prediction: Prediction, table_on_stdout: bool, classifier: Classifier) -> None:
    width = _verdict_width(classifier)
    others = _other_columns(classifier)
    if not prediction.ok:
        _error(f"{shown_path(prediction.path)}: {prediction.error}")
    elif not table_on_stdout:
        return
    elif prediction.verdict == NOT_CHEST_XRAY:
        # The row keeps its columns; the reason goes on its own line under it.
        dashes = "".join(f" {'-':>{_width(label)}}" for label in others)
        threshold = f" {'-':>9}" if _threshold_column(classifier) else ""
        click.echo(f"{'refused':<{width}} {'-':>8}{threshold}{dashes} {'-':>10}  "
                   f"{shown_path(prediction.path)}")
        click.echo(textwrap.fill(refusal_text(prediction.reason), 100, initial_indent=" " * 10,
                                 subsequent_indent=" " * 10, break_on_hyphens=False))
    else:
        limits = classifier.output_limits()
        probability = probability_text(prediction.raw_probability, prediction.probability, limits)
        shown, raw = prediction.probabilities or {}, prediction.raw_probabilities or {}
        columns = "".join(
            f" {probability_text(raw.get(label), shown.get(label), limits):>{_width(label)}}"
            for label in others)
        threshold = f" {prediction.threshold:>9.3f}" if _threshold_column(classifier) else ""
        click.echo(f"{prediction.verdict:<{width}} {probability:>8}{threshold}"
                   f"{columns} {prediction.latency_ms:>7.1f} ms  {shown_path(prediction.path)}")


def _summary(predictions: list[Prediction], problems: list, classifier: Classifier) -> dict:
    """Counts of inputs and outcomes, and one count per class (the key is its label, as it
    always was for two classes; "verdicts" holds the same counts together)."""
    read = [p for p in predictions if p.ok]
    classified = [p for p in read if p.verdict != NOT_CHEST_XRAY]
    verdicts = {label: sum(p.verdict == label for p in classified)
                for label in _verdict_order(classifier)}
    return {
        "inputs": len(predictions) + len(problems),
        "classified": len(classified),
        "not_chest_xray": len(read) - len(classified),
        "unreadable": len(predictions) - len(read) + len(problems),
        **verdicts,
        "verdicts": verdicts,
    }


def _verdict_order(classifier: Classifier) -> tuple[str, ...]:
    """The positive class first, then the others in the card's order."""
    return (classifier.positive_label, *classifier.scheme.others)


def _problem_result(argument: str, reason: str, classifier: Classifier) -> dict:
    return Prediction(argument, None, None, classifier.threshold, None, None,
                      classifier.runtime_label, error=reason).to_dict()


def _csv_target(csv_path: str | None, force: bool) -> Path | None:
    """The --csv file, checked before any work: an existing file is replaced only with
    --force, and its folder must take a new file. Nothing is opened yet, so a run that fails
    later leaves the old file as it was."""
    if csv_path is None or csv_path == "-":
        return None
    target = Path(csv_path)
    if target.is_dir():
        raise click.BadParameter(f"{csv_path} is a folder; name a file", param_hint="--csv")
    if os.path.lexists(target) and not force:
        raise click.BadParameter(f"{csv_path} exists; pass --force to replace it",
                                 param_hint="--csv")
    folder = target.parent
    if not folder.is_dir():
        raise click.BadParameter(f"cannot write {csv_path}: no folder {folder}",
                                 param_hint="--csv")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise click.BadParameter(f"cannot write {csv_path}: {folder} is not writable",
                                 param_hint="--csv")
    return target


def _refuse_csv_over_input(target: Path | None, files: list) -> None:
    # Even with --force: replacing an image with its own results loses the image.
    if target is not None and os.path.lexists(target):
        named = {_identity(path) for path in files if isinstance(path, Path)}  # not stdin
        if _identity(target) in named:
            raise click.BadParameter(f"{target} is one of the images to classify",
                                     param_hint="--csv")


def _save_csv(target: Path, predictions: list[Prediction], problems: list,
              labels: tuple[str, ...], as_json: bool) -> None:
    """Write beside the target, then rename over it: a reader never sees half a file, and a
    failure (a full disk) leaves the previous file whole."""
    import tempfile

    try:
        # surrogateescape: a file name that is not valid UTF-8 is written back as its bytes.
        with tempfile.NamedTemporaryFile("w", dir=target.parent, prefix=f".{target.name}.",
                                         suffix=".partial", delete=False, newline="",
                                         encoding="utf-8", errors="surrogateescape") as handle:
            partial = Path(handle.name)
            try:
                _permissions_of_a_new_file(partial)  # mkstemp makes it owner-only
                _write_csv(handle, predictions, problems, labels)
            except BaseException:
                handle.close()
                partial.unlink(missing_ok=True)
                raise
        os.replace(partial, target)
    except OSError as exc:
        message = f"cannot write {target}: {exc.strerror or exc}"
        _error(message)
        if as_json:
            emit_error(message, EXIT_USAGE)
        _exit(EXIT_USAGE)


def _permissions_of_a_new_file(path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _write_csv(handle, predictions: list[Prediction], problems: list,
               labels: tuple[str, ...]) -> None:
    rows = []
    for prediction in predictions:
        row = prediction.to_dict()
        lungs = row.pop("lungs", None) or {}  # the lung geometry, flattened to three columns
        row.update(lung_fields=lungs.get("field_count", ""),
                   lung_fraction=lungs.get("lung_fraction", ""),
                   lung_balance=lungs.get("balance", ""))
        # Every class's calibrated probability, one column each (p_normal, p_covid, ...).
        shown = row.pop("probabilities", None) or {}
        row.pop("raw_probabilities", None)
        row.update({f"p_{label}": shown.get(label, "") for label in labels})
        rows.append(row)
    rows += [{"path": argument, "error": reason} for argument, reason in problems]
    fields = CSV_FIELDS + tuple(f"p_{label}" for label in labels)
    import csv  # only for --csv

    writer = csv.DictWriter(handle, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows(rows)


def _print_footer(classifier: Classifier, summary: dict, err: bool) -> None:
    """Three lines whatever the number of images: counts and the rule, the model, the
    disclaimer; each folded to 100 columns."""
    model = classifier.describe()
    positive = classifier.positive_label
    guard = ("guard off" if classifier.guard is None else
             "guard on" if classifier.guard.features is not None else "guard: image checks")
    counts = ", ".join(f"{summary['verdicts'][label]} {label}"
                       for label in _verdict_order(classifier))
    rule = f"{positive} when P({positive}) >= {classifier.threshold:.3f}"
    if classifier.scheme.count > 2:
        rule += ", else the most probable other class"
    for line in (
            f"{summary['classified']} classified: {counts}; {summary['not_chest_xray']} refused; "
            f"{summary['unreadable']} unreadable. {rule}.",
            f"Model {model['name']} {model['version']} {model['variant']}, "
            f"{classifier.runtime_label}, {classifier.num_threads} "
            f"thread{'s' if classifier.num_threads != 1 else ''}, {guard}; latency: invoke."):
        click.echo(textwrap.fill(line, 100, break_on_hyphens=False), err=err)
    click.echo(DISCLAIMER, err=err)


def _lossless_stdout() -> None:
    """File names that are not valid UTF-8 reach Python as surrogate escapes; printed back
    with surrogateescape they are the original bytes, where the default 'strict' would crash
    the run at the first such name (JSON escapes them as \\udcXX: still lossless)."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        try:
            reconfigure(errors="surrogateescape")
        except (ValueError, OSError):
            pass


def _exit(code: int):
    # click's Exit, not SystemExit: main(standalone_mode=False) then returns the code.
    click.get_current_context().exit(code)


def _error(message: str) -> None:
    click.echo(f"error: {message}", err=True)
