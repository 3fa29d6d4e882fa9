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


@click.group(cls=LazyGroup, lazy_commands=BENCHMARKS, epilog=DISCLAIMER)
def bench():
    """Benchmarks for the device this runs on.

    \b
      covid-edge bench latency   speed, load time and memory of the .tflite models
      covid-edge bench drift     accuracy of every variant on labelled X-rays, int8 vs float
      covid-edge bench check     does this device reproduce the model card's reference outputs
      covid-edge bench sources   figures per hospital / collection, with 95% intervals
      covid-edge bench shift     verdict flips under re-encoding, exports, camera capture, ...
    """
