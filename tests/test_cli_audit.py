"""A hostile user's inputs to train, train-lungs, convert, convert-lungs, average, fit-guard,
export-onnx, serve and bench sources/shift/drift: each is refused with one line and the
project's exit code (2 usage, 3 model or file), before any expensive work, and nothing is
overwritten without --force. Real files, no mocks; each command runs in a child Python (the
training commands import TensorFlow, kept out of the test process)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import CXR, SHARED, WEIGHTS, subprocess_env
from covid_edge.tf_quiet import NOISE

LUNGS = SHARED / "data" / "lungs"


def covid_edge(*args, timeout=300):
    """`covid-edge ARGS`: (exit code, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "covid_edge.cli", *map(str, args)],
                          capture_output=True, text=True, env=subprocess_env(),
                          timeout=timeout)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def png(tmp_path, covid_xray):
    """A real PNG X-ray."""
    from PIL import Image

    path = tmp_path / "chest.png"
    Image.open(covid_xray).save(path)
    return path


def assert_refused(code, stderr, expected_code, *words):
    assert code == expected_code, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    for word in words:
        assert word in stderr, stderr[-2000:]


# --- train ----------------------------------------------------------------------------------

def test_train_out_under_a_file_is_a_usage_error(tmp_path, png):
    code, _, err = covid_edge("train", CXR, "--out", png / "run", "--weights", "none")
    assert_refused(code, err, 2, "--out", "is not a folder")


def test_train_missing_weights_file_is_refused_before_the_images_load(tmp_path):
    out = tmp_path / "run"
    code, _, err = covid_edge("train", CXR, "--out", out, "--weights", tmp_path / "nope.h5")
    assert_refused(code, err, 2, "--weights", "no such file")
    assert not out.exists()  # nothing written: refused before the run folder was made


def test_train_weights_that_are_not_hdf5_are_a_file_error(tmp_path, png):
    weights = tmp_path / "weights.h5"
    shutil.copy(png, weights)
    code, _, err = covid_edge("train", CXR, "--out", tmp_path / "run", "--weights", weights)
    assert_refused(code, err, 3, "not a Keras weights file")


@pytest.mark.parametrize("content", ["png", "a,b\n1,2\n"])
def test_train_split_from_that_is_no_split_csv_is_a_usage_error(tmp_path, png, content):
    split = tmp_path / "split.csv"
    if content == "png":
        shutil.copy(png, split)
    else:
        split.write_text(content)
    code, _, err = covid_edge("train", CXR, "--out", tmp_path / "run", "--weights", "none",
                              "--split-from", split)
    assert_refused(code, err, 2, "--split-from", "is not a split.csv")


@pytest.mark.train
def test_train_unknown_validation_source_is_refused_before_the_images_load(tmp_path):
    pytest.importorskip("tensorflow", reason="needs the [train] extra")
    out = tmp_path / "run"
    code, _, err = covid_edge("train", CXR, "--out", out, "--weights", "none",
                              "--validation-source", "nowhere")
    assert_refused(code, err, 2, "--validation-source", "nowhere: no such source")
    assert not (out / "split.csv").exists()


@pytest.mark.train
def test_train_unknown_fine_tune_layer_is_refused_before_training(tmp_path):
    pytest.importorskip("tensorflow", reason="needs the [train] extra")
    out = tmp_path / "run"
    code, _, err = covid_edge("train", CXR, "--out", out, "--weights", "none",
                              "--fine-tune-from", "no_such_layer")
    assert_refused(code, err, 2, "--fine-tune-from", "no layer 'no_such_layer'")
    assert not (out / "split.csv").exists()


@pytest.mark.train
def test_train_failing_on_its_data_leaves_no_empty_out_folder(tmp_path):
    """Train makes --out before reading the images: a failure there removes the folders it
    made (here new/ and new/run), never one that was there before."""
    pytest.importorskip("tensorflow", reason="needs the [train] extra")
    empty = tmp_path / "data"
    empty.mkdir()
    code, _, err = covid_edge("train", empty, "--out", tmp_path / "new" / "run",
                              "--weights", "none")
    assert_refused(code, err, 1, "no images")
    assert not (tmp_path / "new").exists()
    there = tmp_path / "there"
    there.mkdir()
    code, _, err = covid_edge("train", empty, "--out", there, "--weights", "none")
    assert_refused(code, err, 1, "no images")
    assert there.is_dir()


# --- train-lungs ----------------------------------------------------------------------------

def test_train_lungs_out_under_a_file_is_a_usage_error(png):
    code, _, err = covid_edge("train-lungs", LUNGS, "--out", png / "run")
    assert_refused(code, err, 2, "--out", "is not a folder")


