"""Cells shared by the per-source and shift reports: rates with their intervals, AUCs, and
plain-text / Markdown tables that fit 100 columns."""

from __future__ import annotations

import textwrap

WIDTH = 100


def pct(entry: dict | None, digits: int = 1) -> str:
    """A rate dict (intervals.rate) as "61.0% (54.6-67.0)"; "-" when there is no denominator."""
    if not entry or entry.get("rate") is None:
        return "-"
    return (f"{100 * entry['rate']:.{digits}f}% ({100 * entry['low']:.{digits}f}-"
            f"{100 * entry['high']:.{digits}f})")


def auc(entry: dict | None) -> str:
    """A delong_auc dict as "0.998 (0.997-0.999)"."""
    if not entry or entry.get("auc") is None:
        return "-"
    return f"{entry['auc']:.3f} ({entry['low']:.3f}-{entry['high']:.3f})"


def text_table(columns, rows, right=()) -> str:
    """Columns padded to their widest cell; indices in `right` are right-aligned (numbers)."""
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(columns)]

    def line(cells):
        return "  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(columns)] + [line(row) for row in rows])


def markdown_table(columns, rows) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
              for row in rows]
    return "\n".join(lines)


def wrap(text: str) -> str:
    """A note or legend folded to the terminal width, continuation lines indented."""
    return textwrap.fill(text, WIDTH, subsequent_indent="  ", break_on_hyphens=False)
