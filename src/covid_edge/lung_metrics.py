"""Overlap scores for lung masks: Dice and IoU per image, and their summaries per source."""

from __future__ import annotations

import numpy as np


def precision_recall(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the share of the predicted lung that the reference marks (precision) and the
    share of the reference lung that was found (recall). A model that follows a narrower mask
    convention than the reference scores high precision and low recall."""
    predicted = predicted.reshape(len(predicted), -1).astype(bool)
    truth = truth.reshape(len(truth), -1).astype(bool)
    overlap = np.logical_and(predicted, truth).sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted.any(axis=1), overlap / predicted.sum(axis=1), 1.0)
        recall = np.where(truth.any(axis=1), overlap / truth.sum(axis=1), 1.0)
    return precision, recall


def dice_iou(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (n, h, w) masks -> per-image Dice and IoU (1.0 when both are empty)."""
    predicted = predicted.reshape(len(predicted), -1).astype(bool)
    truth = truth.reshape(len(truth), -1).astype(bool)
    overlap = np.logical_and(predicted, truth).sum(axis=1).astype(np.float64)
    sizes = predicted.sum(axis=1) + truth.sum(axis=1).astype(np.float64)
    union = sizes - overlap
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(sizes > 0, 2 * overlap / sizes, 1.0)
        iou = np.where(union > 0, overlap / union, 1.0)
    return dice, iou


def summarize(dice: np.ndarray, iou: np.ndarray, precision: np.ndarray | None = None,
              recall: np.ndarray | None = None) -> dict:
    if len(dice) == 0:
        return {"images": 0}
    extra = {}
    if precision is not None:
        extra = {"precision_mean": round(float(np.mean(precision)), 4),
                 "recall_mean": round(float(np.mean(recall)), 4)}
    return {"images": int(len(dice)),
            "dice_mean": round(float(np.mean(dice)), 4),
            "dice_p5": round(float(np.percentile(dice, 5)), 4),
            "dice_min": round(float(np.min(dice)), 4),
            "iou_mean": round(float(np.mean(iou)), 4),
            "iou_p5": round(float(np.percentile(iou, 5)), 4), **extra}


def per_source(dice: np.ndarray, iou: np.ndarray, sources: np.ndarray,
               precision: np.ndarray | None = None, recall: np.ndarray | None = None) -> dict:
    def pick(values, chosen):
        return None if values is None else values[chosen]

    return {str(source): summarize(dice[sources == source], iou[sources == source],
                                   pick(precision, sources == source),
                                   pick(recall, sources == source))
            for source in dict.fromkeys(sources.tolist())}


def upsample_probabilities(probabilities: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(n, h, w) float in [0, 1] -> (n, H, W), bilinear (Pillow), to score at the masks' own
    resolution rather than the model's."""
    from PIL import Image

    height, width = size
    out = np.empty((len(probabilities), height, width), dtype=np.float32)
    for i, prob in enumerate(probabilities):
        if prob.shape == (height, width):
            out[i] = prob
        else:
            out[i] = np.asarray(Image.fromarray(prob.astype(np.float32), mode="F").resize(
                (width, height), Image.Resampling.BILINEAR))
    return out
