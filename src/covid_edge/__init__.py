"""covid-edge: a chest X-ray COVID-19 screening classifier, from Keras training to an int8
TFLite model on a Raspberry Pi or Coral kiosk.

Research and education software, not a medical device.
"""

__version__ = "0.2.0"

DISCLAIMER = (
    "Research and education software, not a medical device: "
    "do not use it to diagnose, treat or triage anyone."
)
