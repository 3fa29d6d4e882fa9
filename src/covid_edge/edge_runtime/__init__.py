"""TensorFlow-free inference: what runs on the Raspberry Pi or Coral kiosk.

Nothing in this package may import TensorFlow (tests enforce it).
"""
