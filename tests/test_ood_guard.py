"""The out-of-distribution guard: image checks, the feature distance, and `classify` with the
model under test on real photos, drawn frames, a document and real X-rays."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import CXR, CXR_MORE, REFERENCE, REPO_ROOT
from covid_edge.cli import main
from covid_edge.convert import non_xray
from covid_edge.convert.ood_fit import choose_components, fit, with_threshold
from covid_edge.edge_runtime.classifier import Classifier
from covid_edge.edge_runtime.display import REFUSED
from covid_edge.edge_runtime.guard import (NOT_CHEST_XRAY, OOD_STATS_FILENAME, FeatureDistance,
                                           Guard, GuardStatsError, ImageChecks, fine_detail)
from covid_edge.image_io import read_grayscale, read_image
from covid_edge.model_card import load_card, sha256_file, write_json

PHOTOS = REFERENCE / "photos"


def photos() -> list:
    if not PHOTOS.is_dir():
        pytest.skip(f"{PHOTOS} not found")
    found = sorted(PHOTOS.glob("*.jpg"))
    assert len(found) == 9
    return found


def run_cli(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args])


# -- reading colour -------------------------------------------------------------------------

def test_colourfulness_of_photos_and_xrays(covid_xray, normal_xray):
    for path in photos():
        assert read_image(path, (224, 224)).colourfulness > 15, path.name
    for path in (covid_xray, normal_xray):
        assert read_image(path, (224, 224)).colourfulness == 0.0


def test_colour_jpeg_gray_is_what_a_grayscale_decode_gives(tmp_path):
    """Measuring colour must not change the picture the model sees: a colour JPEG decoded as
    YCbCr gives the same Y plane as the old grayscale draft decode, at every draft scale."""
    rgb = Image.open(photos()[0]).convert("RGB").resize((1400, 1000))
    path = tmp_path / "colour.jpg"
    rgb.save(path, quality=90)
    for target in (96, 224, 700):
        with Image.open(path) as img:
            img.draft("L", (2 * target, 2 * target))
            expected = np.asarray(img.convert("L"))
        decoded = read_image(path, (target, target))
        np.testing.assert_array_equal(np.asarray(decoded.gray), expected)
        assert decoded.gray.mode == "L" and decoded.colourfulness > 15
        assert decoded.size == (1400, 1000)
    assert np.array_equal(np.asarray(read_grayscale(path, (224, 224))),
                          np.asarray(read_image(path, (224, 224)).gray))


def test_gray_picture_saved_as_rgb_is_not_colourful(tmp_path, normal_xray):
    path = tmp_path / "rgb-xray.png"
    Image.open(normal_xray).convert("RGB").save(path)
    assert read_image(path, (224, 224)).colourfulness == 0.0


# -- image checks ---------------------------------------------------------------------------

def test_image_checks():
    checks = ImageChecks()
    rng = np.random.default_rng(0)
    textured = rng.integers(0, 256, (96, 96), dtype=np.uint8)
    assert checks.reason(textured, 0.0, (1000, 1100)) is None
    assert checks.reason(textured) is None  # nothing known about the file: pixels only
    assert "colour" in checks.reason(textured, 40.0, (500, 500))
    for value in (0, 128, 255):
        assert "blank" in checks.reason(np.full((96, 96), value, np.uint8))
    assert "aspect ratio" in checks.reason(textured, 0.0, (2100, 1000))
    assert "aspect ratio" in checks.reason(textured, 0.0, (400, 1000))
    assert ImageChecks.from_dict({"blank_std_min": 200.0}).reason(textured).startswith("blank")
    # Fine detail: noise is refused once the card sets a limit; a smooth picture is not.
    fitted = ImageChecks.from_dict({"detail_max": 0.25})
    assert fitted.reason(textured).startswith("noise or fine texture")
    y, x = np.mgrid[0:96, 0:96]
    smooth = (128 + 60 * np.sin(x / 9.0) * np.cos(y / 13.0)).astype(np.uint8)
    assert fine_detail(smooth) < 0.1 and fitted.reason(smooth) is None
    ramp = np.repeat(np.linspace(0, 255, 96)[:, None], 96, axis=1).astype(np.uint8)
    assert ImageChecks(detail_min=0.01).reason(ramp).startswith("featureless")
    assert ImageChecks(detail_min=0.01).reason(smooth) is None
    assert ImageChecks.from_dict({"detail_max": None}).detail_max is None


def test_the_fine_detail_blur_is_the_cards():
    """A card names the blur its limits were fitted with; one that names none was fitted
    with the Gaussian and keeps it. What is fitted now, and round-trips, is the box blur."""
    from covid_edge import card_schema
    from covid_edge.edge_runtime import guard

    assert tuple(guard.DETAIL_BLURS) == card_schema.DETAIL_BLURS
    assert ImageChecks.from_dict({"detail_max": 0.25}).detail_blur == "gaussian-2"
    assert ImageChecks.from_dict(None).detail_blur == "gaussian-2"
    fitted = ImageChecks(detail_max=0.3)
    assert fitted.detail_blur == guard.DETAIL_BLUR == "box-3"
    assert ImageChecks.from_dict(fitted.to_dict()) == fitted
    with pytest.raises(ValueError, match="median-5"):
        ImageChecks(detail_blur="median-5")
    # The two measures differ, so each limit is read with its own blur.
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:224, 0:224]
    picture = np.clip(128 + 50 * np.sin(x / 7.0) + rng.normal(0, 6, x.shape), 0, 255
                      ).astype(np.uint8)
    box, gaussian = fine_detail(picture), fine_detail(picture, blur="gaussian-2")
    assert box != gaussian
    limit = (box + gaussian) / 2
    assert (ImageChecks(detail_max=limit).reason(picture) is None) != (
        ImageChecks(detail_max=limit, detail_blur="gaussian-2").reason(picture) is None)


# -- the feature distance -------------------------------------------------------------------

def gaussian_features(n: int, d: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.geomspace(3.0, 0.05, d)  # a few directions vary a lot, most little
    return 2.0 + rng.normal(size=(n, d)) * scales


def test_feature_distance_accepts_its_distribution_and_refuses_others(tmp_path):
    stats = fit(gaussian_features(2000), components=8)
    stats = with_threshold(stats, stats.distance(gaussian_features(1000, seed=1)), 0.99)
    held_out = stats.distance(gaussian_features(2000, seed=2))
    assert np.mean(held_out <= stats.threshold) >= 0.98
    # Shifted off the principal components (caught by the residual), or scaled along them.
    shifted = gaussian_features(200, seed=3)
    shifted[:, 8:] += 1.0
    assert np.mean(stats.distance(shifted) > stats.threshold) >= 0.99
    scaled = gaussian_features(200, seed=4) * 3.0
    assert np.mean(stats.distance(scaled) > stats.threshold) >= 0.99

    path = stats.save(tmp_path / OOD_STATS_FILENAME)
    assert path.stat().st_size < 1_000_000
    loaded = FeatureDistance.load(path)
    np.testing.assert_allclose(loaded.distance(shifted), stats.distance(shifted), rtol=1e-5)
    assert loaded.threshold == stats.threshold and loaded.quantile == 0.99


def test_one_model_per_label_refuses_what_lies_between_the_labels(tmp_path):
    """Two labels' features, far apart: one model of both also covers the space between
    them; one model per label (the nearest counts) refuses it, and accepts both labels."""
    a, b = gaussian_features(1000, seed=10), gaussian_features(1000, seed=11)
    b[:, :4] += 40.0
    train = np.concatenate([a, b])
    labels = np.array(["normal"] * 1000 + ["covid"] * 1000)
    val = np.concatenate([gaussian_features(500, seed=12), gaussian_features(500, seed=13)])
    val[500:, :4] += 40.0
    between = gaussian_features(200, seed=14)
    between[:, :4] += 20.0
    pooled = with_threshold(fit(train, components=8), fit(train, components=8).distance(val),
                            0.99)
    per_label = fit(train, components=8, labels=labels)
    per_label = with_threshold(per_label, per_label.distance(val), 0.99)
    assert per_label.groups == ("normal", "covid") and pooled.groups == ("all",)
    assert per_label.mean.shape == (2, 64) and per_label.components.shape == (2, 8, 64)
    assert np.mean(per_label.distance(between) > per_label.threshold) >= 0.99
    assert np.mean(pooled.distance(between) > pooled.threshold) <= 0.05
    held_out = np.concatenate([gaussian_features(500, seed=15), gaussian_features(500, seed=16)])
    held_out[500:, :4] += 40.0
    assert np.mean(per_label.distance(held_out) <= per_label.threshold) >= 0.98
    # Saved and loaded with its groups; one feature vector gives a float.
    loaded = FeatureDistance.load(per_label.save(tmp_path / OOD_STATS_FILENAME))
    assert loaded.groups == ("normal", "covid")
    np.testing.assert_allclose(loaded.distance(between), per_label.distance(between), rtol=1e-5)
    assert isinstance(loaded.distance(between[0]), float)
    with pytest.raises(ValueError, match="one label per"):
        fit(train, components=8, labels=labels[:10])


def test_a_statistics_file_from_before_the_groups_still_loads(tmp_path):
    """Release 0.2.0's ood_stats.npz holds one model without a groups array."""
    stats = fit(gaussian_features(500), components=4)
    path = tmp_path / OOD_STATS_FILENAME
    with open(path, "wb") as handle:
        np.savez(handle, mean=stats.mean[0].astype(np.float32),
                 components=stats.components[0].astype(np.float32),
                 variances=stats.variances[0], residual_variance=stats.residual_variance[0],
                 threshold=np.float64(10.0), quantile=np.float64(0.995))
    loaded = FeatureDistance.load(path)
    assert loaded.groups == ("all",) and loaded.component_count == 4
    probe = gaussian_features(20, seed=3)
    np.testing.assert_allclose(loaded.distance(probe), stats.distance(probe), rtol=1e-5)
    released = FeatureDistance.load(REPO_ROOT / "releases" / "0.2.0" / OOD_STATS_FILENAME)
    assert released.groups == ("all",)


