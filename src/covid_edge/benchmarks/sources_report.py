"""Presenting `bench sources`: a terminal table, JSON, and a Markdown report with plots.

matplotlib is optional (not in the base install): without it the report is written without
plots and says how to get them (report.write_files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .report import PLOTS_DIR, ReportFiles
from .report_format import auc, markdown_table, pct, text_table, wrap
from .sources import POOLED, reference_negative

JSON_NAME = "sources.json"
MARKDOWN_NAME = "sources.md"
PLOT_NAMES = ("sources_called_positive.png", "sources_auc.png", "sources_probability.png")


def _source_rows(report: dict, mode: str, accuracy: bool = True) -> list[list[str]]:
    refused = _refused_by_source(report)
    rows = []
    for entry in report["sources"]:
        if entry["mode"] != mode or entry["n"] == 0:
            continue
        roc = entry["roc_auc"]
        cell = auc(roc)
        if roc["auc"] is None and entry["roc_auc_against_pooled_positives"]:
            cell = auc(entry["roc_auc_against_pooled_positives"]) + " *"
        row = [entry["source"], str(entry["n"]),
               str(refused.get(entry["source"], 0)) if mode == "guard_on" else "-",
               pct(entry["accuracy"]), pct(entry["sensitivity"]), pct(entry["specificity"]), cell]
        rows.append(row if accuracy else row[:3] + row[4:])
    return rows


def _refused_by_source(report: dict) -> dict[str, int]:
    refused: dict[str, int] = {}
    for group in report["groups"]:
        if group["known_class"]:
            refused[group["source"]] = refused.get(group["source"], 0) + group["refused"]["k"]
    refused[POOLED] = sum(refused.values())
    return refused


def _others(report: dict) -> list[str]:
    """The classes besides the positive one that get a "called" column: none for a two-class
    model (called the other = 100% - called positive - refused), each one with more."""
    positive = report["model"]["positive_label"]
    labels = report["model"]["labels"]
    return [c for c in labels if c != positive] if len(labels) > 2 else []


def _group_rows(report: dict, guard_off: bool = True, digits: int | None = 1
                ) -> list[list[str]]:
    """digits None: the other classes' rates without intervals (the terminal table)."""
    positive = report["model"]["positive_label"]
    others = _others(report)
    # A model with more classes has more columns: in the terminal (digits None) its rates go
    # without intervals, so that the table keeps to 100 columns (the report has them all).
    short = digits is None and bool(others)
    rows = []
    for g in report["groups"]:
        row = [g["source"], g["label"], str(g["n"]), _rate(g["refused"], short),
               _rate(g["guard_on"]["called"][positive], short)]
        if guard_off:
            row.append(pct(g["guard_off"]["called"][positive]))
        for other in others:
            row.append(_rate(g["guard_on"]["called"][other], digits is None))
        rows.append(row + [auc(g.get("roc_auc_against_source_negatives"))])
    return rows


def _rate(entry: dict, short: bool) -> str:
    if not short:
        return pct(entry)
    return "-" if entry.get("rate") is None else f"{100 * entry['rate']:.1f}%"


def _columns(report: dict) -> tuple[tuple, tuple]:
    positive = report["model"]["positive_label"]
    source_columns = ("source", "n", "refused", "accuracy", "sensitivity", "specificity",
                      "ROC AUC")
    negative = reference_negative(report["model"]["labels"], positive)
    group_columns = ("source", "label", "n", "refused by guard", f"called {positive}",
                     f"called {positive}, guard off",
                     *(f"called {other}" for other in _others(report)),
                     f"AUC vs {negative}")
    return source_columns, group_columns


def _header(report: dict) -> list[str]:
    model = report["model"]
    guard = "on" if model["guard"]["enabled"] else "off (--no-guard)"
    return [f"{model['name']} {model['version']} ({model['variant']}), "
            f"{report['runtime']}; threshold {model['calibration']['threshold']:.3f} on "
            f"P({model['positive_label']}); guard {guard}",
            f"{report['selection']['images']} images in {report['elapsed_s']} s; "
            "95% intervals: Wilson for rates, DeLong for ROC AUC"]


