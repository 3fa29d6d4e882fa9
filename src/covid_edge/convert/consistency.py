"""Consistency training: each training picture shown twice, as drawn and re-encoded, with a
loss that pulls the two verdicts together.

The invariance chain (convert/invariance.py) shows the model re-encoded pictures, but only
asks that each be classified right on its own: a picture near the threshold can still land
on either side depending on its encoding, and the shift suite counts exactly those flips.
Here every batch holds pairs: view A is the picture as the augmenter draws it, view B is view
A through a random chain of 1-3 re-encodings (always). The loss is the cross-entropy of both
views plus `weight` times the Jensen-Shannon divergence between their class distributions, as
in AugMix (Hendrycks et al., ICLR 2020, where the weight 12 is the published default) and
stability training (Zheng et al., CVPR 2016).

The pair model shares every weight with the classifier, so training it trains the classifier;
only the classifier is saved. Validation feeds each picture as both views: dropout is off
there, the two outputs are equal, and the validation loss is the plain cross-entropy that
early stopping compares across runs.
"""

from __future__ import annotations

import numpy as np

from ..preprocess import to_model_input
from .train import seeded_batches

# Keeps log() finite where a softmax output underflows to 0.
_EPSILON = 1e-7


def pair_model(model):
    """A two-input model whose output is [model(A), model(B)] side by side."""
    import keras

    shape = model.input_shape[1:]
    view_a = keras.Input(shape, name="view_a")
    view_b = keras.Input(shape, name="view_b")
    both = keras.layers.Concatenate(name="both_views")([model(view_a), model(view_b)])
    return keras.Model([view_a, view_b], both, name=f"{model.name}_pairs")


def as_distribution(probabilities, outputs: int):
    """(n, outputs) model outputs -> (n, classes) class distributions: a sigmoid unit p is
    the distribution (1 - p, p); a softmax output already is one."""
    from keras import ops

    if outputs == 1:
        return ops.concatenate([1.0 - probabilities, probabilities], axis=-1)
    return probabilities


def _kl(p, q):
    from keras import ops

    return ops.sum(p * (ops.log(p + _EPSILON) - ops.log(q + _EPSILON)), axis=-1)


def jensen_shannon(p, q):
    """Per-row Jensen-Shannon divergence of two class distributions (nats, 0..ln 2)."""
    middle = 0.5 * (p + q)
    return 0.5 * (_kl(p, middle) + _kl(q, middle))


def pair_loss(outputs: int, weight: float, sparse: bool):
    """loss(y, [A | B]) per sample: the mean cross-entropy of the two views + weight * JS."""
    import keras
    from keras import ops

    def loss(y_true, y_pred):
        view_a, view_b = y_pred[:, :outputs], y_pred[:, outputs:]
        if sparse:
            cross = keras.losses.sparse_categorical_crossentropy
        else:
            cross = keras.losses.binary_crossentropy
        entropy = 0.5 * (cross(y_true, view_a) + cross(y_true, view_b))
        divergence = jensen_shannon(as_distribution(view_a, outputs),
                                    as_distribution(view_b, outputs))
        return ops.reshape(entropy, (-1,)) + weight * divergence

    loss.__name__ = "cross_entropy_plus_consistency"
    return loss


def view_a_accuracy(outputs: int, sparse: bool):
    """Accuracy of view A, the picture as drawn (the number `fit` prints as accuracy)."""
    import keras

    def accuracy(y_true, y_pred):
        view_a = y_pred[:, :outputs]
        if sparse:
            return keras.metrics.sparse_categorical_accuracy(y_true, view_a)
        return keras.metrics.binary_accuracy(y_true, view_a)

    return accuracy


def make_pair_batches(pixels, labels, spec, batch_size, *, augmenter, chain, weights=None,
                      seed=0, sparse=False):
    """Training batches of ((view A, view B), labels[, each image's loss weight]): A drawn by
    `augmenter`, B = chain(A) (uint8 (h, w) -> uint8 (h, w), e.g.
    InvarianceAugmenter.chain), both from one seeded generator per batch."""

    def make_batch(chosen, rng):
        drawn = augmenter(pixels[chosen], rng)
        encoded = np.stack([chain(image.astype(np.uint8), rng) for image in drawn])
        x = (to_model_input(drawn, spec), to_model_input(encoded.astype(np.float32), spec))
        y = labels[chosen].astype(np.int32 if sparse else np.float32)
        if weights is None:
            return x, y
        return x, y, weights[chosen].astype(np.float32)

    return seeded_batches(len(labels), batch_size, make_batch, seed=seed, shuffle=True)


def make_validation_pairs(pixels, labels, spec, batch_size, *, sparse=False):
    """Validation batches with each picture as both views (no augmentation)."""

    def make_batch(chosen, rng):
        x = to_model_input(pixels[chosen], spec)
        return (x, x), labels[chosen].astype(np.int32 if sparse else np.float32)

    return seeded_batches(len(labels), batch_size, make_batch)