def test_train_lungs_pack_never_replaces_a_file(tmp_path, png):
    before = png.read_bytes()
    code, _, err = covid_edge("train-lungs", LUNGS, "--pack", png)  # not .npz: numpy adds it
    assert_refused(code, err, 2, "--pack", ".npz")
    pack = tmp_path / "lungs.npz"
    pack.write_bytes(b"an earlier pack")
    code, _, err = covid_edge("train-lungs", LUNGS, "--pack", pack)
    assert_refused(code, err, 2, "--pack", "exists; pass --force")
    assert pack.read_bytes() == b"an earlier pack"
    assert png.read_bytes() == before
    assert not (tmp_path / "chest.png.npz").exists()


def test_train_lungs_pack_under_a_file_is_a_usage_error(png):
    code, _, err = covid_edge("train-lungs", LUNGS, "--pack", png / "lungs.npz")
    assert_refused(code, err, 2, "--pack", "cannot write")


@pytest.mark.parametrize("option, value, words", [
    ("--learning-rate", "-1", ["--learning-rate"]),
    ("--image-size", "100", ["--image-size", "divisible"]),
])
def test_train_lungs_nonsense_numbers_are_usage_errors(tmp_path, option, value, words):
    code, _, err = covid_edge("train-lungs", LUNGS, "--out", tmp_path / "run", option, value)
    assert_refused(code, err, 2, *words)
    assert not (tmp_path / "run").exists()


def test_train_lungs_data_npz_that_is_no_pack_is_a_file_error(tmp_path, png):
    fake = tmp_path / "lungs.npz"
    shutil.copy(png, fake)
    code, _, err = covid_edge("train-lungs", fake, "--out", tmp_path / "run")
    assert_refused(code, err, 3, "not a pack")
    assert "pickle" not in err


@pytest.mark.train
def test_train_lungs_too_few_pairs_for_a_part_is_refused_with_the_counts(tmp_path):
    """One pair per source gives validation none (a source gives it a pair from two up), which
    Keras met with "PyDataset has length 0" after loading: refused from the sources alone,
    before any folder is made. A pack of that size, quiet (TensorFlow imports to pack it)."""
    pytest.importorskip("keras", reason="needs the [train] extra")
    pack = tmp_path / "tiny.npz"
    code, _, err = covid_edge("train-lungs", LUNGS, "--pack", pack, "--limit-per-source", 1,
                              "--image-size", 32)
    assert code == 0, err[-2000:]
    assert not [noise for noise in NOISE if noise in err], err[-2000:]
    out = tmp_path / "new" / "run"
    code, _, err = covid_edge("train-lungs", pack, "--out", out, "--image-size", 32)
    assert_refused(code, err, 1, "too few lung pairs to train: train 4, val 0")
    code, _, err = covid_edge("train-lungs", LUNGS, "--out", out, "--limit-per-source", 1,
                              "--hold-out", "jsrt")
    assert_refused(code, err, 1, "train 3, val 0, test 1", "--limit-per-source")
    assert not (tmp_path / "new").exists()


