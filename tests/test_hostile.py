"""A hostile corpus (tests/hostile_corpus.py, generated here) through every front door:
`classify` (one-line errors, documented exit codes, JSON, lossless CSV, bounded memory, no
hang), an invalid model card, the kiosk loop and the server. 0 tracebacks, 0 hangs."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import cli_runner, subprocess_env
from covid_edge.cli import main
from covid_edge.limits import MAX_DECODE_BYTES
from covid_edge.model_card import load_card, write_json
import hostile_corpus

# The target for one `classify` run on any single input (the process, model included).
PEAK_RSS_LIMIT_MB = 400
CHILD_TIMEOUT_S = 180

# The child's own peak RSS: VmHWM belongs to the process image, so it is not inflated by the
# test process that forked it (ru_maxrss is, on Linux).
_RSS_DRIVER = (
    "import sys\n"
    "from covid_edge.cli import main\n"
    "try:\n    main(sys.argv[1:])\n"
    "finally:\n"
    "    try:\n"
    "        kb = int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))"
    ".split()[1])\n"
    "    except OSError:\n"
    "        import resource\n"
    "        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "    sys.stderr.write('\\nMAXRSS_KB=%d\\n' % kb)\n")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, covid_xray):
    root = tmp_path_factory.mktemp("hostile")
    files = hostile_corpus.build(root / "files", covid_xray)
    special = hostile_corpus.build_special(root / "special", covid_xray)
    return root, files, special


def run_child(*args, timeout=CHILD_TIMEOUT_S):
    """`covid-edge ARGS` in a child Python; (exit code, stdout, stderr, peak RSS in MB)."""
    result = subprocess.run([sys.executable, "-c", _RSS_DRIVER, *map(str, args)],
                            capture_output=True, env=subprocess_env(), timeout=timeout)
    stderr = result.stderr.decode("utf-8", "replace")
    peak = int(stderr.rsplit("MAXRSS_KB=", 1)[1].split()[0]) / 1024
    return result.returncode, result.stdout, stderr, peak


def test_classify_answers_every_hostile_input_in_one_bounded_run(corpus, tmp_path):
    root, files, special = corpus
    paths = [root / "files" / f.name for f in files] + [root / "special" / f.name
                                                          for f in special]
    out_csv = tmp_path / "out.csv"
    code, stdout, stderr, peak_mb = run_child("classify", *paths, "--json", "--csv", out_csv)
    assert "Traceback" not in stderr, stderr
    assert code == 1, stderr  # some inputs unreadable, the others answered
    document = json.loads(stdout)
    by_name = {Path(os.fsdecode(os.fsencode(r["path"]))).name: r for r in document["results"]}
    for entry in files + special:
        result = by_name[entry.name]
        if entry.expect is None:
            assert result["error"] is None and result["verdict"], (entry.name, result)
        else:
            assert result["error"] and entry.expect.lower() in result["error"].lower(), \
                (entry.name, result["error"])
            assert "\n" not in result["error"]
    assert peak_mb <= PEAK_RSS_LIMIT_MB, f"peak RSS {peak_mb:.0f} MB"
    # The name that is not UTF-8 comes back byte for byte in the CSV.
    with open(out_csv, newline="", encoding="utf-8", errors="surrogateescape") as handle:
        rows = list(csv.DictReader(handle))
    odd = [entry.name for entry in special if entry.expect is None][0]
    assert os.fsencode(odd) in {os.fsencode(row["path"]).rsplit(b"/", 1)[-1] for row in rows}
    assert len(rows) == len(paths)


def test_the_budget_is_checked_before_decoding(corpus):
    root, _, _ = corpus
    code, _, stderr, peak_mb = run_child("classify", root / "files" / "bomb-16bit-10000.png")
    assert code == 1 and "budget" in stderr
    # Refused from the header: far less than the 200 MB the pixels would take.
    assert peak_mb < 200 + (MAX_DECODE_BYTES >> 20) / 4, peak_mb


@pytest.mark.parametrize("args, code", [
    (["--threads", "0", "x.png"], 2),
    ([], 2),
    (["/nonexistent/a.png"], 2),
    (["--runtime", "nope", "x.png"], 2),
])
def test_classify_json_error_document_on_usage_errors(args, code):
    result = cli_runner().invoke(main, ["classify", "--json", *args])
    assert result.exit_code == code
    document = json.loads(result.stdout)
    assert document["exit_code"] == code and document["error"]


def _card_edit(path: str, value):
    def edit(card):
        *parents, key = path.split(".")
        target = card
        for parent in parents:
            target = target[parent]
        if value is _DELETE:
            del target[key]
        else:
            target[key] = value
    return edit


_DELETE = object()
BAD_CARDS = [
    ("threshold", float("nan")), ("threshold", 1e308), ("threshold", "0.5"),
    ("threshold", -0.1), ("positive_label", "tuberculosis"), ("labels", ["covid", "covid"]),
    ("labels", None), ("variants", None), ("variants", ["int8"]), ("ood_guard", None),
    ("ood_guard", []), ("ood_guard.image_checks", "strict"),
    ("ood_guard.image_checks.colourfulness_max", "high"),
    ("ood_guard.image_checks.detail_max", float("inf")),
    ("ood_guard.image_checks.detail_blur", "median-5"),
    ("ood_guard.stats_file", "../../etc/passwd"), ("preprocessing.height", 0),
    ("preprocessing.scale", None), ("preprocessing", [224, 224]),
    ("calibration.temperature", 0), ("calibration", "none"),
    ("variants.int8.file", "/tmp/x.tflite"),
]


@pytest.fixture(scope="module")
def model_copy(models_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    card = load_card(models_dir / "model_card.json")
    variant = card["variants"][card.get("default_variant", "int8")]["file"]
    shutil.copy(models_dir / variant, folder / variant)
    shutil.copy(models_dir / card["ood_guard"]["stats_file"], folder)
    return folder, card, variant


@pytest.mark.parametrize("field, value", BAD_CARDS, ids=[f"{f}={v!r}" for f, v in BAD_CARDS])
def test_invalid_model_card_is_exit_3_naming_the_field(model_copy, covid_xray, field, value):
    folder, card, variant = model_copy
    edited = json.loads(json.dumps(card))
    _card_edit(field, value)(edited)
    (folder / "model_card.json").write_text(json.dumps(edited))  # NaN/Infinity as JSON allows
    result = cli_runner().invoke(main, ["classify", str(covid_xray), "--model",
                                        str(folder / variant), "--json"])
    assert result.exit_code == 3, result.stdout
    document = json.loads(result.stdout)
    top = field.split(".")[0]
    assert top in document["error"], document["error"]
    assert "Traceback" not in result.stderr


def test_missing_guard_statistics_need_no_guard(model_copy, covid_xray, tmp_path):
    folder, card, variant = model_copy
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(folder / variant, bare / variant)
    write_json(card, bare)
    result = cli_runner().invoke(main, ["classify", str(covid_xray), "--model",
                                        str(bare / variant)])
    assert result.exit_code == 3 and "ood_stats.npz: missing" in result.stderr
    assert "--no-guard" in result.stderr
    result = cli_runner().invoke(main, ["classify", str(covid_xray), "--model",
                                        str(bare / variant), "--no-guard"])
    assert result.exit_code == 0


def test_a_fifo_named_like_an_image_does_not_hang(corpus):
    root, _, special = corpus
    if not any(entry.name == "pipe.png" for entry in special):
        pytest.skip("no named pipes here")
    result = cli_runner().invoke(main, ["classify", str(root / "special" / "pipe.png")])
    assert result.exit_code == 1 and "named pipe" in result.stderr


# -- the kiosk ---------------------------------------------------------------------------------

def test_kiosk_loop_survives_every_hostile_file_and_reports_each_once(corpus, models_dir,
                                                                        tmp_path, covid_xray):
    from covid_edge.edge_runtime.classifier import Classifier
    from covid_edge.kiosk.camera import FolderSource
    from covid_edge.kiosk.inference import SharedClassifier
    from covid_edge.kiosk.kiosk_loop import run_kiosk

    root, files, _ = corpus
    folder = tmp_path / "frames"
    folder.mkdir()
    shutil.copy(covid_xray, folder / "0-good.jpg")
    for name in ("truncated.jpg", "random.png", "bomb-16bit-10000.png", "claims-60000x60000.png"):
        shutil.copy(root / "files" / name, folder / name)
    huge = folder / "sparse-40GiB.png"
    with open(huge, "wb") as handle:
        handle.truncate(40 * 2**30)  # sparse: no disk used, but read whole it would be 40 GiB
    records = []
    shared = SharedClassifier(Classifier.load(models_dir))
    summary = run_kiosk(shared, FolderSource(folder), [lambda record, _: records.append(record)],
                        interval_s=0, count=14, stop=threading.Event())
    assert summary.frames == 14
    errors = [r["label"] for r in records if r["error"]]
    assert sorted(errors) == sorted(["truncated.jpg", "random.png", "bomb-16bit-10000.png",
                                     "claims-60000x60000.png", "sparse-40GiB.png"])
    good = [r for r in records if not r["error"]]
    assert len(good) >= 5 and all(r["label"] == "0-good.jpg" for r in good)
    assert any("limit" in r["error"] for r in records if r["label"] == "sparse-40GiB.png")


# -- the server --------------------------------------------------------------------------------

def test_server_answers_every_hostile_upload_without_a_5xx(corpus, models_dir):
    pytest.importorskip("fastapi", reason="needs the serve extra")
    from fastapi.testclient import TestClient

    from covid_edge.edge_runtime.classifier import Classifier
    from covid_edge.kiosk.inference import SharedClassifier
    from covid_edge.kiosk.server import create_app

    root, files, _ = corpus
    shared = SharedClassifier(Classifier.load(models_dir))
    with TestClient(create_app(shared), client=("127.0.0.1", 50000)) as client:
        for entry in files:
            data = (root / "files" / entry.name).read_bytes()
            response = client.post("/api/v1/classify",
                                   files={"file": (entry.name, data, "application/octet-stream")})
            if entry.expect is None:
                assert response.status_code == 200, (entry.name, response.text)
            else:
                assert response.status_code in (400, 413, 415, 422), (entry.name, response.text)
                if entry.category == "format":  # well formed, of a kind not read: send another
                    assert response.status_code == 415, (entry.name, response.text)
                assert entry.expect.lower() in response.json()["error"].lower() \
                    or entry.name == "empty.png", (entry.name, response.text)


def test_kiosk_folder_of_only_bad_files_ends_after_reporting_each_once(corpus, models_dir,
                                                                      tmp_path):
    from covid_edge.edge_runtime.classifier import Classifier
    from covid_edge.kiosk.camera import CameraUnavailable, FolderSource
    from covid_edge.kiosk.inference import SharedClassifier
    from covid_edge.kiosk.kiosk_loop import run_kiosk

    root, _, _ = corpus
    folder = tmp_path / "bad-only"
    folder.mkdir()
    for name in ("truncated.png", "picture.gif"):
        shutil.copy(root / "files" / name, folder / name.replace(".gif", ".png"))
    records = []
    # A source with nothing to show has stopped giving frames (exit 4 in the command); it
    # used to count idle polls as frames and spin at full speed with --interval 0.
    with pytest.raises(CameraUnavailable, match="none of its images can be read"):
        run_kiosk(SharedClassifier(Classifier.load(models_dir)), FolderSource(folder),
                  [lambda record, _: records.append(record)], interval_s=0, count=6)
    assert sorted(r["label"] for r in records) == ["picture.png", "truncated.png"]


@pytest.mark.parametrize("size", [(3000, 2000), (513, 1024), (4000, 7), (64, 64), (100, 30)])
def test_thumbnails_without_a_full_size_copy_are_pillows_thumbnails(size):
    """The colourfulness measure and the server's preview use thumbnail_of instead of
    copy().thumbnail() (a full-size copy of a large picture): the same pixels."""
    import numpy as np
    from PIL import Image

    from covid_edge.image_io import thumbnail_of

    picture = Image.fromarray(np.random.default_rng(5).integers(0, 256, size[::-1],
                                                                dtype=np.uint8))
    for side in (64, 512):
        expected = picture.copy()
        expected.thumbnail((side, side), Image.Resampling.BILINEAR)
        assert np.array_equal(np.asarray(thumbnail_of(picture, side)), np.asarray(expected))
