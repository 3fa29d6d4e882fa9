"""Fitting and measuring the out-of-distribution guard (edge_runtime/guard.py) at convert time.

The features are computed by the deployed int8 TFLite file itself, through the same Classifier
the device runs, so the statistics describe exactly what the device will compute:

1. features of (a seeded subsample of) the training split -> probabilistic PCA (mean, top-k
   components and their variances, the mean variance of the rest), of all of them or of each
   label's (`--ood-per-label`: the nearest label's distance counts);
2. distances of the validation split -> threshold = a high quantile of them;
3. k: each candidate is fitted and thresholded as above, and the one that refuses most of the
   tuning set of non-X-rays (non_xray.build_tuning), by the widest margin, is kept;
4. measured on data none of this saw: acceptance of the test split's X-rays, rejection of the
   evaluation set of non-X-ray images (non_xray.build), with the whole guard and with the
   feature test alone.

numpy only, apart from the optional distance histogram.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from ..edge_runtime.guard import (DETAIL_BLUR, DETAIL_MARGIN, NOT_CHEST_XRAY,
                                  OOD_STATS_FILENAME, FeatureDistance, ImageChecks, fine_detail)
from ..dataset import item_path
from ..image_io import read_image
from ..model_card import sha256_file
from ..preprocess import load_pixels
from . import non_xray

DEFAULT_COMPONENTS = 32
CANDIDATE_COMPONENTS = (16, 32, 64, 128)
DEFAULT_QUANTILE = 0.995
DEFAULT_TRAIN_IMAGES = 2000


def collect(classifier, data_dir: Path, items, progress, label: str, details: list | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """(model per-class probabilities (n, N), features (n, d)) of labelled items, guard off; appends each
    picture's fine detail to `details` when given."""
    probabilities, features = [], []
    for item in progress(items, label):
        pixels = load_pixels(item_path(data_dir, item), classifier.spec)
        if details is not None:
            details.append(fine_detail(pixels))
        inference = classifier.run(classifier.prepare_input(pixels))
        feature = inference.features
        if feature is None:
            raise ValueError(f"{classifier.model_path.name} has no features output")
        probabilities.append(inference.probabilities)
        features.append(feature)
    return np.array(probabilities), np.stack(features)


def fit(train_features: np.ndarray, components: int = DEFAULT_COMPONENTS,
        labels=None) -> FeatureDistance:
    """Probabilistic PCA of the training features (threshold still infinite); one model per
    label when `labels` (one per feature vector) are given."""
    return fit_each(train_features, (components,), labels)[0]


def fit_each(train_features: np.ndarray, candidates, labels=None) -> list[FeatureDistance]:
    """`fit` for each number of components in `candidates`, from one decomposition per
    group: each label's features when `labels` are given, else all of them."""
    x = np.asarray(train_features, dtype=np.float64)
    if labels is None:
        groups = {"all": x}
    else:
        labels = np.asarray(labels)
        if len(labels) != len(x):
            raise ValueError("one label per training feature vector")
        groups = {str(label): x[labels == label] for label in dict.fromkeys(labels.tolist())}
    # The same number of components for every group, so that no group's k exceeds its data.
    smallest = min(len(group) for group in groups.values())
    if smallest < 3:
        raise ValueError("need at least 3 training feature vectors per group")
    d = x.shape[1]
    decompositions = []
    for group in groups.values():
        mean = group.mean(axis=0)
        _, singular, vt = np.linalg.svd(group - mean, full_matrices=False)
        eigenvalues = np.zeros(d)
        eigenvalues[:len(singular)] = singular ** 2 / (len(group) - 1)
        decompositions.append((mean, vt, eigenvalues))
    fitted = []
    for components in candidates:
        k = max(1, min(components, smallest - 2, d - 1))
        means, bases, variances, residuals = [], [], [], []
        for mean, vt, eigenvalues in decompositions:
            floor = 1e-6 * max(eigenvalues[0], 1e-12)  # a direction no training image varies in
            means.append(mean)
            bases.append(vt[:k])
            variances.append(eigenvalues[:k] + floor)
            residuals.append(max(float(eigenvalues[k:].sum() / (d - k)), floor))
        fitted.append(FeatureDistance(mean=np.stack(means), components=np.stack(bases),
                                      variances=np.stack(variances),
                                      residual_variance=np.array(residuals),
                                      threshold=float("inf"), quantile=1.0,
                                      groups=tuple(groups)))
    return fitted


