"""Training and quantization: the part of covid-edge that needs TensorFlow (`pip install
'.[train]'` in a clone). Nothing on the device imports this package."""
