"""The `covid-edge` command. Sub-commands are imported only when run, so that `classify`
starts fast and never pulls TensorFlow in through a sibling command."""

from __future__ import annotations

import click

from . import DISCLAIMER, __version__
from .lazy_group import LazyGroup

# name -> "module:attribute" of a click.Command; one verb per job.
COMMANDS = {
    "train": "covid_edge.convert.train_cli:train",
    "convert": "covid_edge.convert.convert_cli:convert",
    "classify": "covid_edge.edge_runtime.classify_cli:classify",
    "info": "covid_edge.edge_runtime.info_cli:info",
    "explain": "covid_edge.edge_runtime.explain_cli:explain",
    "bench": "covid_edge.benchmarks.cli:bench",
    "check-edgetpu": "covid_edge.edgetpu.check_cli:check_edgetpu",
    "serve": "covid_edge.kiosk.serve_cli:serve",
    "kiosk": "covid_edge.kiosk.kiosk_cli:kiosk",
}


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, epilog=DISCLAIMER)
@click.version_option(__version__, prog_name="covid-edge")
def main():
    """covid-edge: train, quantize, run and benchmark a chest X-ray COVID-19 classifier
    on edge devices (Raspberry Pi, Coral Edge TPU).

    \b
    Pipeline:
      covid-edge train DATA_DIR --out RUN_DIR      train MobileNetV2 (needs the [train] extra)
      covid-edge convert RUN_DIR/model.keras --out DIR   float/int8 TFLite + model card
      covid-edge classify IMAGE...                 run the int8 model, no TensorFlow
      covid-edge bench latency|drift|check         benchmarks for the device
      covid-edge serve                             upload page, kiosk page, JSON API
      covid-edge kiosk --source picamera2          camera frames -> verdicts, live page
    """


if __name__ == "__main__":
    main()