def test_components_are_chosen_on_the_tuning_images():
    train, val = gaussian_features(2000), gaussian_features(1000, seed=1)
    # Off the distribution only along its weakest directions: the pooled residual variance of
    # a small model hides that; a model that keeps more directions sees it.
    tuning = gaussian_features(6, seed=5)
    tuning[:, -8:] += 1.0
    stats, rows = choose_components(train, val, tuning, candidates=(2, 8, 32), quantile=0.99)
    assert [row["components"] for row in rows] == [2, 8, 32]
    assert [row["tuning_images"] for row in rows] == [6, 6, 6]
    rejected = [row["tuning_rejected"] for row in rows]
    assert rejected[0] < rejected[-1] == 6
    chosen = [row for row in rows if row.get("chosen")]
    assert len(chosen) == 1 and chosen[0]["components"] == stats.component_count == 32
    assert np.mean(stats.distance(val) <= stats.threshold) >= 0.99  # the threshold rule holds
    # With one candidate there is nothing to choose.
    fixed, rows = choose_components(train, val, tuning, candidates=(8,), quantile=0.99)
    assert fixed.component_count == 8 and rows[0]["chosen"]


def test_guard_without_features_or_statistics_keeps_the_image_checks(tmp_path):
    card = {"ood_guard": {"stats_file": OOD_STATS_FILENAME}}
    guard = Guard.from_card(card, tmp_path, feature_dim=None)
    assert guard.features is None and "no feature output" in guard.notes[0]
    guard = Guard.from_card({}, tmp_path, feature_dim=1280)
    assert guard.features is None and "statistics" in guard.notes[0]


