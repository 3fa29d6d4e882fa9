"""Presenting a drift benchmark: a terminal table, JSON, and a Markdown report with plots.

Everything is drawn from the JSON dict `drift.run` returns (plus, optionally, a latency report
for the latency columns and plots), so a report can be redrawn from drift.json later.
matplotlib is optional: without it the report is written without plots and says so.
"""

from __future__ import annotations

from pathlib import Path

from .report import _markdown_table, _text_table, write_files
from .report import check_writable as check_latency_writable
from .report_format import wrap

JSON_NAME = "drift.json"
MARKDOWN_NAME = "drift.md"
PLOTS_DIR = "plots"
# Ours only: `bench latency --out` may share the folder, and its plots must survive ours.
PLOT_NAMES = ("drift_variants.png", "drift_probability_shift.png", "drift_delta_histogram.png",
              "drift_calibration.png")
FLIPS_SHOWN_ON_TERMINAL = 20
LOGIT_TICKS = (0.001, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999)


def _fraction(value) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"  # value != value: NaN


def _shift(value) -> str:
    if value is None:
        return "-"
    return f"{value:.1e}" if 0 < value < 1e-3 else f"{value:.4f}"


def _ms(value) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def has_latency(report: dict) -> bool:
    return any(v.get("latency") for v in report["variants"])


def variant_columns(report: dict) -> tuple[str, ...]:
    columns = ("variant", "size MB", "accuracy", "ROC AUC", "sensitivity", "specificity",
               "agreement", "mean |Δp|", "max |Δp|", "flips")
    if has_latency(report):
        columns += ("p50 ms, 1 thread",)
    return columns


# The terminal's short headers (the table then fits 100 columns); the report keeps the long.
SHORT_HEADERS = {"size MB": "MB", "ROC AUC": "AUC", "sensitivity": "sens.",
                 "specificity": "spec.", "agreement": "agree", "mean |Δp|": "mean|Δp|",
                 "max |Δp|": "max|Δp|", "p50 ms, 1 thread": "p50 ms"}


def variant_rows(report: dict) -> list[list[str]]:
    reference = report["reference"]["variant"]
    rows = []
    for v in report["variants"]:
        m = v["metrics"]
        versus = v.get("versus_reference")
        name = v["name"] + (" (reference)" if v["name"] == reference else "")
        if versus is None or v["name"] == reference:
            comparison = ["-", "-", "-", "-"]
        else:
            comparison = [_fraction(versus["agreement"]),
                          _shift(versus["mean_abs_probability_difference"]),
                          _shift(versus["max_abs_probability_difference"]),
                          str(len(versus["flips"]))]
        row = [name, f"{v['bytes'] / 1e6:.2f}", _fraction(m["accuracy"]), _fraction(m["roc_auc"]),
               _fraction(m["sensitivity"]), _fraction(m["specificity"]), *comparison]
        if has_latency(report):
            row.append(_ms((v.get("latency") or {}).get("p50_ms")))
        rows.append(row)
    latency_reference = (report.get("latency") or {}).get("reference")
    if latency_reference and has_latency(report):
        # Not our model: its speed only, the yardstick `bench latency --reference` measured.
        rows.append([f"{latency_reference['name']} (speed only)",
                     f"{latency_reference['bytes'] / 1e6:.2f}", *["-"] * 8,
                     _ms(latency_reference["p50_ms"])])
    return rows


def confusion_lines(report: dict, variant: dict) -> list[str]:
    """The N-class verdict's confusion matrix of one variant as a text table (rows: the true
    class, columns: the verdict), for a model of more than two classes; [] otherwise."""
    m = variant["metrics"]
    matrix = m.get("class_confusion_matrix")
    if not matrix:
        return []
    labels = m["labels"]
    corner = "true / verdict"
    width = max(len(label) for label in labels + [corner])
    cell = max(6, *(len(label) for label in labels))
    lines = [f"{corner:<{width}}  " + "  ".join(f"{label:>{cell}}" for label in labels)]
    for label, row in zip(labels, matrix):
        lines.append(f"{label:<{width}}  " + "  ".join(f"{n:>{cell}}" for n in row))
    per_class = m.get("per_class") or {}
    lines.append(f"class accuracy {_fraction(m.get('class_accuracy'))}; "
                 + "; ".join(f"{label} sensitivity {_fraction(per_class[label]['sensitivity'])}"
                             f", AUC {_fraction(per_class[label]['roc_auc'])}"
                             for label in labels if label in per_class))
    return lines


