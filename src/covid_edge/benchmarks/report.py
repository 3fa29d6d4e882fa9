"""Presenting a latency benchmark: a terminal table, JSON, and a Markdown report with plots.

matplotlib is optional (not in the base install): without it the report is written without
plots and says how to get them.
"""

from __future__ import annotations

import json
from pathlib import Path

from .cpu_features import summary as cpu_summary

JSON_NAME = "latency.json"
MARKDOWN_NAME = "latency.md"
PLOTS_DIR = "plots"
# The [plots] extra is matplotlib alone; naming the package works for a clone and a wheel.
PLOTS_HINT = "plots need matplotlib (the [plots] extra): pip install 'matplotlib>=3.8'"


class ReportExistsError(Exception):
    """Output files already there and --force not given."""


def target_name(result: dict) -> str:
    if result.get("target") == "edgetpu":
        return "Edge TPU"
    if result.get("format") == "onnx" or str(result.get("path", "")).lower().endswith(".onnx"):
        return "ONNX"
    return "XNNPACK" if result.get("xnnpack") else "no XNNPACK"


def _ms(value) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _mb(value) -> str:
    return "-" if value is None else f"{value:.0f}"


RESULT_COLUMNS = ("model", "runtime", "target", "threads", "load ms", "1st run ms", "p50 ms",
                  "/ int8", "p90 ms", "p99 ms", "mean ms", "std ms", "end-to-end p50 ms",
                  "peak MB")


def int8_baselines(report: dict) -> dict[int, float]:
    """Thread count -> p50 of the int8 model on the first runtime with XNNPACK (the default
    configuration): what every row's "/ int8" ratio divides by."""
    int8 = next((m["label"] for m in report.get("models", [])
                 if m.get("role") == "ours" and m.get("variant") == "int8"), None)
    baselines = {}
    for r in report["results"]:
        if (r.get("status") == "ok" and r["model"] == int8 and r.get("target") == "cpu"
                and r.get("xnnpack") and r["threads"] not in baselines):
            baselines[r["threads"]] = r["inference"]["p50_ms"]
    return baselines


def refusal_lines(report: dict) -> list[str]:
    """ONNX rows that were timed but that the runtime refuses to answer with, one line per
    export and backend."""
    threads: dict[tuple, list[str]] = {}
    for r in report["results"]:
        if r.get("status") == "ok" and r.get("refused"):
            threads.setdefault((r["model"], r["runtime"], r["refused"]), []).append(
                str(r["threads"]))
    return [f"{model} on {runtime} ({', '.join(counts)} thread(s)): timed for comparison "
            f"only, REFUSED for use ({reason})"
            for (model, runtime, reason), counts in threads.items()]


def result_rows(report: dict) -> list[list[str]]:
    rows, skips_shown = [], set()
    baselines = int8_baselines(report)
    for r in report["results"]:
        model = r["model"] + (" (refused)" if r.get("refused") else "")
        head = [model, r["runtime"], target_name(r), str(r["threads"])]
        if r.get("status") != "ok":
            # A model skipped for what it is (compiled for the Edge TPU) is said once.
            if r.get("status") == "skipped":
                if (r["model"], r.get("reason")) in skips_shown:
                    continue
                skips_shown.add((r["model"], r.get("reason")))
            rows.append(head + [f"{r.get('status', 'error')}: {r.get('reason', '')}"])
            continue
        inference = r["inference"]
        e2e = r.get("end_to_end") or {}
        baseline = baselines.get(r["threads"])
        rows.append(head + [
            _ms(r["load_ms"]), _ms(r["first_invoke_ms"]), _ms(inference["p50_ms"]),
            f"{inference['p50_ms'] / baseline:.2f}" if baseline else "-",
            _ms(inference["p90_ms"]), _ms(inference["p99_ms"]), _ms(inference["mean_ms"]),
            _ms(inference["std_ms"]), _ms(e2e.get("p50_ms")), _mb(r["memory"]["peak_rss_mb"]),
        ])
    return rows


COMPARISON_COLUMNS = ("model", "runtime", "target", "threads", "int8 p50 ms", "reference p50 ms",
                      "int8 / reference (goal <= 1.10 at 1 thread)", "float32 p50 ms",
                      "float32 / int8 (goal >= 2 at 1 thread)")


