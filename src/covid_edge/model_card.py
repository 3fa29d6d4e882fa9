"""The model card: the contract between conversion and the device.

`covid-edge convert` writes `model_card.json` beside the .tflite files; the runtime reads the
preprocessing spec, labels and decision threshold from it, so training and device cannot drift.
This module is TensorFlow-free: the runtime imports it.
"""

from __future__ import annotations

import hashlib
import json
import mmap
from pathlib import Path

from .card_schema import CardSchemaError, validate
from .preprocess import PreprocessSpec

CARD_FILENAME = "model_card.json"
CARD_MARKDOWN_FILENAME = "MODEL_CARD.md"
SCHEMA_VERSION = 1
REQUIRED_KEYS = ("labels", "positive_label", "preprocessing", "threshold", "variants")
# The Edge-TPU-compiled file is not a variant (it has no metrics of its own: the device that
# could measure them is not where `convert` runs); the card describes it under "edgetpu" and
# names it in "devices". edgetpu_compiler writes X.tflite as X_edgetpu.tflite.
EDGETPU_VARIANT = "edgetpu"
EDGETPU_SUFFIX = "_edgetpu.tflite"


class ModelCardError(Exception):
    """A model card that is missing, unreadable or does not describe the model file."""


def released_models_dir() -> Path:
    """models/ of the repository, or its copy inside an installed wheel."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "_models", package.parent.parent / "models"):
        if (candidate / CARD_FILENAME).is_file():
            return candidate
    raise ModelCardError(
        "the released model is not installed with this copy of covid-edge; "
        "pass --model PATH/TO/model.tflite")


def load_card(path: str | Path) -> dict:
    path = Path(path)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelCardError(f"{path}: no model card here") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelCardError(f"{path}: not a readable model card ({exc})") from None
    if not isinstance(card, dict):
        raise ModelCardError(f"{path}: not a model card (a JSON object is expected)")
    missing = [key for key in REQUIRED_KEYS if key not in card]
    if missing:
        raise ModelCardError(f"{path}: model card lacks {', '.join(missing)}")
    try:
        validate(card)
    except CardSchemaError as exc:
        raise ModelCardError(f"{path}: invalid model card: {exc}") from None
    return card


def card_for_model(model_path: str | Path, card: dict | None = None) -> tuple[dict, str]:
    """The card beside `model_path` and the name of the variant that file is. `card`: that
    card when the caller has read it already (it is 87 kB of JSON: read once per load)."""
    model_path = Path(model_path)
    card_path = model_path.parent / CARD_FILENAME
    if card is None and not card_path.is_file():
        raise ModelCardError(
            f"no {CARD_FILENAME} beside {model_path}: covid-edge needs the model card that "
            "`covid-edge convert` writes next to the model to know its preprocessing and "
            "threshold")
    card = load_card(card_path) if card is None else card
    for name, variant in card["variants"].items():
        if variant.get("file") == model_path.name:
            return card, name
    if _is_compiled_variant(card, model_path.name):
        return card, EDGETPU_VARIANT
    raise ModelCardError(f"{card_path} does not describe {model_path.name}")


def _is_compiled_variant(card: dict, name: str) -> bool:
    """`name` is the card's Edge TPU file, or edgetpu_compiler's output for one of its
    variants (compiled after `convert`, on another machine, and copied back)."""
    if (card.get("devices") or {}).get(EDGETPU_VARIANT) == name:
        return True
    sources = {variant.get("file") for variant in card["variants"].values()}
    return name.endswith(EDGETPU_SUFFIX) and \
        name[:-len(EDGETPU_SUFFIX)] + ".tflite" in sources


def variant_entry(card: dict, name: str) -> dict:
    """The card's description of one model file: a variant, or the Edge TPU file."""
    if name in card["variants"]:
        return card["variants"][name]
    if name == EDGETPU_VARIANT:
        return card.get(EDGETPU_VARIANT) or {}
    return {}


def report_mismatch(described: dict, card: dict) -> str | None:
    """Why a report's model (its `describe()` dict) is not the model `card` describes, or
    None. Two conversions can share a name and version, so the file's sha256 decides where
    the report recorded one (reports from before it was recorded are checked by version)."""
    if (described.get("name"), described.get("version")) != (card.get("name"),
                                                               card.get("version")):
        return (f"made with {described.get('name')} {described.get('version')}, not the "
                f"card's {card.get('name')} {card.get('version')}")
    recorded = described.get("sha256")
    expected = variant_entry(card, described.get("variant") or "").get("sha256")
    if recorded and expected and recorded != expected:
        return (f"made with another {described.get('variant')} file (sha256 "
                f"{recorded[:12]}) than the card's ({expected[:12]}): run it again on this "
                "model")
    return None


def preprocess_spec(card: dict) -> PreprocessSpec:
    return PreprocessSpec.from_dict(card["preprocessing"])


def sha256_file(path: str | Path) -> str:
    """The file's sha256, hashed through a memory map: the pages LiteRT maps for the same
    model are shared and nothing is copied (half the time of reading it in blocks)."""
    with open(path, "rb") as handle:
        try:
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return hashlib.sha256(mapped).hexdigest()
        except (ValueError, OSError):  # empty, or a file that cannot be mapped
            digest = hashlib.sha256()
            handle.seek(0)
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
            return digest.hexdigest()


def write_json(card: dict, directory: str | Path) -> Path:
    path = Path(directory) / CARD_FILENAME
    path.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path
