"""Presenting `bench shift`: a terminal table, JSON, and a Markdown report with plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .report import PLOTS_DIR, ReportFiles
from .report_format import auc, markdown_table, pct, text_table, wrap
from .shift import DELTA_BINS

JSON_NAME = "shift.json"
MARKDOWN_NAME = "shift.md"
PLOT_NAMES = ("shift_flips.png", "shift_delta_p.png")
COLUMNS = ("perturbation", "n", "verdict flips", "to/from +", "mean|dp|", "max|dp|",
           "d accuracy", "d AUC", "refused")


def _signed(value, scale: float = 100.0, digits: int = 1, suffix: str = "") -> str:
    return "-" if value is None else f"{scale * value:+.{digits}f}{suffix}"


def _several(report: dict) -> bool:
    return len(report["model"]["labels"]) > 2


def columns(report: dict) -> tuple[str, ...]:
    """With more than two classes, a column for the flips between the other classes
    (neither to nor from the positive one)."""
    if not _several(report):
        return COLUMNS
    return COLUMNS[:4] + ("between others",) + COLUMNS[4:]


def rows(report: dict) -> list[list[str]]:
    out = []
    for row in report["perturbations"]:
        change = row["metric_change"]
        between = []
        if _several(report):
            between = [str(row["flips"]["k"] - row["flips_to_positive"]
                           - row["flips_from_positive"])]
        out.append([
            row["name"], str(row["n"]), pct(row["flips"]),
            f"{row['flips_to_positive']}/{row['flips_from_positive']}", *between,
            "-" if row["mean_abs_delta_p"] is None else f"{row['mean_abs_delta_p']:.3f}",
            "-" if row["max_abs_delta_p"] is None else f"{row['max_abs_delta_p']:.2f}",
            _signed(change.get("accuracy"), suffix=" pt"),
            _signed(change.get("roc_auc"), scale=1.0, digits=3),
            str(row["guard_refused_new"]["k"]),
        ])
    return out


def _header(report: dict) -> list[str]:
    model, base = report["model"], report["baseline"]
    positive = model["positive_label"]
    return [
        f"{model['name']} {model['version']} ({model['variant']}), {report['runtime']}; "
        f"threshold {model['calibration']['threshold']:.3f} on P({positive}), calibrated",
        f"{base['n']} images ({base['n_labelled']} with a label of the model's classes), "
        f"{len(report['perturbations'])} perturbations, seed {report['seed']}, "
        f"{report['elapsed_s']} s",
        f"unperturbed: accuracy {pct(base['accuracy'])}, sensitivity {pct(base['sensitivity'])},",
        f"  specificity {pct(base['specificity'])}, ROC AUC {auc(base['roc_auc'])}; the guard "
        f"refuses {base['guard_refused']['k']}",
    ]


LEGEND = ("verdict flips: copies whose verdict differs from the unperturbed image's (95% "
          "Wilson interval), the model alone; to/from +: flips to and from the positive class; "
          "|dp|: change of the calibrated probability; d accuracy, d AUC: against the truth, "
          "same images; refused: copies the guard refuses that it accepted unperturbed.")


def _legend(report: dict) -> str:
    if not _several(report):
        return LEGEND
    return LEGEND.replace("flips to and from the positive class;",
                          "flips to and from the positive class; between others: flips from "
                          "one other class to another (e.g. pneumonia -> normal);")


def terminal_table(report: dict) -> str:
    parts = _header(report) + ["", text_table(columns(report), rows(report), right=(1,)), "",
                               wrap(_legend(report))]
    parts += [wrap(f"note: {note}") for note in report["selection"]["notes"] + report["notes"]]
    if report["unreadable"]:
        parts.append(f"error: {len(report['unreadable'])} image(s) could not be read")
    parts += ["", wrap(report["disclaimer"])]
    return "\n".join(parts)


def markdown(report: dict, plots: list[Path], plot_note: str | None) -> str:
    device = report["device"]
    lines = ["# Shift suite", "", *(f"{line}  " for line in _header(report)),
             f"Host: {device.get('board_model') or device.get('cpu_model')}, "
             f"{device.get('usable_cores')} cores, {device.get('os')}.  ",
             f"Command: `{report['command']}`", "",
             markdown_table(columns(report), rows(report)), "", _legend(report), "",
             "## The perturbations", "",
             markdown_table(("perturbation", "group", "what it does"),
                            [[r["name"], r["group"], r["description"]]
                             for r in report["perturbations"]]), ""]
    notes = report["selection"]["notes"] + report["notes"]
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({PLOTS_DIR}/{p.name})" for p in plots] + [""]
    if plot_note:
        lines += [f"Plots: {plot_note}", ""]
    worst = max(report["perturbations"], key=lambda r: r["flips"]["k"], default=None)
    if worst and worst["flipped_images"]:
        lines += [f"## Flipped by {worst['name']} (the most flips), first 20", ""]
        lines += [f"- `{f['path']}` ({f['label']}): {f['probability']:.3f} -> "
                  f"{f['perturbed_probability']:.3f}"
                  + (f", {f['verdict']} -> {f['perturbed_verdict']}"
                     if _several(report) and f.get("verdict") else "")
                  for f in worst["flipped_images"][:20]]
        lines += [""]
    lines += [f"*{report['disclaimer']}*", ""]
    return "\n".join(lines)


def plot_flips(report: dict, path: Path) -> None:
    from ..plots import _pyplot

    plt = _pyplot()
    perturbations = report["perturbations"]
    y = np.arange(len(perturbations))[::-1]
    rates = np.array([100 * (r["flips"]["rate"] or 0) for r in perturbations])
    errors = np.array([[100 * ((r["flips"]["rate"] or 0) - (r["flips"]["low"] or 0))
                        for r in perturbations],
                       [100 * ((r["flips"]["high"] or 0) - (r["flips"]["rate"] or 0))
                        for r in perturbations]])
    fig, ax = plt.subplots(figsize=(7.5, 0.3 * len(perturbations) + 1.4))
    ax.barh(y, rates, xerr=errors, color="tab:orange", capsize=2)
    ax.set_yticks(y, [r["name"] for r in perturbations], fontsize=8)
    ax.set_xlabel("verdict flips against the unperturbed image (%), 95% Wilson interval")
    ax.set_title("Verdict flips per perturbation", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_delta_p(report: dict, path: Path) -> None:
    """Percentile bands of the signed change of P per perturbation (from the JSON's
    percentiles: 1-99, 5-95, 25-75, median)."""
    from ..plots import _pyplot

    plt = _pyplot()
    perturbations = report["perturbations"]
    y = np.arange(len(perturbations))[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.3 * len(perturbations) + 1.4))
    for yi, row in zip(y, perturbations):
        q = row["delta_p_percentiles"]
        if not q:
            continue
        ax.plot([q["1"], q["99"]], [yi, yi], color="tab:blue", linewidth=1)
        ax.plot([q["5"], q["95"]], [yi, yi], color="tab:blue", linewidth=3)
        ax.plot([q["25"], q["75"]], [yi, yi], color="tab:blue", linewidth=6)
        ax.plot(q["50"], yi, "|", color="black", markersize=8)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_yticks(y, [r["name"] for r in perturbations], fontsize=8)
    ax.set_xlim(DELTA_BINS[0], DELTA_BINS[-1])
    ax.set_xlabel(f"change of P({report['model']['positive_label']}) (calibrated): "
                  "percentiles 1-99, 5-95, 25-75, median")
    ax.set_title("How far the probability moves", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_plots(report: dict, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    for name, draw in zip(PLOT_NAMES, (plot_flips, plot_delta_p)):
        draw(report, directory / name)
    return [directory / name for name in PLOT_NAMES]


FILES = ReportFiles(JSON_NAME, MARKDOWN_NAME, PLOT_NAMES, draw_plots, markdown)
check_writable = FILES.check_writable
write_report = FILES.write