def _confusion_variant(report: dict) -> dict | None:
    """The variant whose confusion matrix the terminal shows: int8, else the first."""
    variants = [v for v in report["variants"] if v["metrics"].get("class_confusion_matrix")]
    return next((v for v in variants if v["name"] == "int8"), variants[0] if variants else None)


def _selection_line(report: dict) -> str:
    s = report["selection"]
    counts = ", ".join(f"{n} {label}" for label, n in s["per_class"].items())
    return f"{report['n_images']} images ({counts}) from {s['data_dir']}: {s['reason']}"


def _flip_line(flip: dict) -> str:
    return (f"{flip['path']} (truly {flip['label']}): {flip['reference_probability']:.4f} -> "
            f"{flip['probability']:.4f}")


def guard_line(report: dict) -> str:
    """The released variant with its guard on: what `classify` answers on the same images."""
    guard = report["guard"]
    line = (f"with the guard on ({guard['variant']}, as classify answers): {guard['answered']} "
            f"answered, {len(guard['refused'])} refused")
    if guard["metrics"]:
        m = guard["metrics"]
        line += (f"; accuracy {m['accuracy']:.4f}, sensitivity {m['sensitivity']:.4f}, "
                 f"specificity {m['specificity']:.4f} at the calibrated threshold "
                 f"{guard['calibrated_threshold']:.3f}")
    return line + ". The table above is every model alone, on every image."


def terminal_table(report: dict) -> str:
    model = report["model"]
    reference = report["reference"]
    parts = [
        f"covid-edge bench drift: {model['name']} {model['version']}, threshold "
        f"{model['threshold']:.4g} ({model['positive_label']} when P >= it)",
        wrap(_selection_line(report)),
        wrap(f"float reference: {reference['why']}"),
        "",
        _text_table([SHORT_HEADERS.get(c, c) for c in variant_columns(report)],
                    [[row[0].replace(" (reference)", " (ref)"), *row[1:]]
                     for row in variant_rows(report)]),
        "",
        wrap("sens./spec.: sensitivity/specificity; agree: share of images whose verdict equals "
             "the reference's (ref); |Δp|: difference of the model's raw probability (before "
             "calibration: what the variants compute) from the reference's; flips: images "
             "whose verdict differs."),
    ]
    shown = _confusion_variant(report)
    if shown is not None:
        parts += ["", f"{shown['name']}: the {len(shown['metrics']['labels'])}-class verdict "
                      "against the true class (the model alone, every image):"]
        parts += [wrap(line) for line in confusion_lines(report, shown)]
    if report.get("latency"):
        latency = report["latency"]
        where = (latency["path"] if latency["path"].startswith("measured")
                 else f"from {latency['path']}")
        parts.append(wrap(f"latency: p50 of inference alone, 1 thread, {where}, on "
                          f"{latency['device']}"))
    if report.get("guard"):
        parts += ["", wrap(guard_line(report))]
    flips = report.get("int8_flips")
    if flips is not None:
        parts += ["", f"int8 verdicts that differ from the {reference['variant']} reference: "
                      f"{len(flips)} of {report['n_images']}"]
        parts += [f"  {_flip_line(f)}" for f in flips[:FLIPS_SHOWN_ON_TERMINAL]]
        if len(flips) > FLIPS_SHOWN_ON_TERMINAL:
            parts.append(f"  ... and {len(flips) - FLIPS_SHOWN_ON_TERMINAL} more (see --json "
                         "or the report)")
    for note in report.get("notes", []):
        parts.append(wrap(f"note: {note}"))
    parts += ["", report["disclaimer"]]
    return "\n".join(parts)


def card_rows(report: dict) -> list[list[str]]:
    rows = []
    for v in report["variants"]:
        card = v.get("model_card_test_metrics")
        if not card:
            continue
        m = v["metrics"]
        rows.append([v["name"], str(m["n"]), str(card["n"]), _fraction(m["accuracy"]),
                     _fraction(card["accuracy"]), _fraction(m["roc_auc"]),
                     _fraction(card["roc_auc"]), _fraction(m["sensitivity"]),
                     _fraction(card["sensitivity"])])
    return rows


CARD_COLUMNS = ("variant", "images here", "images in card", "accuracy here", "accuracy in card",
                "AUC here", "AUC in card", "sensitivity here", "sensitivity in card")