def _verdict(met) -> str:
    return {True: " ok", False: " MISSED", None: ""}[met]


def comparison_rows(report: dict) -> list[list[str]]:
    rows = []
    for c in report["comparisons"]:
        ref, f32 = c.get("reference"), c.get("float32")
        ratio = "-"
        if ref:
            ratio = f"{ref['ratio']:.2f}{_verdict(ref['met'])} (min {ref['ratio_of_min']:.2f})"
            if not ref["comparable"]:
                ratio += " (input sizes differ)"
        rows.append([
            c["model"], c["runtime"], target_name(c), str(c["threads"]), _ms(c["int8_p50_ms"]),
            _ms(ref["p50_ms"]) if ref else "-", ratio,
            _ms(f32["p50_ms"]) if f32 else "-",
            f"{f32['speedup']:.2f}{_verdict(f32['met'])} (min {f32['speedup_of_min']:.2f})"
            if f32 else "-",
        ])
    return rows


def goal_lines(report: dict) -> list[str]:
    """One line per int8 model and runtime: the goals at 1 thread, XNNPACK on."""
    lines = []
    for g in report.get("goals", []):
        where = f"{g['model']}, {g['runtime']}, {target_name(g)}, 1 thread"
        parts = []
        if g["int8_over_reference"] is not None:
            verdict = ("not comparable: input sizes differ" if not g["reference_comparable"]
                       else "met" if g["reference_goal_met"] else "MISSED")
            parts.append(f"int8/reference {g['int8_over_reference']:.2f} (<= 1.10: {verdict}"
                         f"{_of_min(g, 'int8_over_reference')})")
        if g["float32_over_int8"] is not None:
            verdict = "met" if g["float32_goal_met"] else "MISSED"
            parts.append(f"float32/int8 {g['float32_over_int8']:.2f}x (>= 2: {verdict}"
                         f"{_of_min(g, 'float32_over_int8')})")
        if g.get("lungs_over_int8") is not None:
            verdict = "met" if g["lungs_goal_met"] else "MISSED"
            parts.append(f"lungs/int8 {g['lungs_over_int8']:.2f} (<= 0.50: {verdict}"
                         f"{_of_min(g, 'lungs_over_int8')})")
        if parts:
            lines.append(f"{where}: {'; '.join(parts)}")
    return lines


def _of_min(goal: dict, key: str) -> str:
    """The same ratio of the fastest runs: the goal is judged on p50, but on a machine other
    programs share, p50s measured in separate processes drift apart and the minimums less.
    Reports written before it was recorded have none."""
    value = goal.get(f"{key}_of_min")
    return "" if value is None else f"; fastest runs {value:.2f}"


