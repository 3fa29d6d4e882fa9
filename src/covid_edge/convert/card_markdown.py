"""The readable twin of model_card.json, rendered from it (never edited by hand)."""

from __future__ import annotations

from pathlib import Path

from ..benchmarks import card_summary
from ..model_card import CARD_MARKDOWN_FILENAME


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _unknowns(card: dict) -> list[str]:
    """What the figures cannot show, in plain words (the card's "unknowns", if any)."""
    if not card.get("unknowns"):
        return []
    return ["## What remains unknown", "", *[f"- {line}" for line in card["unknowns"]], ""]


def _source_split(card: dict) -> str:
    """'COVID and normal images' (two classes), 'COVID images and the normal and pneumonia
    ones' (three): the positive class's images against the rest."""
    positive = card.get("positive_label", "covid")
    others = [label for label in card["labels"] if label != positive]
    name = "COVID" if positive == "covid" else positive
    if len(others) == 1:
        return f"{name} and {others[0]} images"
    return f"{name} images and the {', '.join(others[:-1])} and {others[-1]} ones"


def _answers_limit(card: dict) -> str:
    """Every picture the guard lets through gets one of the model's labels: say which, and
    where the guard's own limits are. From the card's labels, so a model with other classes
    gets its own sentence."""
    labels = card["labels"]
    count = {2: "Two", 3: "Three", 4: "Four"}.get(len(labels), str(len(labels)))
    answer = "/".join(labels)
    if card.get("ood_guard"):
        return (f"- {count} classes only ({', '.join(labels)}): other lung diseases (tuberculosis, "
                f"nodules, ...) and any X-ray the guard lets through get a {answer} answer "
                "anyway; what the guard refuses, and what it was measured on, is under "
                "'Out-of-distribution guard'.")
    return (f"- {count} classes only ({', '.join(labels)}): other lung diseases, non-frontal "
            f"views and non-X-ray images get a {answer} answer anyway (this model has no guard).")


def _classes(card: dict) -> list[str]:
    """The int8 model's N-class verdicts on the test split: confusion matrix and per class."""
    measured = card["variants"]["int8"]["metrics"]
    labels = card["labels"]
    if "class_confusion_matrix" not in measured or len(labels) == 2:
        return ["Test confusion matrix of the int8 model (rows true, columns predicted; "
                f"normal, covid): `{measured['confusion_matrix']}`."]
    lines = [f"Test split, int8 model, every class (verdict by the screening rule; "
             f"{card['variants']['int8']['metrics']['class_accuracy']:.2%} of verdicts are the "
             "true class). Rows true, columns the verdict:", "",
             "| true \\ verdict | " + " | ".join(labels) + " | images | one-vs-rest ROC AUC | "
             "sensitivity | specificity |",
             "|---|" + "---:|" * (len(labels) + 4)]
    for label, row in zip(labels, measured["class_confusion_matrix"]):
        per = measured["per_class"][label]
        lines.append(f"| {label} | " + " | ".join(str(v) for v in row)
                     + f" | {per['n']} | {per['roc_auc']:.4f} | {_pct(per['sensitivity'])} | "
                     f"{_pct(per['specificity'])} |")
    return lines


TRAINING_PICTURES = {"curves": "training_curves.png", "confusion matrix": "confusion_matrix.png",
                     "test predictions": "test_predictions.png"}


