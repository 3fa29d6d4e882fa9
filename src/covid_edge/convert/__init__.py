"""Training and quantization: the part of covid-edge that needs TensorFlow (`pip install
covid-edge[train]`). Nothing on the device imports this package."""