def with_threshold(stats: FeatureDistance, validation_distances: np.ndarray,
                   quantile: float = DEFAULT_QUANTILE) -> FeatureDistance:
    # "higher": an observed distance, so at least `quantile` of validation is accepted.
    threshold = float(np.quantile(np.asarray(validation_distances), quantile, method="higher"))
    return dataclasses.replace(stats, threshold=threshold, quantile=quantile)


def choose_components(train_features: np.ndarray, val_features: np.ndarray,
                      tuning_features: np.ndarray, candidates=CANDIDATE_COMPONENTS,
                      quantile: float = DEFAULT_QUANTILE, labels=None
                      ) -> tuple[FeatureDistance, list[dict]]:
    """The candidate that refuses the most tuning non-X-rays, then the one whose closest
    tuning image lies farthest beyond its threshold. Every candidate accepts the same share of
    validation X-rays (its threshold is that quantile), so only the refusals differ."""
    rows, fitted = [], []
    for stats in fit_each(train_features, candidates, labels):
        stats = with_threshold(stats, stats.distance(val_features), quantile)
        margins = np.atleast_1d(stats.distance(tuning_features)) / stats.threshold
        fitted.append(stats)
        rows.append({"components": stats.component_count,
                     "threshold": stats.threshold,
                     "tuning_rejected": int((margins > 1).sum()),
                     "tuning_images": int(len(margins)),
                     "closest_tuning_image_distance_over_threshold": float(margins.min())})
    best = max(rows, key=lambda row: (row["tuning_rejected"],
                                      row["closest_tuning_image_distance_over_threshold"]))
    best["chosen"] = True
    return fitted[rows.index(best)], rows


def tuning_features(classifier, checks: ImageChecks, folder: Path, seed: int = 1
                    ) -> tuple[list[dict], np.ndarray]:
    """The tuning set's images that pass the image checks (the ones the feature test has to
    catch), with their features; every image is listed."""
    rows, features = [], []
    for image in non_xray.build_tuning(folder, seed=seed):
        decoded = read_image(image.path, target_size=(classifier.spec.width,
                                                      classifier.spec.height),
                             high_bit_depth=classifier.spec.high_bit_window)
        pixels = classifier.pixels_from_gray(decoded.gray)[0]
        reason = checks.reason(pixels, decoded.colourfulness, decoded.size)
        rows.append({"image": image.name, "source": image.source,
                     "caught_by_image_checks": _reason_kind(reason) if reason else None})
        if reason is None:
            features.append(classifier.run(classifier.prepare_input(pixels)).features)
    if not features:
        raise ValueError("every tuning image was caught by the image checks: nothing to tune "
                         "the feature test on")
    return rows, np.stack(features)


def explained_variance(train_features: np.ndarray, stats: FeatureDistance,
                       labels=None) -> float:
    """The share of the training features' variance about their group's mean that the group's
    components explain (groups: as fitted, by label or all together)."""
    x = np.asarray(train_features, dtype=np.float64)
    labels = np.full(len(x), "all") if labels is None else np.asarray(labels).astype(str)
    total = explained = 0.0
    for mean, components, group in zip(stats.mean, stats.components, stats.groups):
        centred = x[labels == group] - mean
        total += float((centred ** 2).sum())
        explained += float(((centred @ components.T) ** 2).sum())
    return explained / total if total else 1.0


def training_subset(train_items: list, train_images: int, seed: int) -> list:
    """The training images the guard is fitted on: a seeded sample, in split order."""
    chosen = sorted(np.random.default_rng(seed).permutation(len(train_items))[:train_images])
    return [train_items[i] for i in chosen]


