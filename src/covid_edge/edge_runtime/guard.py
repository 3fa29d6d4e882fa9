"""The out-of-distribution guard: is this a frontal chest X-ray at all?

A classifier answers one of its classes for anything, a cat included. Before a verdict the
guard runs these tests, and any failure answers NOT_CHEST_XRAY with a reason (the lung check
between 1 and 2, on the lung model's mask, is edge_runtime.lung_guard's):

1. Cheap image checks, before the model runs: colour (chest X-rays are gray; measured on the
   decoded file, before conversion to gray throws the colour away), a blank or nearly uniform
   frame, an aspect ratio no chest X-ray has, and noise or fine texture (more fine detail than
   any training X-ray has at the model's size).
2. A feature distance, after the model runs: the model's own pooled penultimate features (a
   second output of the TFLite file) against the training X-rays' features, summarised by
   `covid-edge convert` in ood_stats.npz: a probabilistic-PCA distance (Mahalanobis in the top
   principal components plus the scaled residual), refused above a high quantile of the
   validation X-rays' distances.

numpy and Pillow only: the device imports this.
"""

from __future__ import annotations

import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from ..model_card import sha256_file

NOT_CHEST_XRAY = "not a chest X-ray"
# The feature check's reason starts with this (reports count its refusals by it).
FEATURES_FAR = "features far from the training X-rays"
OOD_STATS_FILENAME = "ood_stats.npz"
CARD_KEY = "ood_guard"

# Chest X-rays are gray (colourfulness 0 in every training image); natural photos measure 25
# to 130 (Hasler & Suesstrunk call 15 "slightly colourful"). Leaves room for the colour cast of
# a phone photo of a film on a light box.
COLOURFULNESS_MAX = 15.0
# Grey-level standard deviation of the model-size picture; the training X-rays have at least
# about 16 (median 61).
BLANK_STD_MIN = 8.0
# width / height; chest radiographs are about 0.7 to 1.3.
ASPECT_RATIO_RANGE = (0.5, 2.0)
# Fine detail: mean |picture - its blur| / its standard deviation, on the model-size picture.
# X-rays are smooth at 224 px (training maximum about 0.25) but not featureless (minimum about
# 0.02); sensor noise, gravel, grass or printed text score 0.3 to 0.8, a smooth gradient 0. The
# limits are fitted at convert time, with the blur the card names (ImageChecks.detail_blur).
# "box-3", one pass of a radius-3 box blur, halves the measure's cost against Pillow's
# radius-2 Gaussian (three box passes; 0.23 against 0.46 ms of the ~5 ms of CPU a 224-px JPEG
# costs on a Zen 5 core), and decides as it did but for 24 of 28,615 pictures, perturbed
# X-rays the Gaussian refused (scripts/detail_blur_compare.py, docs/speed.md). A card without
# the field was fitted with the Gaussian, so it keeps it: release 0.2.0 refuses what it did.
DETAIL_BLURS = {
    "gaussian-2": ImageFilter.GaussianBlur(2.0),
    "box-3": ImageFilter.BoxBlur(3.0),
}
DETAIL_BLUR = "box-3"              # what convert and fit-guard fit now
DETAIL_BLUR_UNNAMED = "gaussian-2"  # what a card that names none was fitted with
DETAIL_MARGIN = 1.3  # limits = the training X-rays' maximum times this, minimum divided by it


def grey_spread(pixels: np.ndarray) -> float:
    """Standard deviation of the grey levels (float32 arithmetic, as the limits were fitted)."""
    return float(np.asarray(pixels, dtype=np.uint8).astype(np.float32).std())


def fine_detail(pixels: np.ndarray, spread: float | None = None,
                blur: str = DETAIL_BLUR) -> float:
    """How much of the picture's contrast is in fine detail (0 = smooth). `spread`: the
    picture's grey_spread when the caller has it already; `blur`: a DETAIL_BLURS name, the
    one the limits were fitted with.

    The mean absolute difference is summed in integers: every term is a whole number and the
    total stays below 2**24, so it is the value float32 arithmetic gave, at a fraction of the
    cost."""
    pixels = np.asarray(pixels, dtype=np.uint8)
    spread = grey_spread(pixels) if spread is None else spread
    if spread == 0.0:
        return 0.0
    blurred = np.asarray(Image.fromarray(pixels).filter(DETAIL_BLURS[blur]))
    total = int(np.abs(np.subtract(pixels, blurred, dtype=np.int16)).sum(dtype=np.int64))
    return float(np.float32(total) / np.float32(pixels.size)) / spread