def test_guard_statistics_the_card_names_must_be_there_and_match(tmp_path):
    """A card that promises the feature test and a statistics file that is missing, damaged or
    substituted is an error (the commands offer --no-guard), never a quiet downgrade."""
    card = {"ood_guard": {"stats_file": OOD_STATS_FILENAME}}
    with pytest.raises(GuardStatsError, match="missing"):
        Guard.from_card(card, tmp_path, feature_dim=1280)
    (tmp_path / OOD_STATS_FILENAME).write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(GuardStatsError, match="cannot be read"):
        Guard.from_card(card, tmp_path, feature_dim=1280)
    stats = fit(gaussian_features(100), components=4)
    stats.save(tmp_path / OOD_STATS_FILENAME)
    guard = Guard.from_card(card, tmp_path, feature_dim=64)  # no sha256 to check: a note
    assert guard.features is not None and "sha256" in guard.notes[0]
    card["ood_guard"]["stats_sha256"] = sha256_file(tmp_path / OOD_STATS_FILENAME)
    assert not Guard.from_card(card, tmp_path, feature_dim=64).notes
    with pytest.raises(GuardStatsError, match="64 features"):
        Guard.from_card(card, tmp_path, feature_dim=32)  # wrong size
    card["ood_guard"]["stats_sha256"] = "0" * 64
    with pytest.raises(GuardStatsError, match="sha256"):
        Guard.from_card(card, tmp_path, feature_dim=64)