def _auc_note(report: dict) -> str:
    positive = report["model"]["positive_label"]
    return (f"* no {positive} image in this source: AUC of the pooled {positive} images "
            "against its images (not a within-source AUC)")


def _group_auc_note(report: dict) -> str:
    positive = report["model"]["positive_label"]
    negative = reference_negative(report["model"]["labels"], positive)
    labels = report["model"]["labels"]
    if len(labels) == 2:
        return (f"AUC vs {negative}: within the same source, ROC AUC of P({positive}) for this "
                f"label against the source's {negative} images (guard off): the hospital is "
                "the same on both sides, so only the finding can separate them.")
    return (f"AUC vs {negative}: within the same source, ROC AUC of this label against the "
            f"source's {negative} images (guard off), scored by P(label) for the model's "
            f"classes and by 1 - P({negative}) for other labels: the hospital is the same on "
            "both sides, so only the finding can separate them.")


def _called_what(report: dict) -> str:
    """"covid" for a two-class model; "covid, normal or pneumonia" (guard on) with more."""
    positive = report["model"]["positive_label"]
    others = _others(report)
    if not others:
        return positive
    return f"{', '.join([positive] + others[:-1])} or {others[-1]} (guard on)"


def _terminal_group_columns(report: dict, group_columns: tuple) -> tuple:
    """The terminal's columns (guard on only). With more than two classes the headers are the
    bare class names under the line that says "how often it is called": 100 columns."""
    columns = group_columns[:5] + group_columns[6:]
    if not _others(report):
        return columns
    return (*columns[:3], "refused",
            *(name.removeprefix("called ") for name in columns[4:-1]), columns[-1])


def terminal_table(report: dict) -> str:
    source_columns, group_columns = _columns(report)
    parts = _header(report) + [
        "", "Per source, images of the model's classes (guard on: refused images have no "
        "verdict):", "",
        # Accuracy is left to the report: the terminal table fits 100 columns.
        text_table(source_columns[:3] + source_columns[4:],
                   _source_rows(report, "guard_on", accuracy=False), right=(1, 2)),
        wrap(_auc_note(report)), "",
        "Every label, how often it is called " + _called_what(report) + ":", "",
        text_table(_terminal_group_columns(report, group_columns),
                   _group_rows(report, guard_off=False, digits=None), right=(2,)),
        wrap(_group_auc_note(report)),
    ]
    parts += [wrap(f"note: {note}") for note in report["selection"]["notes"]]
    if report["unreadable"]:
        parts.append(wrap(f"error: {len(report['unreadable'])} image(s) could not be read "
                          f"(first: {report['unreadable'][0]['path']}: "
                          f"{report['unreadable'][0]['error']})"))
    parts += ["", wrap(report["disclaimer"])]
    return "\n".join(parts)


def markdown(report: dict, plots: list[Path], plot_note: str | None) -> str:
    source_columns, group_columns = _columns(report)
    device = report["device"]
    lines = [
        "# Per-source results", "",
        *(f"{line}  " for line in _header(report)),
        f"Host: {device.get('board_model') or device.get('cpu_model')}, "
        f"{device.get('usable_cores')} cores, {device.get('os')}.  ",
        f"Command: `{report['command']}`", "",
        "## Per source, guard on", "",
        "Images whose label is one of the model's classes. Refused images (the guard says "
        "the image is not what the model was trained on) have no verdict and are left out.", "",
        markdown_table(source_columns, _source_rows(report, "guard_on")), "",
        _auc_note(report), "",
        "## Per source, guard off (the model alone, every image)", "",
        markdown_table(source_columns, _source_rows(report, "guard_off")), "",
        f"## Every label: how often it is called {_called_what(report)}", "",
        markdown_table(group_columns, _group_rows(report)), "",
        _group_auc_note(report), "",
    ]
    if report["selection"]["notes"]:
        lines += ["## Which images", ""] + [f"- {note}" for note in
                                            report["selection"]["notes"]] + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({PLOTS_DIR}/{p.name})" for p in plots] + [""]
    if plot_note:
        lines += [f"Plots: {plot_note}", ""]
    if report["unreadable"]:
        lines += ["## Unreadable images", ""] + [f"- `{u['path']}` ({u['source']}): {u['error']}"
                                                 for u in report["unreadable"]] + [""]
    lines += [f"*{report['disclaimer']}*", ""]
    return "\n".join(lines)


