"""A small U-Net that finds the lung fields: one grey channel in, one lung probability per
pixel out.

Only standard Keras layers (Conv2D, SeparableConv2D, BatchNormalization, ReLU, MaxPooling2D, UpSampling2D,
Concatenate), so that a model trained on any Keras backend (JAX on a GPU machine) loads on
TensorFlow for conversion, and every op has an int8 TFLite kernel. BatchNormalization folds
into the convolutions at conversion.
"""

from __future__ import annotations

import keras

from ..preprocess import PreprocessSpec

INPUT_NAME = "xray"
OUTPUT_NAME = "lung_probability"


def _block(x, filters: int, name: str, convs: int = 2, separable: bool = False):
    for i in range(1, convs + 1):
        # Depthwise-separable where the input has channels to spare: about 8x fewer
        # multiply-adds for the same receptive field (MobileNet's trade).
        if separable and x.shape[-1] >= 8:
            x = keras.layers.SeparableConv2D(filters, 3, padding="same", use_bias=False,
                                             name=f"{name}_conv{i}")(x)
        else:
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                    name=f"{name}_conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = keras.layers.ReLU(name=f"{name}_relu{i}")(x)
    return x


def build(spec: PreprocessSpec, base_filters: int = 8, depth: int = 4, decoder_convs: int = 1,
          separable: bool = True, outputs: int = 1) -> keras.Model:
    """U-Net: `depth` 2x downsamplings, filters doubling from `base_filters`; `decoder_convs`
    convolutions per decoder level (one keeps the full-resolution levels cheap); `outputs`
    sigmoid channels (one per mask convention with --convention-heads; channel 0 is read)."""
    if spec.height % (2 ** depth) or spec.width % (2 ** depth):
        raise ValueError(f"input {spec.height}x{spec.width} must be divisible by {2 ** depth}")
    inputs = keras.Input(spec.input_shape, name=INPUT_NAME)
    x, skips = inputs, []
    for level in range(depth):
        x = _block(x, base_filters * 2 ** level, f"down{level}", separable=separable)
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = _block(x, base_filters * 2 ** depth, "bottom", separable=separable)
    for level in reversed(range(depth)):
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"up{level}")(x)
        x = keras.layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = _block(x, base_filters * 2 ** level, f"dec{level}", decoder_convs, separable)
    probabilities = keras.layers.Conv2D(outputs, 1, activation="sigmoid", name=OUTPUT_NAME)(x)
    return keras.Model(inputs, probabilities, name="covid_edge_lungs_unet")


def runtime_model(model: keras.Model) -> keras.Model:
    """The model as the device runs it: output channel 0 only. With one output per mask
    convention (--convention-heads) the other channels only served training; dropping their
    filters from the last 1x1 convolution leaves channel 0's values exactly as they were."""
    head = model.get_layer(OUTPUT_NAME)
    if head.filters == 1:
        return model
    kernel, bias = head.get_weights()
    single = keras.layers.Conv2D(1, 1, activation="sigmoid", name=OUTPUT_NAME)
    outputs = single(head.input)
    single.set_weights([kernel[..., :1], bias[:1]])
    return keras.Model(model.inputs, outputs, name=model.name)