def markdown(report: dict, plots: list[Path], plot_note: str | None) -> str:
    model = report["model"]
    reference = report["reference"]
    lines = [
        "# covid-edge drift benchmark",
        "",
        f"> {report['disclaimer']}",
        "",
        f"Run {report['created']} in {report['elapsed_s']} s: `{report.get('command', '')}`",
        "",
        f"- Model: {model['name']} {model['version']} ({model['card']}), input "
        f"{model['input_size'][0]}x{model['input_size'][1]}, threshold {model['threshold']:.6g}: "
        f"{model['positive_label']} when P >= it ({model.get('threshold_rule') or 'no rule given'})",
        f"- Images: {_selection_line(report)}",
        f"- Float reference: {reference['why']}",
        "",
        "## Variants",
        "",
        "Accuracy, ROC AUC, sensitivity (COVID recall) and specificity at the model's threshold. "
        "*Agreement* is the share of images whose verdict equals the reference's; *|Δp|* the "
        "difference of the probability from the reference's; *flips* the images whose verdict "
        "differs. Size is the model file.",
    ]
    if report.get("latency"):
        latency = report["latency"]
        lines += ["", f"*p50 ms* is inference alone at 1 thread (XNNPACK on where measured), "
                      f"from `{latency['path']}`, **measured on {latency['device']}** "
                      f"({latency['cores']} cores) on {latency['created']}."]
        if latency.get("reference"):
            lines[-1] += (" The *speed only* row is the model given to `bench latency "
                          "--reference` (Google's ImageNet MobileNetV2 has our backbone).")
        if latency.get("warnings"):
            lines += [""] + [f"- **Latency warning: {w}**" for w in latency["warnings"]]
    # A "|" in a header would end the cell: escape it as the rows' cells are.
    columns = [c.replace("|", "\\|") for c in variant_columns(report)]
    lines += ["", _markdown_table(columns, variant_rows(report)), ""]
    confusions = [v for v in report["variants"] if v["metrics"].get("class_confusion_matrix")]
    if confusions:
        lines += ["## The verdict of every class", "",
                  "Rows: the true class; columns: the verdict (the positive class when its "
                  "probability reaches the threshold, else the most probable other class). "
                  "The model alone, every image.", ""]
        for v in confusions:
            lines += [f"**{v['name']}**", "", "```text", *confusion_lines(report, v), "```", ""]
    if report.get("guard"):
        lines += ["## With the guard on", "", guard_line(report), ""]
        refused = report["guard"]["refused"]
        lines += [f"- `{r['path']}` ({r['label']}): {r['reason']}" for r in refused[:50]]
        lines += [""] if refused else []
    flips = report.get("int8_flips")
    if flips is not None:
        lines += [f"## int8 verdicts that differ from the {reference['variant']} reference", "",
                  f"{len(flips)} of {report['n_images']} images."]
        if flips:
            lines += ["", "| image | true label | reference P | int8 P |", "|---|---|---|---|"]
            lines += [f"| `{f['path']}` | {f['label']} | {f['reference_probability']:.4f} | "
                      f"{f['probability']:.4f} |" for f in flips]
        lines.append("")
    rows = card_rows(report)
    if rows and report["selection"]["split"] == "test":
        lines += ["## Against the model card", "",
                  "The model card's figures are on the whole test split of the training data; "
                  "with the same images (no --limit) the figures here equal them.", "",
                  _markdown_table(CARD_COLUMNS, rows), ""]
    if plots or plot_note:
        lines += ["## Plots", ""]
        for p in plots:
            lines += [f"![{p.stem}]({PLOTS_DIR}/{p.name})", ""]
        if plot_note:
            lines += [f"*{plot_note}*", ""]
    if report.get("unreadable"):
        lines += ["## Unreadable images", "", "Left out of every variant.", ""]
        lines += [f"- `{u['path']}`: {u['error']}" for u in report["unreadable"]] + [""]
    if report.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in report["notes"]] + [""]
    device = report["device"]
    lines += ["## Device", "", "| | |", "|---|---|"]
    for key in ("board_model", "cpu_model", "machine", "cores", "os", "python", "covid_edge"):
        if device.get(key) is not None:
            lines.append(f"| {key.replace('_', ' ')} | {device[key]} |")
    if device.get("cpu_features"):
        from .cpu_features import summary
        lines.append(f"| CPU features | {summary(device['cpu_features'])} |")
    for name, version in device.get("packages", {}).items():
        lines.append(f"| {name} | {version} |")
    lines += ["", "## Models", "", "| variant | file | runtime | bytes | sha256 |",
              "|---|---|---|---|---|"]
    for v in report["variants"]:
        lines.append(f"| {v['name']} | `{v['path']}` | {v['runtime']} | {v['bytes']} | "
                     f"`{v['sha256'][:16]}…` |")
    lines.append("")
    return "\n".join(lines)


