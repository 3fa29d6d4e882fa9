"""MobileNetV2 with a classification head (one sigmoid unit for two classes, else one softmax
unit per class), and the freezing rules for each training phase."""

from __future__ import annotations

from pathlib import Path

import keras

from ..preprocess import PreprocessSpec

BACKBONE_NAME = "mobilenetv2_1.00_backbone"


def resolve_weights(weights: str | None) -> str | None:
    """'imagenet' (Keras downloads it), a local .weights.h5 file (offline), or None/'none'."""
    if weights is None or weights.lower() == "none":
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"--weights {weights}: no such file (give 'imagenet', 'none' or a path to "
            "mobilenet_v2_1.0_224_imagenet_no_top.weights.h5)")
    return str(path)


OFFLINE_HINT = ("pass --weights PATH/mobilenet_v2_1.0_224_imagenet_no_top.weights.h5 (in a clone "
                "with ../shared beside it: ../shared/weights/mobilenet_v2_1.0_224_imagenet_no_top"
                ".weights.h5), or --weights none to start from random weights")


def build(spec: PreprocessSpec, weights: str | None, dropout: float = 0.2,
          classes: int = 1) -> keras.Model:
    """classes: output units: 1 (sigmoid, P(positive)) or N (softmax, label order)."""
    resolved = resolve_weights(weights)
    try:
        base = keras.applications.MobileNetV2(
            input_shape=spec.input_shape, alpha=1.0, include_top=False, weights=resolved)
    except Exception as exc:  # Keras reports a failed download as a bare Exception
        if resolved == "imagenet" and ("URL fetch failure" in str(exc)
                                       or isinstance(exc, OSError)):
            raise FileNotFoundError(
                "--weights imagenet: Keras could not download the ImageNet weights (no "
                f"internet here?); {OFFLINE_HINT}") from None
        raise
    base.name = BACKBONE_NAME
    inputs = keras.Input(spec.input_shape, name="xray")
    features = base(inputs, training=False)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    dropped = keras.layers.Dropout(dropout, name="dropout")(pooled)
    if classes == 1:
        head = keras.layers.Dense(1, activation="sigmoid", name="covid_probability")(dropped)
    else:
        head = keras.layers.Dense(classes, activation="softmax",
                                  name="class_probabilities")(dropped)
    model = keras.Model(inputs, head, name="covid_edge_mobilenetv2")
    freeze_backbone(model)
    return model


def backbone(model: keras.Model) -> keras.Model:
    return model.get_layer(BACKBONE_NAME)


def freeze_backbone(model: keras.Model) -> None:
    """Phase 1: only the new head learns."""
    backbone(model).trainable = False


def unfreeze_top(model: keras.Model, first_layer: str) -> int:
    """Phase 2: fine-tune from `first_layer` to the end, BatchNormalization always frozen.

    In Keras 3 an outer training=True call overrides base(x, training=False), and the shared
    weights fold BN's scale into the convolutions: BN in training mode would discard it
    (see ../shared/weights/README.md). A frozen BN layer always runs in inference mode.
    Returns the number of trainable backbone layers.
    """
    base = backbone(model)
    base.trainable = True
    names = [layer.name for layer in base.layers]
    if first_layer not in names:
        raise ValueError(f"no layer {first_layer!r} in MobileNetV2 (e.g. block_12_expand)")
    start = names.index(first_layer)
    trainable = 0
    for index, layer in enumerate(base.layers):
        is_batch_norm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = index >= start and not is_batch_norm
        trainable += int(layer.trainable and bool(layer.weights))
    return trainable