@pytest.mark.train
def test_convert_lungs_hides_tensorflow_log_lines_unless_verbose(tmp_path):
    """As convert does: TensorFlow's start-up lines only with --verbose (the run fails after
    TensorFlow has loaded: its run.json is no train-lungs run's)."""
    pytest.importorskip("tensorflow", reason="needs the [train] extra")
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    with zipfile.ZipFile(run / "model.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    args = ["convert-lungs", run, "--data", LUNGS, "--out", tmp_path / "int8"]
    code, _, quiet = covid_edge(*args)
    assert_refused(code, quiet, 1)
    assert not [noise for noise in NOISE if noise in quiet], quiet[-2000:]
    assert not (tmp_path / "int8").exists()  # failed after TensorFlow loaded: no empty --out
    code, _, verbose = covid_edge(*args, "--verbose")
    assert_refused(code, verbose, 1)
    if not [noise for noise in NOISE if noise in verbose]:
        pytest.skip("TensorFlow writes none of its start-up lines here")


# --- convert --------------------------------------------------------------------------------

def test_convert_model_that_is_no_keras_file_is_a_file_error(tmp_path, png):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(png, run / "model.keras")
    (run / "run.json").write_text("{}")
    code, _, err = covid_edge("convert", run / "model.keras", "--out", tmp_path / "export")
    assert_refused(code, err, 3, "is not a Keras model")


def test_convert_out_under_a_file_is_a_usage_error(tmp_path, png):
    model = tmp_path / "model.keras"
    model.write_bytes(b"PK\x03\x04")
    code, _, err = covid_edge("convert", model, "--out", png / "export")
    assert_refused(code, err, 2, "--out", "is not a folder")


@pytest.mark.parametrize("command", ["convert", "fit-guard"])
def test_non_xray_folder_without_images_is_a_usage_error(tmp_path, command):
    empty = tmp_path / "photos"
    empty.mkdir()
    (empty / "notes.txt").write_text("no image here")
    if command == "convert":
        model = tmp_path / "model.keras"
        model.write_bytes(b"PK\x03\x04")
        args = [model, "--out", tmp_path / "export"]
    else:
        args = [tmp_path]
    code, _, err = covid_edge(command, *args, "--non-xray", empty)
    assert_refused(code, err, 2, "--non-xray", "holds no")


@pytest.fixture
def not_keras_models(tmp_path, png):
    """Files a user may take for a Keras model, by name: HDF5 weights without a model (as a
    .keras and as a .h5 file) and a zip of something else renamed .keras."""
    folder = tmp_path / "not-models"
    folder.mkdir()
    shutil.copy(WEIGHTS, folder / "weights.keras")
    shutil.copy(WEIGHTS, folder / "weights.h5")
    with zipfile.ZipFile(folder / "photos.keras", "w") as archive:
        archive.write(png, "chest.png")
    return {"weights.keras": (folder / "weights.keras", "HDF5"),
            "weights.h5": (folder / "weights.h5", "no model_config"),
            "photos.keras": (folder / "photos.keras", "without the config.json")}


@pytest.mark.parametrize("name", ["weights.keras", "weights.h5", "photos.keras"])
def test_convert_hdf5_weights_or_a_renamed_zip_is_a_file_error(tmp_path, not_keras_models,
                                                               name):
    model, why = not_keras_models[name]
    (model.parent / "run.json").write_text("{}")
    code, _, err = covid_edge("convert", model, "--out", tmp_path / "export")
    assert_refused(code, err, 3, "is not a Keras model", why)
    assert not (tmp_path / "export").exists()


def _run_folder(folder, model, labels=("normal", "covid")):
    """A run folder as train writes it, around `model`: run.json, split.csv, model.keras."""
    from covid_edge.preprocess import PreprocessSpec

    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({
        "labels": list(labels), "positive_label": "covid", "data_dir": str(CXR),
        "preprocessing": PreprocessSpec(height=224, width=224, channels=3).to_dict(),
        "config": {"data_dir": str(CXR)}}))
    (folder / "split.csv").write_text("path,label,group,split\n"
                                      "covid/a.png,covid,0,train\nnormal/b.png,normal,1,val\n")
    shutil.copy(model, folder / "model.keras")
    return folder


def test_average_and_start_from_refuse_a_model_keras_that_is_not_one(tmp_path,
                                                                       not_keras_models):
    weights, _ = not_keras_models["weights.keras"]
    photos, _ = not_keras_models["photos.keras"]
    runs = [_run_folder(tmp_path / "a", weights), _run_folder(tmp_path / "b", photos)]
    code, _, err = covid_edge("average", *runs, "--out", tmp_path / "avg")
    assert_refused(code, err, 3, "a/model.keras is not a Keras model", "HDF5")
    assert not (tmp_path / "avg").exists()
    code, _, err = covid_edge("train", CXR, "--out", tmp_path / "run", "--weights", "none",
                              "--start-from", runs[1])
    assert_refused(code, err, 3, "b/model.keras is not a Keras model", "config.json")
    assert not (tmp_path / "run").exists()
    code, _, err = covid_edge("train", CXR, "--out", tmp_path / "run", "--weights", "none",
                              "--start-from", tmp_path / "a" / "..")
    assert_refused(code, err, 2, "holds no model.keras", "--start-from")
    assert not (tmp_path / "run").exists()


@pytest.mark.train
def test_convert_a_model_keras_cannot_load_is_a_file_error_and_leaves_no_folder(tmp_path):
    """Past the checks of the file (a zip with a config.json), Keras' own refusal is one line
    with exit 3, and the --out folders convert made for it are gone; one that was there
    stays."""
    pytest.importorskip("tensorflow", reason="needs the [train] extra")
    fake = tmp_path / "fake.keras"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("config.json", "{}")
    run = _run_folder(tmp_path / "run", fake)
    code, _, err = covid_edge("convert", run / "model.keras", "--out", tmp_path / "new" / "export")
    assert_refused(code, err, 3, "Keras cannot load it")
    assert not (tmp_path / "new").exists()
    there = tmp_path / "there"
    there.mkdir()
    code, _, err = covid_edge("convert", run / "model.keras", "--out", there)
    assert_refused(code, err, 3, "Keras cannot load it")
    assert there.is_dir()


