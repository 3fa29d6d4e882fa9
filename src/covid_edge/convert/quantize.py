"""Keras model -> float32, float16, dynamic-range and full-integer int8 TFLite.

Batch size is fixed at 1 so every tensor shape is static: the Edge TPU compiler requires it,
and it spares the runtime a resize on every call.

Every file has two outputs: the probabilities ([1, 1] for a sigmoid head, [1, N] for a
softmax one) and the pooled penultimate features [1, 1280] that the out-of-distribution guard measures (edge_runtime/guard.py). The runtime tells
them apart by shape: the converter does not promise to keep their order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np

VARIANTS = ("float32", "float16", "dynamic", "int8")
VARIANT_DESCRIPTIONS = {
    "float32": "float32 weights and activations (the reference)",
    "float16": "float16 weights, float32 compute",
    "dynamic": "int8 weights, float activations (dynamic-range quantization)",
    "int8": "full-integer: int8 weights, activations, input and output",
}


FEATURES_LAYER = "pool"  # GlobalAveragePooling2D: the features the head sees (before dropout)


def variant_filename(variant: str) -> str:
    return f"covid-edge-{variant}.tflite"


def with_features(model):
    """The trained model with a second output: its pooled penultimate features."""
    import keras

    return keras.Model(model.inputs, [model.outputs[0], model.get_layer(FEATURES_LAYER).output],
                       name=f"{model.name}_with_features")


def op_names(interpreter) -> list[str]:
    """The kinds of op in the interpreter's model, sorted: what a model card lists."""
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def export_saved_model(model, directory: Path) -> Path:
    """Freeze the Keras model into a SavedModel with a [1, H, W, C] signature.

    Converting a tf.function over a Keras 3 model directly leaves its variables as
    READ_VARIABLE ops, which int8 calibration cannot run; the SavedModel export freezes them.
    """
    import tensorflow as tf

    input_shape = (1, *model.input_shape[1:])
    model.export(str(directory), format="tf_saved_model", verbose=False,
                 input_signature=[tf.TensorSpec(input_shape, tf.float32, name="xray")])
    return directory


def convert_variant(saved_model: Path, variant: str,
                    representative: Callable[[], Iterable] | None) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        if representative is None:
            raise ValueError("int8 conversion needs representative images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        # Integer-only: conversion fails rather than silently leaving float ops behind.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif variant != "float32":
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return converter.convert()


def representative_images(paths: list[Path], spec) -> Callable[[], Iterable]:
    """The calibration set, through the same preprocessing the device runs."""
    from ..preprocess import preprocess_file

    def generate():
        for path in paths:
            yield [preprocess_file(path, spec)[np.newaxis]]

    return generate


def check_loadable(path: Path, variant: str, scheme=None) -> dict:
    """Load the file back in the edge runtime and check its interface.

    For int8 every tensor must be integer: a single float tensor would mean a float kernel
    (or a QUANTIZE/DEQUANTIZE pair) on the device, and an Edge TPU could not take the graph.
    """
    from ..edge_runtime.interpreter import select_runtime

    runtime = select_runtime()
    # Without XNNPACK the op list shows the model's own ops rather than DELEGATE nodes.
    interpreter = runtime.interpreter(str(path), num_threads=1, xnnpack=False)
    interpreter.allocate_tensors()
    from ..classes import ClassScheme
    from ..edge_runtime.classifier import split_outputs

    scheme = scheme or ClassScheme(("normal", "covid"), "covid")
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1:
        raise ValueError(f"{path.name}: expected one input, got {len(inputs)}")
    try:
        probability_output, features_output = split_outputs(outputs, scheme)
    except ValueError as exc:
        raise ValueError(f"{path.name}: {exc}") from None
    probability = [probability_output]
    features = [features_output] if features_output is not None else []
    shape = [int(v) for v in inputs[0]["shape"]]
    if shape[0] != 1 or any(v < 0 for v in inputs[0].get("shape_signature", shape)):
        raise ValueError(f"{path.name}: input shape {shape} is not static with batch 1")
    ops = op_names(interpreter)
    leftover_variables = {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"} & set(ops)
    if leftover_variables:
        raise ValueError(f"{path.name}: weights were left as variables "
                         f"({', '.join(sorted(leftover_variables))}), not frozen into the file")
    interpreter.set_tensor(inputs[0]["index"], np.zeros(shape, dtype=inputs[0]["dtype"]))
    interpreter.invoke()
    for output in outputs:
        if not np.all(np.isfinite(interpreter.get_tensor(output["index"]).astype(np.float64))):
            raise ValueError(f"{path.name}: gives a non-finite output on a blank image")
    float_tensors = []
    if variant == "int8":
        float_tensors = [t["name"] for t in interpreter.get_tensor_details()
                         if np.dtype(t["dtype"]).kind == "f"]
        if float_tensors:
            raise ValueError(f"{path.name}: not integer-only; float tensors: {float_tensors[:5]}")
    return {
        "runtime": runtime.label,
        "input_shape": shape,
        "input_dtype": np.dtype(inputs[0]["dtype"]).name,
        "output_dtype": np.dtype(probability[0]["dtype"]).name,
        "input_quantization": _quantization(inputs[0]),
        "output_quantization": _quantization(probability[0]),
        "features_output": None if not features else {
            "shape": [int(v) for v in features[0]["shape"]],
            "dtype": np.dtype(features[0]["dtype"]).name,
            "quantization": _quantization(features[0])},
        "ops": ops,
        "integer_only": variant == "int8" and not float_tensors,
    }


def input_is_lossless(spec, quantization: dict | None, dtype: str) -> bool:
    """True when every 8-bit grey level keeps its own integer input value.

    Calibration sets the input's scale and zero point from the ranges it saw; only when
    they line up with the preprocessing does quantizing the input lose nothing.
    """
    from ..preprocess import quantize, to_model_input

    if quantization is None:
        return True  # a float input takes the preprocessed values as they are
    levels = to_model_input(np.arange(256, dtype=np.uint8), spec)[..., 0]
    quantized = quantize(levels, quantization["scale"], quantization["zero_point"],
                         np.dtype(dtype))
    return len(np.unique(quantized)) == 256


def _quantization(detail: dict) -> dict | None:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if not scale:
        return None
    return {"scale": float(scale), "zero_point": int(zero_point)}
