"""Coral Edge TPU support that needs neither TensorFlow nor the Edge TPU compiler: a static
compatibility check of a .tflite file (`covid-edge check-edgetpu`), what a compiled file says
about itself (package.py), and the compile step of `covid-edge convert --edgetpu` (compile.py).
Loading the Edge TPU at run time is covid_edge.edge_runtime.devices."""