def render(card: dict, training_pictures=tuple(TRAINING_PICTURES)) -> str:
    """The card as Markdown; training_pictures: the names (keys of TRAINING_PICTURES) to link
    (an averaged run has no curves)."""
    lines = [
        f"# Model card: {card['name']} {card['version']}",
        "",
        f"> **{card['disclaimer']}**",
        "",
        f"Task: {card['task']}. Architecture: {card['architecture']}.",
        f"Labels: {', '.join(card['labels'])} (positive: **{card['positive_label']}**). "
        f"Output: {card['output']}.",
        "",
        *_behaviour(card),
        *_unknowns(card),
        "## Decision threshold",
        "",
        (f"COVID if probability >= **{card['threshold']:.4f}**: {card['threshold_rule']}."
         if len(card["labels"]) == 2 else
         f"**{card['positive_label']}** if P({card['positive_label']}) >= "
         f"**{card['threshold']:.4f}**, otherwise the most probable of "
         f"{', '.join(l for l in card['labels'] if l != card['positive_label'])}: "
         f"{card['threshold_rule']}."),
        *_calibrated_threshold(card),
        "",
        *_guard(card),
        *_calibration(card),
        "## Variants, measured on the test split",
        "",
        f"Test split: {card['data']['split_counts']['test']['images']} images "
        f"({card['data']['split_counts']['test']['covid']} COVID), never seen in training or "
        "threshold selection. "
        + ("Accuracy, sensitivity and specificity are COVID against the rest at the threshold. "
           if len(card["labels"]) > 2 else "") + "Each file was run through the edge runtime "
        f"({card['variants']['int8']['runtime']}), the same code `covid-edge classify` uses.",
        "",
        "| variant | file | size | accuracy | ROC AUC | sensitivity | specificity | "
        "agreement with Keras | max abs. prob. difference |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, variant in card["variants"].items():
        measured = variant["metrics"]
        versus = variant["versus_keras"]
        lines.append(
            f"| {name} | `{variant['file']}` | {variant['bytes'] / 1e6:.2f} MB | "
            f"{_pct(measured['accuracy'])} | {measured['roc_auc']:.4f} | "
            f"{_pct(measured['sensitivity'])} | {_pct(measured['specificity'])} | "
            f"{_pct(versus['agreement'])} | {versus['max_abs_probability_difference']:.4f} |")
    keras_test = card["keras_metrics"]["test"]
    lines += [
        f"| Keras float (training) | `model.keras` (not shipped) | | "
        f"{_pct(keras_test['accuracy'])} | {keras_test['roc_auc']:.4f} | "
        f"{_pct(keras_test['sensitivity'])} | {_pct(keras_test['specificity'])} | | |",
        "",
    ]
    flips = card["variants"]["int8"]["versus_float32"]
    lines += [
        f"int8 vs float32 TFLite verdict agreement: {_pct(flips['agreement'])} "
        f"({len(flips['flipped'])} test images flip)"
        + ("; by true class: " + ", ".join(f"{label} {_pct(value)}" for label, value in
                                            flips["agreement_by_class"].items())
           if flips.get("agreement_by_class") else "") + ".",
        "",
        *_classes(card),
        "",
        "## Input specification",
        "",
        "| key | value |",
        "|---|---|",
    ]
    lines += [f"| {key} | {value} |" for key, value in card["preprocessing"].items()]
    int8 = card["variants"]["int8"]
    lines += [
        "",
        f"int8 input quantization: scale {int8['input_quantization']['scale']:.8f}, "
        f"zero point {int8['input_quantization']['zero_point']}; output: scale "
        f"{int8['output_quantization']['scale']:.8f}, zero point "
        f"{int8['output_quantization']['zero_point']}. Ops in the int8 graph: "
        f"{', '.join(int8['ops'])}.",
        "",
        "## Reference outputs (device check)",
        "",
        *_reference_lines(card["reference_outputs"]),
    ]
    data = card["data"]
    lines += [
        "",
        "## Data",
        "",
        f"{data['source']}.",
        f"Split: {data['split']}; counts: "
        + ", ".join(f"{name} {c['images']} ({c['covid']} COVID)"
                    for name, c in data["split_counts"].items()) + ".",
        f"Near-duplicates: {data['duplicate_groups']['groups']} groups holding "
        f"{data['duplicate_groups']['images']} images ({data['duplicate_groups']['method']}).",
        f"int8 calibration: {data['calibration_images']} training images.",
        f"Data content sha256: `{data['content_sha256']}`; MANIFEST.csv sha256: "
        f"`{data['manifest_sha256']}`.",
        "",
        "Training pictures: " + (", ".join(f"[{name}](training/{TRAINING_PICTURES[name]})"
                                           for name in training_pictures) or "none") + ".",
        "",
        "## Limits",
        "",
        f"- {_source_split(card)} come from different hospitals and collections (see the data "
        "README): part of what the model learned may be the source (scanner, text, markers, "
        "age) rather than the disease. Scores on this data do not show clinical value."
        + (f" Training painted random corners of {card['training']['corner_erase']:.0%} of the "
           "images flat grey (`--corner-erase`) to keep the side markers there from deciding "
           "the verdict; docs/explain.md in the covid-edge repository measures how far that "
           "worked (occlusion maps and a corner-blur test)."
           if (card.get("training") or {}).get("corner_erase") else ""),
        "- Image-level split: the data has no patient IDs, so one patient's images may fall on "
        "both sides; near-duplicates are grouped, other images of a patient are not.",
        _answers_limit(card),
        "",
        "## Files",
        "",
        "| file | bytes | sha256 |",
        "|---|---:|---|",
    ]
    lines += [f"| `{v['file']}` | {v['bytes']} | `{v['sha256']}` |"
              for v in card["variants"].values()]
    lines += _devices(card)
    lines += ["", "## Reproduce", "", "```"] + card["reproduce"] + ["```", ""]
    versions = ", ".join(f"{key} {value}" for key, value in card["versions"].items())
    lines += [f"Library versions: {versions}.", ""]
    return "\n".join(lines)


def _behaviour(card: dict) -> list[str]:
    """Other hospitals and other encodings, near the top where no reader can miss it
    (scripts/record_behaviour.py writes it from the bench sources/shift reports)."""
    summary = card.get(card_summary.CARD_KEY)
    if not summary:
        return []
    return card_summary.markdown(summary, link_prefix="../")


def _devices(card: dict) -> list[str]:
    """Which file is meant for which device (`covid-edge classify --device ...`)."""
    devices = card.get("devices")
    if not devices:
        return []
    lines = ["", "## Devices", "", "| device | file | |", "|---|---|---|",
             f"| CPU (`--device cpu`) | `{devices['cpu']}` | |"]
    edgetpu = card.get("edgetpu")
    if edgetpu and edgetpu.get("compiled"):
        lines.append(
            f"| Coral Edge TPU (`--device edgetpu`) | `{edgetpu['file']}` | compiled by "
            f"edgetpu_compiler {edgetpu.get('compiler_version')} from `{edgetpu['compiled_from']}`"
            f", needs Edge TPU runtime >= {edgetpu.get('min_runtime_version')}; "
            f"{edgetpu['bytes']} bytes, sha256 `{edgetpu['sha256']}` |")
    elif edgetpu:
        lines.append(f"| Coral Edge TPU (`--device edgetpu`) | `{edgetpu['file']}` | not "
                     f"compiled here ({edgetpu['static_check']}); make it with "
                     f"`{edgetpu['command']}` on an x86-64 Debian/Ubuntu machine |")
    if edgetpu:
        lines += ["", "The Edge TPU file is the int8 variant compiled: its metrics are the int8 "
                  "row above, measured on the CPU; the Edge TPU's outputs can differ from the "
                  "CPU's by rounding (see the reference outputs' tolerance)."]
    return lines


def _calibrated_threshold(card: dict) -> list[str]:
    calibration = card.get("calibration")
    if not calibration:
        return []
    return ["", "That is the model's own probability. People are shown the calibrated "
            f"probability (see 'Calibration') and the threshold on the same scale, "
            f"**{calibration['threshold']:.4f}**: the same decision."]


def _blur_words(blur: str | None) -> str:
    """The fine-detail blur a card names (guard.DETAIL_BLURS), in words; none named: the
    Gaussian every card before the box blur was fitted with."""
    return {"box-3": "radius-3 box blur (one pass)"}.get(blur or "", "radius-2 Gaussian blur")


def _per_group(guard: dict) -> str:
    """How the feature model is grouped: one model per label or one for all."""
    groups = guard.get("groups") or ["all"]
    if groups == ["all"]:
        return ""
    return f" per label, one model each for {', '.join(groups)} (the nearest counts)"


def _guard(card: dict) -> list[str]:
    guard = card.get("ood_guard")
    if not guard or "test" not in guard:
        return []
    checks = guard["image_checks"]
    fitted = guard["fitted_on"]
    test, other = guard["test"], guard["non_xray"]
    alone = other["feature_test_alone"]

    def by(counts: dict) -> str:
        return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())) or "none"

    lines = [
        "## Out-of-distribution guard",
        "",
        f"Before a verdict, `covid-edge classify`, `serve` and `kiosk` check that the image "
        f"looks like a chest X-ray; if not, the answer is **{guard['verdict']}** with a reason "
        "(`--no-guard` turns the guard off).",
        "",
        f"- Image checks, before the model runs: colourfulness (Hasler-Suesstrunk, on the "
        f"decoded file) above {checks['colourfulness_max']:g}; grey-level spread (standard "
        f"deviation of the model-size picture) below {checks['blank_std_min']:g}; aspect ratio "
        f"(width/height) outside {checks['aspect_ratio_min']:g}-{checks['aspect_ratio_max']:g}"
        + (f"; fine detail (mean absolute difference from a "
           f"{_blur_words(checks.get('detail_blur'))} over the "
           f"standard deviation: noise, gravel, print) above {checks['detail_max']:.3f} or "
           f"below {checks.get('detail_min') or 0:.3f} (a smooth gradient) "
           f"({guard['image_checks_fitted']})" if checks.get("detail_max") else "") + ".",
        f"- Feature test, after: {guard['features']}; probabilistic PCA with "
        f"{guard['components']} components{_per_group(guard)} "
        f"({_pct(guard['explained_variance'])} of the "
        f"variance) fitted on {fitted['train_images']} training images (of "
        f"{fitted['train_images_available']}); distance = Mahalanobis distance in those "
        "components plus the residual scaled by the mean variance of the others; refused above "
        f"**{guard['threshold']:.2f}**, the {_pct(guard['quantile'])} quantile of the "
        f"{fitted['validation_images']} validation X-rays' distances. Statistics: "
        f"`{guard['stats_file']}` ({guard['stats_bytes']} bytes, sha256 "
        f"`{guard['stats_sha256']}`).",
    ]
    tuning = guard.get("tuning")
    if tuning:
        lines += [
            f"- Number of components: {guard['components_chosen']}. Tuning set "
            f"({tuning['images']} images, {tuning['passed_image_checks']} of them past the image "
            "checks; none in the evaluation set below): "
            + "; ".join(f"{source}: {n}" for source, n in tuning["sources"].items()) + ".",
            "",
            "| components | threshold | tuning images refused by the feature test | closest "
            "one, distance / threshold |",
            "|---:|---:|---:|---:|",
        ] + [f"| {row['components']}{' (chosen)' if row.get('chosen') else ''} | "
             f"{row['threshold']:.2f} | {row['tuning_rejected']}/{row['tuning_images']} | "
             f"{row['closest_tuning_image_distance_over_threshold']:.2f} |"
             for row in tuning["candidates"]]
    lines += [
        "",
        "| measured on | images | result |",
        "|---|---:|---|",
        f"| validation X-rays (threshold chosen here) | {fitted['validation_images']} | "
        f"{_pct(guard['validation_acceptance'])} accepted |",
        f"| **test X-rays** | {test['images']} | **{_pct(test['acceptance'])} accepted** "
        f"(refused by: {by(test['rejected_by'])}) |",
        f"| **non-X-ray images**, whole guard | {other['images']} | "
        f"**{_pct(other['rejection'])} refused** (by: {by(other['rejected_by'])}) |",
        f"| non-X-ray images, feature test alone | {other['images']} | "
        f"{_pct(alone['rejection'])} refused |",
        "",
        "Non-X-ray images, the evaluation set (real, offline; never used to choose a setting; "
        "a grayscale copy of each colour image measures the feature test without the colour "
        "check): "
        + "; ".join(f"{source}: {n}" for source, n in other["sources"].items()) + ".",
    ]
    by_label = test.get("refused_by_label") or {}
    positives = card["data"]["split_counts"]["test"]["covid"]
    if by_label:
        lines.append(
            f"Test X-rays refused: {len(test.get('refused', []))} ("
            + ", ".join(f"{label} {n}" for label, n in sorted(by_label.items())) + "; listed "
            "in model_card.json). A refusal asks for another picture rather than answering "
            f"normal, but counted as a miss it would cost {by_label.get('covid', 0)} of the "
            f"{positives} COVID test cases ({_pct(by_label.get('covid', 0) / max(positives, 1))}"
            " points of sensitivity).")
    passed = [row["image"] for row in other["per_image"] if not row["rejected"]]
    lines.append("Accepted as chest X-rays (guard misses): "
                 + (", ".join(f"`{name}`" for name in passed) if passed else "none") + ".")
    lines += ["", f"Limits: {guard['limits']}", "",
              f"![feature distances]({guard['distance_histogram']})", ""]
    return lines


