"""Coral Edge TPU support that needs neither TensorFlow nor the Edge TPU compiler: a static
compatibility check of a .tflite file (`covid-edge check-edgetpu`)."""