def _text_table(columns, rows) -> str:
    widths = [len(c) for c in columns]
    for row in rows:
        for i, cell in enumerate(row[:len(columns)]):
            if i < len(row) - 1 or len(row) == len(columns):
                widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    for row in rows:
        if len(row) < len(columns):  # a skipped configuration: its reason spans the rest
            cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths)] + [row[-1]]
        else:
            cells = [cell.ljust(w) for cell, w in zip(row, widths)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


# The columns the terminal shows without --wide (the table then fits 100 columns); JSON and the
# Markdown report keep every one.
NARROW_COLUMNS = ("model", "runtime", "target", "threads", "load ms", "p50 ms", "/ int8",
                  "end-to-end p50 ms", "peak MB")
NARROW_HEADERS = {"end-to-end p50 ms": "e2e p50", "threads": "thr"}
COMPARISON_SHORT = {"int8 / reference (goal <= 1.10 at 1 thread)": "int8/ref (goal <= 1.10)",
                    "float32 / int8 (goal >= 2 at 1 thread)": "f32/int8 (goal >= 2)",
                    "reference p50 ms": "ref p50", "int8 p50 ms": "int8 p50",
                    "float32 p50 ms": "f32 p50", "threads": "thr"}


def _narrow(columns, rows, keep, headers):
    """Only the columns in `keep` (a skipped row's reason, shorter, stays whole)."""
    index = [i for i, c in enumerate(columns) if c in keep]
    narrowed = []
    for row in rows:
        if len(row) < len(columns):  # head cells, then one reason spanning the rest
            narrowed.append([row[i] for i in index if i < len(row) - 1] + [row[-1]])
        else:
            narrowed.append([row[i] for i in index])
    return [headers.get(columns[i], columns[i]) for i in index], narrowed


def terminal_table(report: dict, wide: bool = False) -> str:
    from .report_format import wrap

    device = report["device"]
    settings = report["settings"]
    columns, rows = RESULT_COLUMNS, result_rows(report)
    if not wide:
        columns, rows = _narrow(columns, rows, NARROW_COLUMNS, NARROW_HEADERS)
    parts = [
        wrap(f"covid-edge bench latency on {device.get('board_model') or device.get('cpu_model')} "
             f"({device.get('usable_cores')} cores, {device.get('os')}); {settings['runs']} runs "
             f"after {settings['warmup']} warm-up, inference-only unless marked end-to-end"
             + ("" if wide else "; --wide for p99, mean, std and the first run")),
        wrap(f"CPU: {cpu_summary(device.get('cpu_features') or {})}"),
        "",
        _text_table(columns, rows),
    ]
    if report["comparisons"]:
        columns, rows = COMPARISON_COLUMNS, comparison_rows(report)
        if not wide:
            columns, rows = _narrow(columns, rows, set(columns) - {"runtime"}, COMPARISON_SHORT)
        parts += ["", "int8 against the reference and float32 (p50, inference only):", "",
                  _text_table(columns, rows)]
    parts += [wrap(f"goal: {line}") for line in goal_lines(report)]
    parts += [wrap(f"note: {line}") for line in refusal_lines(report)]
    if int8_baselines(report):
        parts.append(wrap("note: / int8 = p50 over the int8 model's p50 at the same thread "
                          "count (first runtime, XNNPACK): below 1 is faster"))
    for note in report.get("notes", []):
        parts.append(wrap(f"note: {note}"))
    for warning in report["warnings"]:
        parts.append(wrap(f"WARNING: {warning}"))
    parts += ["", report["disclaimer"]]
    return "\n".join(parts)


def _markdown_table(columns, rows) -> str:
    def cell(text):
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        row = list(row) + [""] * (len(columns) - len(row))
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    return "\n".join(lines)


def markdown(report: dict, plots: list[Path], plot_note: str | None) -> str:
    device = report["device"]
    settings = report["settings"]
    lines = [
        "# covid-edge latency benchmark",
        "",
        f"> {report['disclaimer']}",
        "",
        f"Run {report['created']} in {report['elapsed_s']} s: `{settings.get('command', '')}`",
        "",
        f"{settings['runs']} timed runs after {settings['warmup']} warm-up runs per "
        "configuration, each configuration in a fresh process. *Inference* times "
        "`interpreter.invoke()` alone; *end-to-end* times decoding, preprocessing, quantizing, "
        "inference and reading the output, cycling through "
        f"{len(settings.get('images') or [])} images. *Load* is interpreter creation plus "
        "tensor allocation; *1st run* is the first inference (XNNPACK packs weights then). "
        "*Peak MB* is the peak resident memory of the measuring process (Python and the "
        "runtime included).",
        "",
    ]
    if report["warnings"]:
        lines += ["## Warnings", ""] + [f"- **{w}**" for w in report["warnings"]] + [""]
    lines += ["## Results", "", _markdown_table(RESULT_COLUMNS, result_rows(report)), ""]
    if int8_baselines(report):
        lines += ["*/ int8*: p50 over the int8 model's p50 at the same thread count (first "
                  "runtime, XNNPACK); below 1 is faster.", ""]
    lines += [f"- {line}" for line in refusal_lines(report)]
    if refusal_lines(report):
        lines.append("")
    if report["comparisons"]:
        lines += [
            "## int8 against the reference and float32",
            "",
            "p50 inference latency, measured in the same run, configuration by configuration. "
            "Goals: our int8 model no slower than 1.10x Google's uint8 MobileNetV2 (the same "
            "backbone) at 1 thread, and at least 2x faster than our float32 model at 1 thread. "
            "The goals are judged on p50 with XNNPACK (the runtime's default); the ratio of the "
            "fastest runs (min) is shown beside it because it is less swayed by other programs "
            "on a busy machine.",
            "",
            _markdown_table(COMPARISON_COLUMNS, comparison_rows(report)),
            "",
        ]
        lines += [f"- Goal check: {line}" for line in goal_lines(report)] + [""]
    if plots or plot_note:
        lines += ["## Plots", ""]
        for p in plots:
            lines += [f"![{p.stem}]({PLOTS_DIR}/{p.name})", ""]
        if plot_note:
            lines.append(f"*{plot_note}*")
        lines.append("")
    lines += ["## Device", "", "| | |", "|---|---|"]
    for key in ("board_model", "cpu_model", "machine", "cores", "usable_cores", "os", "python",
                "covid_edge"):
        if device.get(key) is not None:
            lines.append(f"| {key.replace('_', ' ')} | {device[key]} |")
    if device.get("cpu_features"):
        lines.append(f"| CPU features | {cpu_summary(device['cpu_features'])} |")
    for name, version in device.get("packages", {}).items():
        lines.append(f"| {name} | {version} |")
    lines.append("")
    lines += ["| state | before | after |", "|---|---|---|"]
    for key in ("cpu_temperature_c", "throttling", "cpu_frequency", "load_average"):
        before, after = report["state_before"].get(key), report["state_after"].get(key)
        if before is None and after is None:
            continue
        lines.append(f"| {key.replace('_', ' ')} | {_state(before)} | {_state(after)} |")
    lines += ["", "## Models", "", "| label | file | bytes | sha256 |", "|---|---|---|---|"]
    for m in report["models"]:
        lines.append(f"| {m['label']} | `{m['path']}` | {m['bytes']} | `{m['sha256'][:16]}…` |")
    for note in report.get("notes", []):
        lines += ["", f"Note: {note}"]
    lines.append("")
    return "\n".join(lines)


def _state(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict) and "conditions" in value:
        return f"{value['raw']} ({', '.join(value['conditions']) or 'none'})"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items() if v is not None)
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def _ok(report: dict) -> list[dict]:
    return [r for r in report["results"] if r.get("status") == "ok"]