@dataclass(frozen=True)
class ImageChecks:
    colourfulness_max: float = COLOURFULNESS_MAX
    blank_std_min: float = BLANK_STD_MIN
    aspect_ratio_min: float = ASPECT_RATIO_RANGE[0]
    aspect_ratio_max: float = ASPECT_RATIO_RANGE[1]
    detail_max: float | None = None  # fitted on the training X-rays; None: not checked
    detail_min: float | None = None
    detail_blur: str = DETAIL_BLUR  # the DETAIL_BLURS entry the detail limits were fitted with

    def __post_init__(self):
        if self.detail_blur not in DETAIL_BLURS:
            raise ValueError(f"detail_blur {self.detail_blur!r} is none of "
                             f"{', '.join(DETAIL_BLURS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "ImageChecks":
        data = data or {}
        limits = {name: None if data[name] is None else float(data[name])
                  for name in cls.__dataclass_fields__ if name in data and name != "detail_blur"}
        return cls(**limits, detail_blur=str(data.get("detail_blur", DETAIL_BLUR_UNNAMED)))

    def reason(self, pixels: np.ndarray, colourfulness: float | None = None,
               size: tuple[int, int] | None = None) -> str | None:
        """Why the picture cannot be a chest X-ray, or None when it passes.

        pixels: the uint8 model-size picture; colourfulness and size (width, height): of the
        decoded file (image_io.read_image), None when unknown.
        """
        if colourfulness is not None and colourfulness > self.colourfulness_max:
            return (f"colour image (colourfulness {colourfulness:.0f} > "
                    f"{self.colourfulness_max:.0f}); chest X-rays are gray")
        spread = grey_spread(pixels)
        if spread < self.blank_std_min:
            return (f"blank or nearly uniform frame (grey-level spread {spread:.1f} < "
                    f"{self.blank_std_min:.0f})")
        if size is not None and min(size) > 0:
            ratio = size[0] / size[1]
            if not self.aspect_ratio_min <= ratio <= self.aspect_ratio_max:
                return (f"aspect ratio {size[0]}x{size[1]} (width/height {ratio:.2f}) is outside "
                        f"{self.aspect_ratio_min:g}-{self.aspect_ratio_max:g}")
        if self.detail_max is not None or self.detail_min is not None:
            detail = fine_detail(pixels, spread, self.detail_blur)
            if self.detail_max is not None and detail > self.detail_max:
                return (f"noise or fine texture (fine detail {detail:.2f} > "
                        f"{self.detail_max:.2f}); chest X-rays are smooth at this size")
            if self.detail_min is not None and detail < self.detail_min:
                return (f"featureless picture (fine detail {detail:.3f} < "
                        f"{self.detail_min:.3f}): a smooth gradient or an out-of-focus frame")
        return None


@dataclass(frozen=True)
class FeatureDistance:
    """Probabilistic PCA of the training X-rays' features, one model per group: one for all
    of them (the default, and every file written before groups existed) or one per label
    (`convert --ood-per-label`).

    distance(f)^2 = sum_i z_i^2 / variance_i + |residual|^2 / residual_variance, where z are
    the coordinates of f - mean on the group's top principal components and the residual is
    what those components do not explain (Tipping & Bishop 1999: the model's negative
    log-likelihood up to constants); the distance is that of the nearest group. Features
    unlike any training X-ray score high in one term or the other. One model per label is
    tighter than one for all (Lee et al. 2018, class-conditional Gaussians): one ellipsoid
    around every label's features also covers the space between them; on release 0.3.0's
    tuning sets, per label kept more CT slices refused at looser thresholds
    (docs/bench/0.3.0/guard-per-label.md).
    """

    mean: np.ndarray  # (groups, d)
    components: np.ndarray  # (groups, k, d), orthonormal rows per group
    variances: np.ndarray  # (groups, k)
    residual_variance: np.ndarray  # (groups,)
    threshold: float  # refuse when distance > threshold
    quantile: float  # of the validation distances the threshold is
    groups: tuple[str, ...] = ("all",)  # what each model was fitted on

    def distance(self, features: np.ndarray) -> np.ndarray | float:
        """(..., d) features -> (...) distances (a float for one feature vector)."""
        features = np.asarray(features, dtype=np.float64)
        squared = None
        for mean, components, variances, residual_variance in zip(
                self.mean, self.components, self.variances, self.residual_variance):
            centred = features - mean
            # asarray: no copy of the (k, d) matrix per image when it is float64 already (it
            # is, as loaded); the same transposed layout, so the same product.
            projected = centred @ np.asarray(components, dtype=np.float64).T
            residual = np.maximum((centred ** 2).sum(axis=-1) - (projected ** 2).sum(axis=-1),
                                  0.0)
            group = (projected ** 2 / variances).sum(axis=-1) + residual / residual_variance
            squared = group if squared is None else np.minimum(squared, group)
        distances = np.sqrt(squared)
        return float(distances) if distances.ndim == 0 else distances

    @property
    def feature_dim(self) -> int:
        return int(self.mean.shape[-1])

    @property
    def component_count(self) -> int:
        """Principal components per group."""
        return int(self.components.shape[1])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with open(path, "wb") as handle:  # np.savez would append .npz to a str name
            np.savez(handle, mean=self.mean.astype(np.float32),
                     components=self.components.astype(np.float32),
                     variances=self.variances.astype(np.float64),
                     residual_variance=np.asarray(self.residual_variance, dtype=np.float64),
                     threshold=np.float64(self.threshold), quantile=np.float64(self.quantile),
                     groups=np.array(self.groups, dtype=str))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FeatureDistance":
        with np.load(path, allow_pickle=False) as data:
            mean = data["mean"].astype(np.float64)
            components = data["components"].astype(np.float64)
            variances = data["variances"].astype(np.float64)
            residual_variance = np.asarray(data["residual_variance"], dtype=np.float64)
            if mean.ndim == 1:  # a file with one model, written before the groups (0.2.0)
                mean, components = mean[None], components[None]
                variances, residual_variance = variances[None], residual_variance.reshape(1)
            groups = (tuple(str(g) for g in data["groups"]) if "groups" in data.files
                      else ("all",))
            loaded = cls(mean=mean, components=components, variances=variances,
                         residual_variance=residual_variance,
                         threshold=float(data["threshold"]), quantile=float(data["quantile"]),
                         groups=groups)
        if loaded.components.ndim != 3:
            raise ValueError("components is not a matrix per group")
        g, k, d = loaded.components.shape
        if (loaded.mean.shape != (g, d) or loaded.variances.shape != (g, k)
                or loaded.residual_variance.shape != (g,) or len(loaded.groups) != g or g == 0):
            raise ValueError("inconsistent array shapes")
        arrays = (loaded.mean, loaded.components, loaded.variances, loaded.residual_variance)
        # threshold may be +inf (fitted but not yet thresholded), never NaN.
        if not (all(np.isfinite(a).all() for a in arrays) and np.isfinite(loaded.quantile)
                and not np.isnan(loaded.threshold)):
            raise ValueError("non-finite values")
        if ((loaded.variances <= 0).any() or (loaded.residual_variance <= 0).any()
                or loaded.threshold <= 0):
            raise ValueError("variances and threshold must be positive")
        return loaded


class GuardStatsError(Exception):
    """The guard's statistics file the card names is missing, unreadable or not the one the
    card describes."""


class Guard:
    """The checks one model runs; `features` is None when the feature test cannot run (the
    model has no feature output or its card no statistics), and `notes` says why."""

    def __init__(self, checks: ImageChecks, features: FeatureDistance | None,
                 notes: list[str] | None = None):
        self.checks = checks
        self.features = features
        self.notes = notes or []

    @classmethod
    def from_card(cls, card: dict, models_dir: Path, feature_dim: int | None) -> "Guard":
        """The guard the card describes. feature_dim: the size of the model's feature output,
        None when it has none. Problems disable the feature test with a note, never the
        model: a card written before the guard existed still classifies. A statistics file the
        card names but that is missing, unreadable or differs from its sha256 raises
        GuardStatsError."""
        entry = card.get(CARD_KEY) or {}
        checks = ImageChecks.from_dict(entry.get("image_checks"))
        if feature_dim is None:
            return cls(checks, None, [
                "this model has no feature output (converted before the out-of-distribution "
                "guard): only the image checks (colour, blank frame, aspect ratio) run; "
                "re-run `covid-edge convert` for the feature-distance test"])
        stats_file = entry.get("stats_file")
        if not stats_file:
            return cls(checks, None, [
                "the model card has no out-of-distribution statistics: only the image checks "
                "run; re-run `covid-edge convert` for the feature-distance test"])
        # The card promises a feature test: a missing, damaged or substituted statistics file
        # is an error, not a quiet downgrade (the caller offers --no-guard).
        path = Path(models_dir) / stats_file
        try:
            features = FeatureDistance.load(path)
        except FileNotFoundError:
            raise GuardStatsError(f"{path}: missing; the model card's out-of-distribution "
                                  "guard needs it") from None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise GuardStatsError(f"{path}: cannot be read ({exc})") from None
        if features.feature_dim != feature_dim:
            raise GuardStatsError(f"{path.name} is for {features.feature_dim} features but the "
                                  f"model gives {feature_dim}")
        expected = entry.get("stats_sha256")
        if expected and sha256_file(path) != expected:
            raise GuardStatsError(f"{path.name} differs from the file its model card describes "
                                  "(sha256 mismatch): the guard's threshold would not apply")
        notes = [] if expected else [
            f"the model card has no sha256 for {path.name}: it cannot be checked; re-run "
            "`covid-edge convert` to record it"]
        return cls(checks, features, notes)

    def image_reason(self, pixels, colourfulness=None, size=None) -> str | None:
        return self.checks.reason(pixels, colourfulness, size)

    def feature_reason(self, features: np.ndarray | None) -> tuple[str | None, float | None]:
        """(reason or None, distance or None when the test does not run)."""
        if self.features is None or features is None:
            return None, None
        distance = self.features.distance(np.asarray(features).reshape(-1))
        if distance > self.features.threshold:
            return (f"{FEATURES_FAR} (distance {distance:.1f} > "
                    f"{self.features.threshold:.1f})"), distance
        return None, distance