# -- plots ---------------------------------------------------------------------------------

def _pyplot():
    from ..plots import _pyplot as pyplot

    return pyplot()


def plot_called_positive(report: dict, path: Path) -> None:
    plt = _pyplot()
    positive = report["model"]["positive_label"]
    groups = report["groups"]
    names = [f"{g['source']} / {g['label']}" for g in groups]
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(groups) + 1.4))
    y = np.arange(len(groups))[::-1]
    for offset, mode, colour in ((0.17, "guard_on", "tab:blue"), (-0.17, "guard_off", "tab:grey")):
        entries = [g[mode]["called"][positive] for g in groups]
        values = np.array([100 * (e["rate"] or 0) for e in entries])
        errors = np.array([[100 * ((e["rate"] or 0) - (e["low"] or 0)) for e in entries],
                           [100 * ((e["high"] or 0) - (e["rate"] or 0)) for e in entries]])
        ax.barh(y + offset, values, height=0.32, xerr=errors, color=colour, capsize=2,
                label=mode.replace("_", " "))
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel(f"called {positive} (%), 95% Wilson interval")
    ax.set_xlim(0, 100)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"How often each source and label is called {positive}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_auc(report: dict, path: Path) -> None:
    plt = _pyplot()
    entries = [e for e in report["sources"] if e["mode"] == "guard_off" and e["n"]]
    rows = []
    for e in entries:
        roc = e["roc_auc"] if e["roc_auc"]["auc"] is not None else \
            e["roc_auc_against_pooled_positives"]
        if roc and roc["auc"] is not None:
            within = e["roc_auc"]["auc"] is not None
            rows.append((e["source"] + ("" if within else " *"), roc))
    fig, ax = plt.subplots(figsize=(7, 0.4 * max(len(rows), 1) + 1.4))
    y = np.arange(len(rows))[::-1]
    for yi, (name, roc) in zip(y, rows):
        ax.errorbar(roc["auc"], yi, xerr=[[roc["auc"] - roc["low"]], [roc["high"] - roc["auc"]]],
                    fmt="o", color="tab:blue", capsize=3)
    ax.set_yticks(y, [name for name, _ in rows], fontsize=8)
    ax.axvline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlim(min([0.45] + [roc["low"] - 0.02 for _, roc in rows]), 1.0)
    ax.set_xlabel("ROC AUC (guard off), 95% DeLong interval; * against the pooled positives")
    ax.set_title("ROC AUC by source", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_probability(report: dict, path: Path) -> None:
    plt = _pyplot()
    positive = report["model"]["positive_label"]
    keys = list(dict.fromkeys((p["source"], p["label"]) for p in report["predictions"]))
    data = [[p["probability"] for p in report["predictions"]
             if (p["source"], p["label"]) == key and p["probability"] is not None]
            for key in keys]
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(keys) + 1.4))
    try:
        ax.boxplot(data[::-1], orientation="horizontal", widths=0.6,
                   flierprops={"markersize": 2})
    except TypeError:  # matplotlib < 3.10
        ax.boxplot(data[::-1], vert=False, widths=0.6, flierprops={"markersize": 2})
    ax.set_yticks(np.arange(1, len(keys) + 1), [f"{s} / {label}" for s, label in keys][::-1],
                  fontsize=8)
    ax.axvline(report["model"]["calibration"]["threshold"], color="tab:red", linewidth=1,
               label="threshold")
    ax.set_xlabel(f"P({positive}), calibrated, guard off")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(f"P({positive}) by source and label", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_plots(report: dict, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    drawn = []
    for name, draw in zip(PLOT_NAMES, (plot_called_positive, plot_auc, plot_probability)):
        draw(report, directory / name)
        drawn.append(directory / name)
    return drawn


FILES = ReportFiles(JSON_NAME, MARKDOWN_NAME, PLOT_NAMES, draw_plots, markdown)
check_writable = FILES.check_writable
write_report = FILES.write