def draw_plots(report: dict, directory: Path) -> list[Path]:
    """Latency distributions per model and thread count, and thread scaling; PNG files.
    Raises ImportError without matplotlib."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    results = _ok(report)
    models = [m["label"] for m in report["models"]]
    for runtime in dict.fromkeys(r["runtime"] for r in results):
        mine = [r for r in results if r["runtime"] == runtime]
        targets = list(dict.fromkeys(target_name(r) for r in mine))
        threads = sorted({r["threads"] for r in mine})
        for kind, title in (("inference", "inference only"), ("end_to_end", "end-to-end")):
            if not any(r.get(kind) for r in mine):
                continue
            fig = Figure(figsize=(max(4.0, 3.2 * len(threads)), 3.4 * len(targets)),
                         layout="constrained")
            axes = fig.subplots(len(targets), len(threads), squeeze=False, sharey="row")
            for i, target in enumerate(targets):
                for j, count in enumerate(threads):
                    ax = axes[i][j]
                    cells = [(m, r) for m in models for r in mine
                             if r["model"] == m and target_name(r) == target
                             and r["threads"] == count and r.get(kind)]
                    if cells:
                        ax.boxplot([r[kind]["samples_ms"] for _, r in cells])
                        ax.set_xticks(range(1, len(cells) + 1), [m for m, _ in cells])
                        ax.tick_params(axis="x", labelrotation=30)
                    ax.set_title(f"{target}, {count} thread{'s' if count > 1 else ''}",
                                 fontsize=9)
                    if j == 0:
                        ax.set_ylabel("ms")
                    ax.grid(axis="y", alpha=0.3)
            fig.suptitle(f"{title} latency, {runtime}")
            path = directory / f"latency_{kind}_{runtime}.png"
            fig.savefig(path, dpi=110)
            written.append(path)
        if len(threads) > 1:
            fig = Figure(figsize=(5.5, 3.8), layout="constrained")
            ax = fig.subplots()
            for target in targets:
                for m in models:
                    points = sorted((r["threads"], r["inference"]["p50_ms"]) for r in mine
                                    if r["model"] == m and target_name(r) == target)
                    if points:
                        style = "-" if target != "no XNNPACK" else "--"
                        ax.plot(*zip(*points), style, marker="o", label=f"{m}, {target}")
            ax.set_xlabel("threads")
            ax.set_ylabel("p50 inference ms")
            ax.set_xticks(threads)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            ax.set_title(f"thread scaling, {runtime}")
            path = directory / f"threads_{runtime}.png"
            fig.savefig(path, dpi=110)
            written.append(path)
    return written


def output_paths(out_dir: Path) -> list[Path]:
    return [out_dir / JSON_NAME, out_dir / MARKDOWN_NAME]


def check_writable(out_dir: Path, force: bool, paths: list[Path] | None = None) -> None:
    """Refuse to overwrite an earlier report (checked before a long run, not after).

    `paths`: the files a report writes; by default this latency report's.
    """
    existing = [p for p in (paths or output_paths(out_dir)) if p.exists()]
    if existing and not force:
        raise ReportExistsError(
            f"{', '.join(str(p) for p in existing)} already exist: choose another --out "
            "or pass --force to overwrite")


def check_can_write(out_dir: Path) -> None:
    """Create `out_dir` and a file in it, then remove what this created: a folder that cannot
    be written (read-only, under /proc, below a file) fails before a long run, not after it,
    and a run that fails to start later leaves no empty folder behind. Raises OSError."""
    import tempfile

    missing = [folder for folder in (out_dir, *out_dir.parents) if not folder.exists()]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    finally:
        for folder in missing:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                pass  # not created after all, or something else wrote into it meanwhile


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2) + "\n"


# Latency's own plots; a drift report's plots in the same folder are left alone.
LATENCY_PLOT_PATTERNS = ("latency_*.png", "threads_*.png")


def write_files(out_dir: Path, json_name: str, markdown_name: str, report: dict, draw,
                render, stale: list[Path]) -> tuple[list[Path], str | None]:
    """One report's JSON, Markdown and plots; the files and a note if the plots could not be
    drawn. `stale` are this report's plots from an earlier run, removed first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in stale:
        old.unlink(missing_ok=True)
    note = None
    try:
        plots = draw()
    except ImportError:
        plots, note = [], PLOTS_HINT
    json_path = out_dir / json_name
    json_path.write_text(to_json(report), encoding="utf-8")
    md_path = out_dir / markdown_name
    md_path.write_text(render(plots, note), encoding="utf-8")
    return [json_path, md_path, *plots], note


