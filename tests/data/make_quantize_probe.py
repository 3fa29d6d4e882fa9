"""Writes quantize_probe.tflite (3 kB): a tiny int8 model with a float32 input, so its graph
begins with TFLite's QUANTIZE kernel. tests/test_classify.py compares that kernel's output with
covid_edge.preprocess.quantize for every value a uint8 pixel can become, which is how we know
the runtime quantizes the input exactly as the device's own kernel would.

    python tests/data/make_quantize_probe.py      (needs the [train] extra: TensorFlow)
"""

from pathlib import Path

import numpy as np
import tensorflow as tf

from covid_edge.preprocess import PreprocessSpec, to_model_input

SHAPE = (16, 16, 3)  # 768 values: room for all 256 pixel values


def main() -> None:
    inputs = tf.keras.Input(SHAPE)
    x = tf.keras.layers.Conv2D(2, 1)(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1, activation="sigmoid")(x))
    spec = PreprocessSpec(height=SHAPE[0], width=SHAPE[1], channels=SHAPE[2])
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(16):
            pixels = rng.integers(0, 256, SHAPE[:2], dtype=np.uint8)
            pixels[0, 0], pixels[0, 1] = 0, 255  # the calibrated range is the real [-1, 1]
            yield [to_model_input(pixels, spec)[np.newaxis]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    # Input and output stay float32, so the converter puts a QUANTIZE op first.
    out = Path(__file__).with_name("quantize_probe.tflite")
    out.write_bytes(converter.convert())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
