"""`covid-edge bench`: a group whose sub-commands live in their own modules.

This module stays light (click only) so that `covid-edge bench --help` is instant and one
benchmark's imports never slow down another. To add a benchmark, add a line to BENCHMARKS.
"""

from __future__ import annotations

import click

from .. import DISCLAIMER
from ..lazy_group import LazyGroup

# name -> "module:attribute" of a click.Command
BENCHMARKS = {
    "latency": "covid_edge.benchmarks.latency_cli:latency",
    "drift": "covid_edge.benchmarks.drift_cli:drift",
    "check": "covid_edge.benchmarks.check_cli:check",
    "sources": "covid_edge.benchmarks.sources_cli:sources",
    "shift": "covid_edge.benchmarks.shift_cli:shift",
}


SUMMARIES = {
    "check": "Does this device reproduce the model card's reference outputs?",
    "latency": "Speed, load time and memory of the .tflite models, per thread count.",
    "drift": "Accuracy of every variant on labelled X-rays; int8 against float.",
    "sources": "Figures per hospital or collection, with 95% intervals, guard on and off.",
    "shift": "Verdict flips when the same X-ray is re-encoded, exported or photographed.",
}


@click.group(cls=LazyGroup, lazy_commands=BENCHMARKS, summaries=SUMMARIES, epilog=DISCLAIMER)
def bench():
    """Benchmarks for the device this runs on: tables on the terminal, --json for machines,
    --out DIR for a Markdown report with plots. None needs TensorFlow."""
