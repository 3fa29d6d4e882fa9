"""The lung fields on an occlusion map: their contour drawn over the heatmap, and how much of
the positive evidence lies inside them.

A map whose evidence sits on the heart, the diaphragm, a corner marker or burned-in text
shows a model leaning on something other than the lungs; the share inside the lung fields
says so in one number. The mask is the lung model's (edge_runtime/lungs.py) on the very
picture the classifier saw.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from .lungs import LungModelError, LungSegmenter

CONTOUR_RGB = (255, 215, 0)  # gold: apart from both ends of the red-blue colour map


def lung_mask_for(classifier, pixels: np.ndarray) -> np.ndarray | None:
    """Boolean (height, width) lung mask at the classifier's input size, None without a lung
    model."""
    segmenter = classifier.lungs
    if segmenter is None:
        try:
            segmenter = classifier.lungs = LungSegmenter.load()
        except LungModelError:
            return None
    result = segmenter.segment(np.asarray(pixels, dtype=np.uint8))
    height, width = np.asarray(pixels).shape
    return np.asarray(Image.fromarray(result.mask.astype(np.uint8) * 255).resize(
        (width, height), Image.Resampling.BILINEAR)) >= 128


def attach_lungs(classifier, explanation):
    """Give `explanation` its lung mask (in place; returns it)."""
    explanation.lung_mask = lung_mask_for(classifier, explanation.pixels)
    explanation.cropped = bool(classifier.spec.crop)
    return explanation


def evidence_inside(heatmap: np.ndarray, mask: np.ndarray) -> float | None:
    """Share of the positive evidence (heatmap > 0, summed) that lies inside the mask; None
    when the map has no positive evidence."""
    positive = np.clip(np.asarray(heatmap, dtype=np.float64), 0.0, None)
    total = positive.sum()
    if total <= 0:
        return None
    return float(positive[np.asarray(mask, dtype=bool)].sum() / total)


def figures(explanation) -> dict:
    mask = getattr(explanation, "lung_mask", None)
    if mask is None:
        return {}
    share = evidence_inside(explanation.heatmap, mask)
    return {"lung_area_share": round(float(mask.mean()), 4),
            "positive_evidence_in_lungs": None if share is None else round(share, 4)}


def draw_contour(picture: Image.Image, mask: np.ndarray, width: int = 2) -> Image.Image:
    """The mask's outline over an RGB picture of any size (the mask is resized to it)."""
    size = picture.size
    grown = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255).resize(
        size, Image.Resampling.BILINEAR).point(lambda v: 255 if v >= 128 else 0)
    inner = grown.filter(ImageFilter.MinFilter(2 * width + 1))
    edge = (np.asarray(grown) > 0) & ~(np.asarray(inner) > 0)
    out = np.array(picture.convert("RGB"))
    out[edge] = CONTOUR_RGB
    return Image.fromarray(out)