def write_report(report: dict, out_dir: Path, force: bool = False) -> tuple[list[Path], str | None]:
    """latency.json, latency.md and plots/*.png under `out_dir`."""
    check_writable(out_dir, force)
    plots_dir = out_dir / PLOTS_DIR
    stale = [path for pattern in LATENCY_PLOT_PATTERNS for path in plots_dir.glob(pattern)]
    return write_files(out_dir, JSON_NAME, MARKDOWN_NAME, report,
                       lambda: draw_plots(report, plots_dir),
                       lambda plots, note: markdown(report, plots, note), stale)


class ReportFiles:
    """The files one kind of report writes under --out: its JSON, its Markdown and its plots
    (drawn from the report dict alone); refuses to overwrite an earlier one without --force."""

    def __init__(self, json_name: str, markdown_name: str, plot_names: tuple[str, ...],
                 draw_plots, render):
        self.json_name, self.markdown_name = json_name, markdown_name
        self.plot_names, self.draw_plots, self.render = plot_names, draw_plots, render

    def check_writable(self, out_dir: Path, force: bool) -> None:
        check_writable(out_dir, force, [out_dir / self.json_name, out_dir / self.markdown_name])

    def write(self, report: dict, out_dir: Path) -> tuple[list[Path], str | None]:
        plots_dir = out_dir / PLOTS_DIR
        return write_files(out_dir, self.json_name, self.markdown_name, report,
                           lambda: self.draw_plots(report, plots_dir),
                           lambda plots, note: self.render(report, plots, note),
                           [plots_dir / name for name in self.plot_names])