# -- plots -----------------------------------------------------------------------------------

def _series(report: dict) -> tuple[dict, list[int]]:
    """Probabilities per variant and labels (1 = positive), from the per-image predictions."""
    import numpy as np

    predictions = report["predictions"]
    positive = report["model"]["positive_label"]
    labels = np.array([p["label"] == positive for p in predictions], dtype=int)
    names = [v["name"] for v in report["variants"]]
    probs = {n: np.array([p["probabilities"][n] for p in predictions]) for n in names}
    return probs, labels


def _compared(report: dict) -> list[str]:
    reference = report["reference"]["variant"]
    return [v["name"] for v in report["variants"]
            if reference is not None and v["name"] != reference]


def plot_variants(report: dict, path: Path) -> None:
    """Ultralytics-style: the variants side by side by size, speed and accuracy."""
    from matplotlib.figure import Figure

    variants = report["variants"]
    names = [v["name"] for v in variants]
    fig = Figure(figsize=(12, 3.4), layout="constrained")
    size_ax, speed_ax, score_ax = fig.subplots(1, 3, sharey=True)
    positions = range(len(names))
    size_ax.barh(positions, [v["bytes"] / 1e6 for v in variants], color="tab:gray")
    size_ax.set_yticks(list(positions), names)
    size_ax.invert_yaxis()
    size_ax.set_xlabel("file size (MB)")
    latency = [(v.get("latency") or {}).get("p50_ms") for v in variants]
    if any(value is not None for value in latency):
        speed_ax.barh(positions, [value or 0 for value in latency], color="tab:blue")
        device = (report.get("latency") or {}).get("device") or "?"
        speed_ax.set_xlabel(f"p50 inference ms, 1 thread\n({device})", fontsize=8)
        for i, value in enumerate(latency):
            if value is None:
                speed_ax.text(0, i, " not measured", va="center", fontsize=7)
    else:
        speed_ax.text(0.5, 0.5, "no latency:\npass --latency latency.json\n"
                      "from `covid-edge bench latency --out`", ha="center", va="center",
                      transform=speed_ax.transAxes, fontsize=8)
        speed_ax.set_xlabel("p50 inference ms, 1 thread")
    width = 0.27
    shown = []
    for k, (key, label) in enumerate((("accuracy", "accuracy"), ("roc_auc", "ROC AUC"),
                                      ("sensitivity", "sensitivity"))):
        values = [v["metrics"][key] for v in variants]
        where = [i + (k - 1) * width for i in positions]
        score_ax.barh(where, values, height=width, label=label)
        for y, value in zip(where, values):
            score_ax.text(value, y, f" {value:.4f}", va="center", fontsize=6)
        shown += [value for value in values if value == value]  # not NaN
    # Variants differ in the third digit: an axis from 0 would hide it.
    low = max(0.0, (min(shown, default=0.0) - 0.05) // 0.05 * 0.05)
    score_ax.set_xlim(low, 1.04)  # room for the labels
    score_ax.set_xticks([t for t in score_ax.get_xticks() if low <= t <= 1.0 + 1e-9])
    score_ax.set_xlabel(f"at threshold {report['model']['threshold']:.3g}, "
                        f"{report['n_images']} images")
    score_ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3)
    for ax in (size_ax, speed_ax, score_ax):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("variants: size, speed, accuracy")
    fig.savefig(path, dpi=110)


def plot_probability_shift(report: dict, path: Path) -> None:
    """Each quantized variant's probability against the reference's, per image; logit axes
    because screening thresholds sit near 0 or 1. Flipped verdicts are ringed in red."""
    import numpy as np
    from matplotlib.figure import Figure

    probs, labels = _series(report)
    reference = report["reference"]["variant"]
    compared = _compared(report)
    threshold = report["model"]["threshold"]
    low, high = 1e-4, 1 - 1e-4
    fig = Figure(figsize=(3.8 * len(compared), 3.9), layout="constrained")
    axes = fig.subplots(1, len(compared), squeeze=False)[0]
    ref = np.clip(probs[reference], low, high)
    for ax, name in zip(axes, compared):
        mine = np.clip(probs[name], low, high)
        for value, label, colour in ((0, "normal", "tab:blue"), (1, "covid", "tab:orange")):
            chosen = labels == value
            ax.scatter(ref[chosen], mine[chosen], s=9, alpha=0.6, color=colour,
                       label=f"truly {label}")
        flipped = (probs[name] >= threshold) != (probs[reference] >= threshold)
        if flipped.any():
            ax.scatter(ref[flipped], mine[flipped], s=60, facecolors="none", edgecolors="red",
                       linewidths=1.2, label=f"verdict flips ({int(flipped.sum())})")
        ax.set_xscale("logit")
        ax.set_yscale("logit")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_xticks(LOGIT_TICKS, [f"{t:g}" for t in LOGIT_TICKS], fontsize=7)
        ax.set_yticks(LOGIT_TICKS, [f"{t:g}" for t in LOGIT_TICKS], fontsize=7)
        ax.minorticks_off()
        ax.plot([low, high], [low, high], color="grey", linewidth=0.8)
        ax.axvline(threshold, color="red", linestyle=":", linewidth=0.9)
        ax.axhline(threshold, color="red", linestyle=":", linewidth=0.9)
        ax.set_xlabel(f"{reference} P(covid)")
        ax.set_ylabel(f"{name} P(covid)")
        ax.set_title(f"{name} vs {reference}", fontsize=9)
        ax.legend(fontsize=6, loc="upper left")
    fig.suptitle(f"probability shift (dotted: threshold {threshold:.3g})", fontsize=10)
    fig.savefig(path, dpi=110)