def fitted_image_checks(details, blur: str = DETAIL_BLUR) -> ImageChecks:
    """The image checks, with fine-detail limits around the training X-rays' `details`
    (measured with `blur`); the other limits are fixed."""
    return ImageChecks(detail_max=DETAIL_MARGIN * max(details),
                       detail_min=min(details) / DETAIL_MARGIN, detail_blur=blur)


def fit_guard(classifier, data_dir: Path, train_items, val_items, out_dir: Path, *,
              train_images: int = DEFAULT_TRAIN_IMAGES, components: int | None = None,
              quantile: float = DEFAULT_QUANTILE, per_label: bool = False, seed: int = 0,
              progress=None, log=print, scratch: Path | None = None
              ) -> tuple[dict, np.ndarray]:
    """Fit on `classifier` (the int8 model, guard off); write ood_stats.npz into out_dir.

    components: a fixed number of principal components, or None to choose among
    CANDIDATE_COMPONENTS on the tuning set (drawn into `scratch`, a temporary folder if None).
    per_label: one model of the features per label (the training images' labels), else one
    for all.

    Returns the model card's "ood_guard" entry and the validation probabilities (which
    calibration reuses: one pass over the validation split serves both).
    """
    progress = progress or (lambda items, label: items)
    subset = training_subset(train_items, train_images, seed)
    details: list[float] = []
    _, train_features = collect(classifier, data_dir, subset, progress,
                                f"guard: training features ({classifier.variant})", details)
    val_probabilities, val_features = collect(classifier, data_dir, val_items, progress,
                                              f"guard: validation ({classifier.variant})")
    checks = fitted_image_checks(details)
    with tempfile.TemporaryDirectory() as temporary:
        tuning_rows, tuning = tuning_features(classifier, checks,
                                              Path(scratch or temporary) / "tuning")
    candidates = CANDIDATE_COMPONENTS if components is None else (components,)
    labels = [item.label for item in subset] if per_label else None
    stats, candidate_rows = choose_components(train_features, val_features, tuning, candidates,
                                              quantile, labels)
    val_distances = stats.distance(val_features)
    path = stats.save(Path(out_dir) / OOD_STATS_FILENAME)
    train_distances = stats.distance(train_features)
    entry = {
        "method": "cheap image checks (colour, blank frame, aspect ratio), then a probabilistic-"
                  "PCA distance of the model's pooled penultimate features (its second "
                  "output) to the training X-rays' features: Mahalanobis distance in the top "
                  "principal components plus the residual scaled by the mean variance of the "
                  "others" + (f", one model per label ({', '.join(stats.groups)}), the nearest "
                              "counts" if per_label else ""),
        "verdict": NOT_CHEST_XRAY,
        "image_checks": checks.to_dict(),
        "image_checks_fitted": f"detail_max = {DETAIL_MARGIN} x the largest fine detail "
                               f"({checks.detail_blur} blur) of the "
                               f"{len(details)} training X-rays ({max(details):.3f}), "
                               f"detail_min = their smallest ({min(details):.3f}) / "
                               f"{DETAIL_MARGIN} (median {float(np.median(details)):.3f}); the "
                               "other limits are fixed",
        "features": f"{stats.feature_dim} pooled penultimate (GlobalAveragePooling2D) features, "
                    f"as the {classifier.variant} model outputs them",
        "stats_file": path.name,
        "stats_sha256": sha256_file(path),
        "stats_bytes": path.stat().st_size,
        "components": stats.component_count,
        "groups": list(stats.groups),
        "components_chosen": ("fixed by --ood-components" if components is not None else
                              f"the candidate of {list(CANDIDATE_COMPONENTS)} that refuses the "
                              "most tuning images that pass the image checks, then by the "
                              "widest margin (the evaluation set below played no part)"),
        "tuning": {"images": len(tuning_rows), "passed_image_checks": len(tuning),
                   "sources": dict(Counter(row["source"] for row in tuning_rows)),
                   "candidates": candidate_rows, "per_image": tuning_rows},
        "explained_variance": explained_variance(train_features, stats, labels),
        "threshold": stats.threshold,
        "quantile": quantile,
        "fitted_on": {"variant": classifier.variant,
                      "train_images": len(subset), "train_images_available": len(train_items),
                      "validation_images": len(val_items)},
        "train_acceptance": float(np.mean(train_distances <= stats.threshold)),
        "validation_acceptance": float(np.mean(val_distances <= stats.threshold)),
        "validation_distance_percentiles": _percentiles(val_distances),
        "limits": "The image checks and the feature check are measured on the images listed "
                  "here, which are not X-rays. X-rays that are not frontal chest films "
                  "(lateral views, CT slices, knees) are the lung check's job: the lung model "
                  "in lungs/ beside this model, measured by scripts/lung_guard_eval.py "
                  "(docs/lungs.md). Without it, such X-rays may pass as chest X-rays.",
    }
    for row in candidate_rows:
        log(f"guard: {row['components']:>3} components refuse {row['tuning_rejected']}/"
            f"{row['tuning_images']} tuning images past the image checks (closest at "
            f"{row['closest_tuning_image_distance_over_threshold']:.2f} x the threshold)"
            + ("  <- chosen" if row.get("chosen") else ""))
    log(f"guard: {entry['components']} components explain {entry['explained_variance']:.1%} "
        f"of the training features' variance; threshold {stats.threshold:.2f} "
        f"({quantile:.1%} of validation); validation acceptance "
        f"{entry['validation_acceptance']:.2%}")
    entry["_distances"] = {"validation": val_distances}  # for the histogram; not in the card
    return entry, val_probabilities


