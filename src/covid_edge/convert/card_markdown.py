"""The readable twin of model_card.json, rendered from it (never edited by hand)."""

from __future__ import annotations

from pathlib import Path

from ..model_card import CARD_MARKDOWN_FILENAME


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def render(card: dict) -> str:
    lines = [
        f"# Model card: {card['name']} {card['version']}",
        "",
        f"> **{card['disclaimer']}**",
        "",
        f"Task: {card['task']}. Architecture: {card['architecture']}.",
        f"Labels: {', '.join(card['labels'])} (positive: **{card['positive_label']}**). "
        f"Output: {card['output']}.",
        "",
        "## Decision threshold",
        "",
        f"COVID if probability >= **{card['threshold']:.4f}**: {card['threshold_rule']}.",
        "",
        "## Variants, measured on the test split",
        "",
        f"Test split: {card['data']['split_counts']['test']['images']} images "
        f"({card['data']['split_counts']['test']['covid']} COVID), never seen in training or "
        "threshold selection. Each file was run through the edge runtime "
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
        f"({len(flips['flipped'])} test images flip).",
        "",
        "Test confusion matrix of the int8 model (rows true, columns predicted; normal, covid): "
        f"`{card['variants']['int8']['metrics']['confusion_matrix']}`.",
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
        f"The int8 model's raw outputs on the bundled samples. A device reproduces the reference "
        f"when each differs by at most {card['reference_outputs']['tolerance']['raw_output_steps']}"
        " output steps "
        f"({card['reference_outputs']['tolerance']['probability']:.4f} in probability).",
        "",
        "| image | label | raw int8 output | probability | verdict |",
        "|---|---|---:|---:|---|",
    ]
    lines += [f"| `{ref['file']}` | {ref['label']} | {ref['raw_output']} | "
              f"{ref['probability']:.4f} | {ref['verdict']} |"
              for ref in card["reference_outputs"]["images"]]
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
        "Training pictures: [curves](training/training_curves.png), "
        "[confusion matrix](training/confusion_matrix.png), "
        "[test predictions](training/test_predictions.png).",
        "",
        "## Limits",
        "",
        "- COVID and normal images come from different hospitals and collections (see the data "
        "README): part of what the model learned may be the source (scanner, text, markers, "
        "age) rather than the disease. Scores on this data do not show clinical value.",
        "- Image-level split: the data has no patient IDs, so one patient's images may fall on "
        "both sides; near-duplicates are grouped, other images of a patient are not.",
        "- Two classes only: other lung diseases, non-frontal views and non-X-ray images get a "
        "covid/normal answer anyway.",
        "",
        "## Files",
        "",
        "| file | bytes | sha256 |",
        "|---|---:|---|",
    ]
    lines += [f"| `{v['file']}` | {v['bytes']} | `{v['sha256']}` |"
              for v in card["variants"].values()]
    lines += ["", "## Reproduce", "", "```"] + card["reproduce"] + ["```", ""]
    versions = ", ".join(f"{key} {value}" for key, value in card["versions"].items())
    lines += [f"Library versions: {versions}.", ""]
    return "\n".join(lines)


def write_markdown(card: dict, directory: str | Path) -> Path:
    path = Path(directory) / CARD_MARKDOWN_FILENAME
    path.write_text(render(card), encoding="utf-8")
    return path
