"""Benchmarks for the device: `covid-edge bench latency` (and siblings such as `bench drift`).

Measurement code here must run on the base install (the edge runtime only): TensorFlow is
imported only when a user asks for the tensorflow runtime, matplotlib only to draw plots.
"""