def measure_guard(guarded, plain, data_dir: Path, test_items, scratch: Path,
                  non_xray_dirs=(), progress=None, seed: int = 0) -> dict:
    """Acceptance of the test X-rays and rejection of non-X-ray images, by the deployed path
    (`guarded.classify_file`); the feature test alone is measured with `plain` (guard off)."""
    progress = progress or (lambda items, label: items)
    stats = guarded.guard.features
    test_distances, reasons, refused, refused_by_label = [], {}, [], {}
    accepted = 0
    for item in progress(test_items, f"guard: test X-rays ({guarded.variant})"):
        prediction = guarded.classify_file(item_path(data_dir, item))
        if prediction.error:
            raise ValueError(f"{item.path}: {prediction.error}")
        if prediction.verdict == NOT_CHEST_XRAY:
            kind = _reason_kind(prediction.reason)
            reasons[kind] = reasons.get(kind, 0) + 1
            refused.append(item.path)
            refused_by_label[item.label] = refused_by_label.get(item.label, 0) + 1
        else:
            accepted += 1
        if prediction.ood_distance is not None:
            test_distances.append(prediction.ood_distance)
    test = {"images": len(test_items), "accepted": accepted,
            "acceptance": accepted / max(len(test_items), 1), "rejected_by": reasons,
            "refused": refused, "refused_by_label": refused_by_label,
            "distance_percentiles": _percentiles(np.array(test_distances))}

    images = non_xray.build(scratch, list(non_xray_dirs), seed=seed)
    rows, unreadable = [], []
    for image in progress(images, "guard: non-X-ray images"):
        prediction = guarded.classify_file(image.path)
        if prediction.error:
            unreadable.append(f"{image.name}: {prediction.error}")
            continue
        distance = _feature_distance(plain, stats, image.path)
        rows.append({"image": image.name, "source": image.source,
                     "gray_copy": image.gray_copy,
                     "rejected": prediction.verdict == NOT_CHEST_XRAY,
                     "reason": prediction.reason, "distance": distance,
                     "rejected_by_features": bool(distance > stats.threshold),
                     "verdict_without_guard": plain.classify_file(image.path).verdict})
    rejected = sum(row["rejected"] for row in rows)
    by_features = sum(row["rejected_by_features"] for row in rows)
    kinds: dict[str, int] = {}
    for row in rows:
        if row["rejected"]:
            kind = _reason_kind(row["reason"])
            kinds[kind] = kinds.get(kind, 0) + 1
    counts = non_xray.sources([image for image in images
                               if image.name in {row["image"] for row in rows}])
    return {
        "test": test,
        "non_xray": {
            "images": len(rows),
            "rejected": rejected,
            "rejection": rejected / max(len(rows), 1),
            "rejected_by": kinds,
            "feature_test_alone": {"rejected": by_features,
                                   "rejection": by_features / max(len(rows), 1)},
            "sources": counts,
            "unreadable": unreadable,
            "per_image": rows,
        },
        "_distances": {"test": np.array(test_distances),
                       "non_xray": np.array([row["distance"] for row in rows])},
    }