def test_non_xray_set_is_real_and_offline(tmp_path):
    images = non_xray.build(tmp_path, [PHOTOS] if PHOTOS.is_dir() else [])
    names = [image.name for image in images]
    assert len(names) == len(set(names))
    kinds = non_xray.sources(images)
    assert kinds["synthetic (drawn by covid-edge)"] == 9
    assert any(image.gray_copy for image in images)
    for image in images:
        assert image.path.is_file()


def test_tuning_set_shares_no_image_with_the_evaluation_set(tmp_path):
    evaluation = non_xray.build(tmp_path / "evaluation", [PHOTOS] if PHOTOS.is_dir() else [])
    tuning = non_xray.build_tuning(tmp_path / "tuning")
    kinds = non_xray.sources(tuning)
    assert kinds["patterns (drawn by covid-edge)"] == 4
    assert kinds["scikit-learn sample images (grayscale crops)"] == 4
    assert len(tuning) >= 15
    # Not the same file, and not the same picture drawn again: compare decoded pixels too.
    def fingerprints(images):
        return {sha256_file(image.path) for image in images}, {
            read_grayscale(image.path).resize((16, 16)).tobytes() for image in images}
    files_e, pixels_e = fingerprints(evaluation)
    files_t, pixels_t = fingerprints(tuning)
    assert not files_e & files_t and not pixels_e & pixels_t


# -- with the model under test ---------------------------------------------------------------

@pytest.fixture(scope="module")
def guarded_model(models_dir) -> Classifier:
    card = load_card(models_dir / "model_card.json")
    if "ood_guard" not in card:
        pytest.skip("the model under test was converted before the guard existed")
    return Classifier.load(models_dir)


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    folder = tmp_path_factory.mktemp("drawn")
    return {path.name: path for path in non_xray.synthetic_frames(folder)}


def test_model_has_a_feature_output_and_statistics(guarded_model, model_card):
    assert guarded_model.feature_details is not None
    assert guarded_model.guard.features is not None and not guarded_model.guard.notes
    entry = model_card["ood_guard"]
    assert entry["stats_sha256"] == sha256_file(guarded_model.model_path.parent
                                                / entry["stats_file"])
    assert guarded_model.guard.features.threshold == pytest.approx(entry["threshold"])


def test_guard_refuses_the_photos(guarded_model):
    for path in photos():
        prediction = guarded_model.classify_file(path)
        assert prediction.ok and prediction.verdict == NOT_CHEST_XRAY, path.name
        assert prediction.probability is None and prediction.reason


def test_guard_refuses_blank_frames_and_documents(guarded_model, drawn):
    for name in ("blank-black.png", "blank-white.png", "blank-grey.png",
                 "blank-grey-sensor-noise.png"):
        prediction = guarded_model.classify_file(drawn[name])
        assert prediction.verdict == NOT_CHEST_XRAY and "blank" in prediction.reason, name
    for name in ("document-a4.png", "document-screenshot.png"):
        prediction = guarded_model.classify_file(drawn[name])
        assert prediction.verdict == NOT_CHEST_XRAY, (name, prediction.ood_distance)