def _calibration(card: dict) -> list[str]:
    calibration = card.get("calibration")
    if not calibration:
        return []
    return [
        "## Calibration",
        "",
        f"The probability shown is sigmoid(logit(p) / T) with **T = "
        f"{calibration['temperature']:.3f}**, fitted on the {calibration['fitted_on']}. "
        "Temperature scaling is monotone, so verdicts do not change.",
        "",
        f"| {calibration['evaluated_on']} | ECE ({calibration['bins']} bins, P(covid)) | "
        "negative log-likelihood |",
        "|---|---:|---:|",
        f"| model output | {calibration['ece_before']:.4f} | {calibration['nll_before']:.4f} |",
        f"| calibrated | {calibration['ece_after']:.4f} | {calibration['nll_after']:.4f} |",
        "",
        f"![reliability diagram]({calibration['reliability_diagram']})",
        "",
    ]


def write_markdown(card: dict, directory: str | Path) -> Path:
    path = Path(directory) / CARD_MARKDOWN_FILENAME
    present = [name for name, file in TRAINING_PICTURES.items()
               if (Path(directory) / "training" / file).is_file()]
    path.write_text(render(card, present), encoding="utf-8")
    return path


def _reference_lines(reference: dict) -> list[str]:
    """The device check's reference: the tolerance (measured or fixed) and the samples' outputs,
    under each kernel set where the card has them."""
    tolerance = reference["tolerance"]
    measured = tolerance.get("measured")
    lines = [f"The int8 model's raw outputs on the bundled samples. A device reproduces the "
             f"reference when each differs by at most {tolerance['raw_output_steps']} output "
             f"steps ({tolerance['probability']:.4f} in probability) and gives the reference "
             "verdict (a sample within the tolerance of a verdict boundary may differ)."]
    if measured:
        pairs = "; ".join(f"{pair} {values['max_steps']} (p99 {values['p99_steps']:g})"
                          for pair, values in measured["pairs"].items())
        lines += ["", f"The tolerance is measured: the largest difference between LiteRT's "
                      f"int8 kernel sets ({', '.join(reference.get('kernel_sets', {}).values())})"
                      f" on the {measured['images_from']}, {measured['max_steps']} steps (99th "
                      f"percentile {measured['p99_steps']:g}; by pair: {pairs}), plus a noise "
                      f"floor of {measured['noise_floor_steps']}. Measured with "
                      f"{measured['runtime']} on {measured['host']}: `{measured['command']}`."]
    names = list(reference.get("kernel_sets") or {})
    lines += ["", "| image | label | raw int8 output | "
              + "".join(f"{name} | " for name in names) + "probability | verdict |",
              "|---|---|---:|" + "---:|" * len(names) + "---:|---|"]
    for ref in reference["images"]:
        by_kernels = ref.get("raw_by_kernel_set") or {}
        lines.append(f"| `{ref['file']}` | {ref['label']} | {ref['raw_output']} | "
                     + "".join(f"{by_kernels.get(name)} | " for name in names)
                     + f"{ref['probability']:.4f} | {ref['verdict']} |")
    return lines