# --- convert-lungs --------------------------------------------------------------------------

def test_convert_lungs_refuses_what_is_no_run_or_fold_before_writing(tmp_path, png):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    shutil.copy(png, run / "model.keras")
    out = tmp_path / "int8"
    code, out_text, err = covid_edge("convert-lungs", run, "--data", LUNGS, "--out", out,
                                     "--json")
    assert_refused(code, err, 3, "is not a Keras model")
    assert '"exit_code": 3' in out_text  # --json: the failure is JSON too
    fold = tmp_path / "fold"
    fold.mkdir()
    code, out_text, err = covid_edge("convert-lungs", run, "--data", LUNGS, "--out", out,
                                     "--loso", fold, "--json")
    assert_refused(code, err, 2, "--loso", "holds no leave-one-source-out conversion")
    assert '"exit_code": 2' in out_text
    code, _, err = covid_edge("convert-lungs", run, "--data", LUNGS, "--out", png / "int8")
    assert_refused(code, err, 2, "--out", "is not a folder")
    assert not out.exists()


def test_convert_lungs_model_keras_that_is_hdf5_weights_is_a_file_error(tmp_path,
                                                                        not_keras_models):
    run = tmp_path / "lungs-run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    shutil.copy(not_keras_models["weights.keras"][0], run / "model.keras")
    code, out_text, err = covid_edge("convert-lungs", run, "--data", LUNGS, "--out",
                                     tmp_path / "int8", "--json")
    assert_refused(code, err, 3, "is not a Keras model", "HDF5")
    assert '"exit_code": 3' in out_text


def test_convert_lungs_data_npz_that_is_no_pack_is_a_file_error(tmp_path, png):
    fake = tmp_path / "lungs.npz"
    shutil.copy(png, fake)
    code, _, err = covid_edge("convert-lungs", tmp_path, "--data", fake, "--out",
                              tmp_path / "int8")
    assert_refused(code, err, 3, "not a pack")


# --- average --------------------------------------------------------------------------------

def test_average_out_under_a_file_is_a_usage_error(tmp_path, png):
    runs = []
    for name in ("a", "b"):
        run = tmp_path / name
        run.mkdir()
        runs.append(run)
    code, _, err = covid_edge("average", *runs, "--out", png / "avg")
    assert_refused(code, err, 2, "--out", "is not a folder")


# --- fit-guard ------------------------------------------------------------------------------

def test_fit_guard_data_without_the_split_images_says_so(tmp_path, models_dir):
    folder = tmp_path / "models"
    (folder / "training").mkdir(parents=True)
    shutil.copy(models_dir / "model_card.json", folder)
    shutil.copy(models_dir / "training" / "split.csv", folder / "training")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = covid_edge("fit-guard", folder, "--force", "--data", f"cxr={empty}",
                              "--data", f"cxr-more={empty}")
    assert_refused(code, err, 1, "holds none of training/split.csv's images", "--data")


# --- export-onnx ----------------------------------------------------------------------------

def test_export_onnx_never_replaces_a_file_without_force_nor_the_model(tmp_path, png,
                                                                       models_dir):
    before = png.read_bytes()
    code, out_text, err = covid_edge("export-onnx", models_dir, "--data", CXR, "--out", png,
                                     "--json")
    assert_refused(code, err, 2, "--out", "exists; pass --force")
    assert '"exit_code": 2' in out_text
    assert png.read_bytes() == before
    code, _, err = covid_edge("export-onnx", models_dir / "covid-edge-int8.tflite", "--data",
                              CXR, "--out", models_dir / "covid-edge-int8.tflite", "--force")
    assert_refused(code, err, 2, "is the model to export")
    code, _, err = covid_edge("export-onnx", models_dir, "--data", CXR, "--out",
                              png / "model.onnx")
    assert_refused(code, err, 2, "--out", "is not a folder")


def test_export_onnx_failures_are_json_with_their_exit_code(tmp_path, png, models_dir):
    fake = tmp_path / "model.tflite"
    shutil.copy(png, fake)
    code, out_text, err = covid_edge("export-onnx", fake, "--data", CXR, "--json")
    assert_refused(code, err, 3, "not a TensorFlow Lite model")
    assert '"exit_code": 3' in out_text
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out_text, err = covid_edge("export-onnx", models_dir, "--data", empty, "--json",
                                     "--out", tmp_path / "m.onnx")
    assert_refused(code, err, 2, "no image to check the export on")
    assert '"exit_code": 2' in out_text