def test_guard_accepts_real_xrays(guarded_model, models_dir, some_xrays):
    """Held-out X-rays of the model's own test split (training/split.csv beside the card)."""
    split_csv = models_dir / "training" / "split.csv"
    tested = list(some_xrays)
    if split_csv.is_file():
        with open(split_csv, newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if row["split"] == "test"]
        # A model trained on several data folders names each row's folder (root column).
        folders = {"": CXR, "cxr": CXR, "cxr-more": CXR_MORE}
        tested += [folders[row.get("root") or ""] / row["path"]
                   for row in rows[::max(1, len(rows) // 60)]]
    verdicts = [guarded_model.classify_file(path) for path in tested]
    accepted = [p for p in verdicts if p.verdict in guarded_model.labels]
    assert len(accepted) >= 0.95 * len(tested), [(p.path, p.reason) for p in verdicts
                                                  if p.verdict == NOT_CHEST_XRAY]
    for prediction in accepted:
        assert prediction.ood_distance <= guarded_model.guard.features.threshold
        assert 0.0 <= prediction.probability <= 1.0


def test_classify_answers_not_a_chest_xray_with_a_reason(guarded_model, models_dir, covid_xray):
    photo = photos()[1]
    result = run_cli("classify", photo, covid_xray, "--model", models_dir, "--json")
    assert result.exit_code == 0, result.output  # a refusal is an answer, not a failure
    document = json.loads(result.stdout)
    refused, xray = document["results"]
    assert refused["verdict"] == NOT_CHEST_XRAY and refused["reason"]
    assert refused["probability"] is None and refused["raw_probability"] is None
    assert refused["error"] is None
    assert xray["verdict"] in ("covid", "normal") and xray["reason"] is None
    assert document["summary"]["not_chest_xray"] == 1 and document["summary"]["classified"] == 1
    assert document["model"]["guard"]["enabled"] and document["model"]["guard"]["feature_test"]

    human = run_cli("classify", photo, "--model", models_dir)
    assert human.exit_code == 0
    refused_row = next(line for line in human.stdout.splitlines() if str(photo) in line)
    assert refused_row.split()[0] == "refused"
    assert f"{REFUSED}: colour" in human.stdout and "1 refused" in human.stdout

    table = run_cli("classify", photo, "--model", models_dir, "--csv", "-")
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert rows[0]["verdict"] == NOT_CHEST_XRAY and rows[0]["reason"]


def test_no_guard_gives_a_verdict_for_a_photo(models_dir):
    photo = photos()[0]
    result = run_cli("classify", photo, "--model", models_dir, "--json", "--no-guard")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["results"][0]["verdict"] in ("covid", "normal")
    assert 0.0 <= document["results"][0]["probability"] <= 1.0
    assert not document["model"]["guard"]["enabled"]
    assert "guard" in run_cli("classify", "--help").stdout.lower()


def test_stats_file_that_does_not_match_the_card_is_an_error(guarded_model, models_dir,
                                                             tmp_path, covid_xray):
    card = load_card(models_dir / "model_card.json")
    entry = card["variants"][card.get("default_variant", "int8")]
    shutil.copy(models_dir / entry["file"], tmp_path / entry["file"])
    shutil.copy(models_dir / card["ood_guard"]["stats_file"], tmp_path / OOD_STATS_FILENAME)
    card["ood_guard"]["stats_sha256"] = "0" * 64
    write_json(card, tmp_path)
    result = run_cli("classify", covid_xray, "--model", tmp_path)
    assert result.exit_code == 3 and "sha256" in result.stderr and "--no-guard" in result.stderr
    assert run_cli("classify", covid_xray, "--model", tmp_path, "--no-guard").exit_code == 0


def test_the_readme_quotes_the_released_guard():
    """The README's guard table is the released card's `ood_guard` figures, not an older
    release's."""
    guard = load_card(REPO_ROOT / "models" / "model_card.json")["ood_guard"]
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    test, other = guard["test"], guard["non_xray"]
    assert (f"**{test['acceptance']:.2%}** ({test['accepted']}/{test['images']}; "
            f"{test['images'] - test['accepted']} refused") in readme
    assert (f"**{other['rejection']:.0%}** ({other['rejected']}/{other['images']}; the feature "
            f"test alone refuses {other['feature_test_alone']['rejected']})") in readme
    assert f"refused above the {guard['quantile']:.1%} quantile" in readme.lower()