def plot_delta_histogram(report: dict, path: Path) -> None:
    import numpy as np
    from matplotlib.figure import Figure

    probs, _ = _series(report)
    reference = report["reference"]["variant"]
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.subplots()
    deltas = {name: probs[name] - probs[reference] for name in _compared(report)}
    extent = max(float(np.abs(d).max()) for d in deltas.values()) or 1e-6
    bins = np.linspace(-extent, extent, 41)
    for name, delta in deltas.items():
        ax.hist(delta, bins=bins, histtype="step", linewidth=1.4, label=name)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel(f"P(covid) minus the {reference} reference's")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    ax.set_title("probability shift per image", fontsize=10)
    fig.savefig(path, dpi=110)


def plot_calibration(report: dict, path: Path, bins: int = 10) -> None:
    """Reliability diagram: the share of COVID cases among images given about P."""
    import numpy as np
    from matplotlib.figure import Figure

    probs, labels = _series(report)
    edges = np.linspace(0, 1, bins + 1)
    fig = Figure(figsize=(5, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, label="perfectly calibrated")
    for name, p in probs.items():
        which = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
        filled = [b for b in range(bins) if (which == b).any()]
        ax.plot([p[which == b].mean() for b in filled], [labels[which == b].mean() for b in filled],
                marker="o", markersize=3, linewidth=1, label=name)
    ax.axvline(report["model"]["threshold"], color="red", linestyle=":", linewidth=0.9)
    ax.set_xlabel("mean predicted P(covid) in the bin")
    ax.set_ylabel("share truly covid")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title(f"calibration, {report['n_images']} images ({bins} bins)", fontsize=10)
    fig.savefig(path, dpi=110)


def draw_plots(report: dict, directory: Path, latency_report: dict | None = None) -> list[Path]:
    """PNG files; raises ImportError without matplotlib."""
    import importlib

    importlib.import_module("matplotlib")  # ImportError before any file is written

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    plot_variants(report, directory / PLOT_NAMES[0])
    written.append(directory / PLOT_NAMES[0])
    if _compared(report) and report["predictions"]:
        for name, draw in zip(PLOT_NAMES[1:], (plot_probability_shift, plot_delta_histogram,
                                               plot_calibration)):
            draw(report, directory / name)
            written.append(directory / name)
    elif report["predictions"]:
        plot_calibration(report, directory / PLOT_NAMES[3])
        written.append(directory / PLOT_NAMES[3])
    if latency_report is not None:
        from .report import draw_plots as draw_latency_plots

        written += draw_latency_plots(latency_report, directory)
    return written


# -- files -----------------------------------------------------------------------------------

def output_paths(out_dir: Path) -> list[Path]:
    return [out_dir / JSON_NAME, out_dir / MARKDOWN_NAME]


def check_writable(out_dir: Path, force: bool) -> None:
    check_latency_writable(out_dir, force, output_paths(out_dir))


def write_report(report: dict, out_dir: Path, force: bool = False,
                 latency_report: dict | None = None) -> tuple[list[Path], str | None]:
    """drift.json, drift.md and plots/*.png under `out_dir`."""
    check_writable(out_dir, force)
    plots_dir = out_dir / PLOTS_DIR
    return write_files(out_dir, JSON_NAME, MARKDOWN_NAME, report,
                       lambda: draw_plots(report, plots_dir, latency_report),
                       lambda plots, note: markdown(report, plots, note),
                       [plots_dir / name for name in PLOT_NAMES])