def measure_into(entry: dict, distances: dict, int8_path: Path, data_dir, test_items,
                 scratch: Path, non_xray_dirs, progress, seed: int, histogram: Path,
                 log=print) -> dict:
    """measure_guard on the int8 file whose guard `entry` (the card's ood_guard, fitted by
    fit_guard; `distances` its validation distances) describes: adds the measurements and
    the distance histogram to the entry, logs the summary, returns the measurements."""
    from ..edge_runtime.classifier import Classifier

    measured = measure_guard(Classifier.load(int8_path), Classifier.load(int8_path, guard=False),
                             data_dir, test_items, scratch, non_xray_dirs, progress, seed)
    distances = distances | measured.pop("_distances")
    entry.update(measured)
    entry["distance_histogram"] = f"training/{histogram.name}"
    distance_histogram({"validation X-rays": distances["validation"],
                        "test X-rays": distances["test"],
                        "non-X-ray images": distances["non_xray"]},
                       entry["threshold"], histogram)
    log(f"guard: test X-rays accepted {measured['test']['acceptance']:.2%} "
        f"({measured['test']['accepted']}/{measured['test']['images']}); non-X-ray images "
        f"rejected {measured['non_xray']['rejection']:.2%} "
        f"({measured['non_xray']['rejected']}/{measured['non_xray']['images']}; feature test "
        f"alone {measured['non_xray']['feature_test_alone']['rejected']})")
    return measured


def _feature_distance(plain, stats: FeatureDistance, path: Path) -> float:
    decoded = read_image(path, target_size=(plain.spec.width, plain.spec.height),
                         high_bit_depth=plain.spec.high_bit_window)
    pixels = plain.pixels_from_gray(decoded.gray)[0]
    return float(stats.distance(plain.run(plain.prepare_input(pixels)).features))


def _reason_kind(reason: str | None) -> str:
    if not reason:
        return "none"
    for kind in ("colour", "blank", "aspect", "noise", "featureless", "features"):
        if reason.startswith(kind):
            return kind
    return reason.split(" ")[0]


def _percentiles(values: np.ndarray) -> dict | None:
    if len(values) == 0:
        return None
    points = (0, 50, 90, 99, 99.5, 100)
    return {f"p{p:g}": float(v) for p, v in zip(points, np.percentile(values, points))}


def distance_histogram(distances: dict[str, np.ndarray], threshold: float, path: Path) -> Path:
    """Validation and test X-rays against non-X-ray images, with the threshold."""
    from ..plots import _pyplot

    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(6, 3.4))
    finite = np.concatenate([np.asarray(v, dtype=np.float64) for v in distances.values()
                             if len(v)])
    top = float(np.percentile(finite, 99.5)) * 1.1 if len(finite) else 1.0
    bins = np.geomspace(max(finite.min(), 1e-3) * 0.9, max(top, threshold * 1.5), 60)
    for name, values in distances.items():
        if len(values):
            axis.hist(np.clip(values, bins[0], bins[-1]), bins=bins, alpha=0.55, density=True,
                      label=f"{name} ({len(values)})")
    axis.axvline(threshold, color="black", linewidth=1, label=f"threshold {threshold:.1f}")
    axis.set_xscale("log")
    axis.set_xlabel("feature distance to the training X-rays (log scale)")
    axis.set_ylabel("density")
    axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