def test_advice_to_export_again_says_force(tmp_path, png):
    """export-onnx replaces an export only with --force: the runtime's advice to run it again,
    given beside an export, says so (else the rerun is refused)."""
    onnx = tmp_path / "covid-edge-int8.onnx"
    onnx.write_bytes(b"an export")
    sidecar = tmp_path / "covid-edge-int8.onnx.json"
    cases = [(None, "is missing beside"), ("{not json", "unreadable")]
    if importlib.util.find_spec("onnxruntime") is not None:  # the backend is chosen first
        here = {"isa": None, "int8_kernels": "no such kernels", "float_kernels": None}
        cases += [({"agreement": {"runtimes": {}}}, "not checked with onnxruntime"),
                  ({"agreement": {"host": here, "runtimes": {
                      "onnxruntime": {"verdict_agreement": 1.0}}}}, "on this host")]
    for content, words in cases:
        if content is None:
            sidecar.unlink(missing_ok=True)
        else:
            sidecar.write_text(content if isinstance(content, str) else json.dumps(content))
        code, _, err = covid_edge("classify", png, "--model", onnx, "--runtime", "onnxruntime")
        assert_refused(code, err, 3, words, "`covid-edge export-onnx --force`")


# --- bench sources / shift / drift ----------------------------------------------------------

@pytest.mark.parametrize("benchmark", ["sources", "shift", "drift"])
def test_bench_out_that_cannot_be_written_is_a_usage_error_before_measuring(png, benchmark):
    code, out_text, err = covid_edge("bench", benchmark, CXR, "--limit", 1, "--out",
                                     png / "report", "--json")
    assert_refused(code, err, 2, "cannot write the report there")
    assert '"exit_code": 2' in out_text and '"schema"' not in out_text  # nothing measured


def test_bench_drift_failures_are_json_under_json(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out_text, err = covid_edge("bench", "drift", CXR, "--models", empty, "--json")
    assert_refused(code, err, 3, "cannot load the model", "no model card")  # as classify
    assert '"exit_code": 3' in out_text
    code, out_text, err = covid_edge("bench", "drift", CXR, "--limit", 0, "--json")
    assert_refused(code, err, 2, "--limit")
    assert '"exit_code": 2' in out_text


@pytest.mark.train
def test_bench_drift_keras_hides_tensorflow_log_lines_unless_verbose(tmp_path):
    """As train and convert do: --keras starts TensorFlow without its start-up lines; the
    failure (a zip that is no saved model) comes after TensorFlow has loaded."""
    pytest.importorskip("tensorflow", reason="needs the [train] extra")
    model = tmp_path / "model.keras"
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("config.json", "{}")
    args = ["bench", "drift", CXR, "--keras", model, "--limit", 1]
    code, _, quiet = covid_edge(*args)
    assert_refused(code, quiet, 3, "cannot load the model", "Keras cannot load it")
    assert not [noise for noise in NOISE if noise in quiet], quiet[-2000:]
    code, _, verbose = covid_edge(*args, "--verbose")
    assert_refused(code, verbose, 3)
    if not [noise for noise in NOISE if noise in verbose]:
        pytest.skip("TensorFlow writes none of its start-up lines here")


@pytest.mark.parametrize("what", ["png", "csv", "json"])
def test_bench_drift_latency_that_is_no_latency_report_is_a_usage_error(tmp_path, png, what):
    latency = {"png": png, "csv": tmp_path / "latency.csv", "json": tmp_path / "other.json"}[what]
    if what == "csv":
        latency.write_bytes("path,label\nbild-\xfc.png,covid\n".encode("latin-1"))
    elif what == "json":
        latency.write_text("[1, 2]")
    code, out_text, err = covid_edge("bench", "drift", CXR, "--latency", latency, "--json")
    assert_refused(code, err, 2, f"--latency {latency}", "not", "latency.json",
                   "covid-edge bench latency")
    assert "codec" not in err and "position" not in err  # no decoder's words
    assert '"exit_code": 2' in out_text


# --- serve ----------------------------------------------------------------------------------

def test_serve_on_an_address_of_no_interface_says_so_not_busy_port(models_dir, tmp_path):
    pytest.importorskip("uvicorn", reason="needs the [serve] extra")
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this device.
    uploads = tmp_path / "new" / "uploads"
    code, _, err = covid_edge("serve", "--model", models_dir, "--host", "192.0.2.1",
                              "--port", 0, "--save-uploads", uploads, timeout=60)
    assert_refused(code, err, 4, "cannot listen on 192.0.2.1", "not an address of this device")
    assert "another server" not in err
    assert not (tmp_path / "new").exists()  # a server that never started keeps no folder
