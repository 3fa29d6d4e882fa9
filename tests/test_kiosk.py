"""`covid-edge kiosk`: the folder source end to end (terminal, JSON, a live server), the
picamera2 source against a stand-in module that keeps the real API's rules, and the messages
when a camera library is missing. Real LiteRT, real X-rays."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from covid_edge import DISCLAIMER
from conftest import REFERENCE, REPO_ROOT, subprocess_env
from covid_edge.cli import main
from covid_edge.edge_runtime.display import probability_text
from covid_edge.edge_runtime.guard import NOT_CHEST_XRAY
from covid_edge.edge_runtime.classifier import Classifier
from covid_edge.kiosk.camera import CameraUnavailable, FolderSource, bgr_to_picture, open_source
from covid_edge.kiosk.inference import SharedClassifier
from covid_edge.kiosk.kiosk_loop import KioskSummary, run_kiosk
from kiosk_helpers import copy_images, server_in_thread

STANDINS = Path(__file__).resolve().parent / "standins"
EXIT_OK, EXIT_USAGE, EXIT_MODEL, EXIT_UNAVAILABLE = 0, 2, 3, 4


@pytest.fixture(scope="module")
def classifier(models_dir) -> Classifier:
    return Classifier.load(models_dir)


@pytest.fixture
def frames_dir(tmp_path, some_xrays) -> Path:
    folder = tmp_path / "frames"
    copy_images(some_xrays, folder)
    return folder


@pytest.fixture
def unreadable_dir(tmp_path, covid_xray) -> Path:
    """Image names, nothing readable: an empty file, text named .png, half a JPEG."""
    folder = tmp_path / "unreadable"
    folder.mkdir()
    (folder / "a-empty.jpg").write_bytes(b"")
    (folder / "b-text.png").write_bytes(b"just text, not a picture\n")
    data = covid_xray.read_bytes()
    (folder / "c-truncated.jpg").write_bytes(data[:len(data) // 2])
    return folder


def kiosk(*args: str):
    return CliRunner().invoke(main, ["kiosk", *map(str, args)])


def json_lines(output: str) -> list[dict]:
    """--json output: every line one JSON document."""
    return [json.loads(line) for line in output.splitlines()]


def frame_lines(output: str) -> list[str]:
    lines = output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("time"))
    return lines[header + 1:]


# -- folder source -----------------------------------------------------------------------------

def test_folder_source_prints_one_line_per_frame_and_wraps_around(models_dir, classifier,
                                                                  frames_dir):
    (frames_dir / "99-not-an-xray.png").write_bytes(b"just text")
    photo = REFERENCE / "photos" / "cat.jpg"
    if photo.is_file():
        (frames_dir / "98-cat.jpg").write_bytes(photo.read_bytes())
    images = sorted(frames_dir.iterdir())
    result = kiosk("--source", f"folder:{frames_dir}", "--model", models_dir, "--interval", 0,
                   "--count", len(images) + 2, "--no-server")
    assert result.exit_code == EXIT_OK, result.output + result.stderr
    assert DISCLAIMER in result.stdout
    lines = frame_lines(result.stdout)
    # After the last image, the folder starts again without the file that failed; that file
    # got a line but is not a frame, so --count takes one more image.
    readable = [path for path in images if not path.name.startswith("99-")]
    order = images + readable[:3]
    assert len(lines) == len(order)
    limits = classifier.output_limits()
    for number, (line, path) in enumerate(zip(lines, order), start=1):
        fields = line.split()
        assert int(fields[1]) == number
        assert line.rstrip().endswith(path.name) or path.name in line
        if path.name.startswith("99-"):
            assert "unreadable (not an image covid-edge can read" in line
            continue
        expected = classifier.classify_file(path)
        if expected.verdict == NOT_CHEST_XRAY:  # the guard refused it, as classify does
            assert f"{NOT_CHEST_XRAY}: {expected.reason}  {path.name}" in line
            continue
        assert fields[2] == expected.verdict
        assert fields[3] == probability_text(expected.raw_probability, expected.probability,
                                             limits)
    assert f"{len(images) + 2} frame(s):" in result.stderr
    assert "1 unreadable" in result.stderr


def test_json_lines_carry_the_exact_probabilities(models_dir, classifier, frames_dir):
    result = kiosk("--source", f"folder:{frames_dir}", "--model", models_dir, "--interval", 0,
                   "--count", 3, "--no-server", "--json")
    assert result.exit_code == EXIT_OK, result.stderr
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["event"] for d in documents] == ["start", "frame", "frame", "frame", "summary"]
    assert documents[0]["disclaimer"] == DISCLAIMER
    images = sorted(frames_dir.iterdir())
    for document, path in zip(documents[1:4], images):
        expected = classifier.classify_file(path)
        assert document["label"] == path.name
        assert document["probability"] == pytest.approx(expected.probability, abs=1e-9)
        assert document["verdict"] == expected.verdict
        assert document["threshold"] == classifier.threshold
        assert document["source"] == f"folder:{frames_dir}"
    assert documents[-1]["frames"] == 3


def test_results_go_to_a_running_server(models_dir, classifier, frames_dir):
    pytest.importorskip("fastapi", reason="needs the serve extra")
    from covid_edge.kiosk.server import create_app

    shared = SharedClassifier(classifier)
    app = create_app(shared)
    with server_in_thread(app) as url:
        result = kiosk("--source", f"folder:{frames_dir}", "--model", models_dir,
                       "--interval", 0, "--count", 4, "--server", url, "--json")
        assert result.exit_code == EXIT_OK, result.stderr
        assert f"live page: {url}/kiosk" in result.stderr
        last = [json.loads(line) for line in result.stdout.splitlines()][-2]
        import urllib.request
        with urllib.request.urlopen(f"{url}/api/v1/kiosk/latest") as response:
            latest = json.load(response)
        assert latest["seq"] == 4
        frame = latest["frame"]
        assert (frame["frame"], frame["label"]) == (4, last["label"])
        assert frame["probability"] == pytest.approx(last["probability"], abs=1e-12)
        with urllib.request.urlopen(url + frame["preview_url"]) as response:
            picture = Image.open(io.BytesIO(response.read()))
            assert picture.format == "JPEG" and picture.mode == "L"


def test_no_server_running_means_terminal_only(models_dir, frames_dir):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed_port = probe.getsockname()[1]  # free once the with block ends
    result = kiosk("--source", f"folder:{frames_dir}", "--model", models_dir, "--interval", 0,
                   "--count", 3, "--server", f"http://127.0.0.1:{closed_port}")
    assert result.exit_code == EXIT_OK, result.stderr
    assert len(frame_lines(result.stdout)) == 3
    # Said once, not once per frame.
    assert result.stderr.count("no covid-edge serve at") == 1


def test_run_kiosk_stops_when_asked_and_closes_the_source(classifier, frames_dir):
    """The SIGTERM/Ctrl-C handler of `covid-edge kiosk` sets `stop`: the loop must end during
    its wait for the next frame (here an hour away) and close the source."""
    stop = threading.Event()
    seen = []
    closed = threading.Event()

    class WatchedFolder(FolderSource):
        def close(self):
            closed.set()
            super().close()

    def sink(record, preview):
        seen.append(record["frame"])
        threading.Timer(0.1, stop.set).start()

    outcome = {}
    loop = threading.Thread(target=lambda: outcome.update(summary=run_kiosk(
        SharedClassifier(classifier), WatchedFolder(frames_dir), [sink], interval_s=3600.0,
        stop=stop)))
    loop.start()
    loop.join(timeout=30)
    assert not loop.is_alive(), "the loop did not stop"
    assert seen == [1] and outcome["summary"].frames == 1
    assert closed.is_set()


def test_probabilities_read_as_in_every_other_command(models_dir, classifier, frames_dir):
    """display.probability_text, as classify's table: two decimals for an int8 model and
    ">0.99"/"<0.01" where its output saturates; never the third decimal, which is noise."""
    images = sorted(frames_dir.iterdir())
    result = kiosk("--source", f"folder:{frames_dir}", "--model", models_dir, "--interval", 0,
                   "--count", len(images), "--no-server")
    assert result.exit_code == EXIT_OK, result.stderr
    lines = frame_lines(result.stdout)
    limits = classifier.output_limits()
    others = [label for label in classifier.labels if label != classifier.positive_label] \
        if len(classifier.labels) > 2 else []
    for line, path in zip(lines, images, strict=True):
        expected = classifier.classify_file(path)
        if expected.verdict == NOT_CHEST_XRAY:
            continue
        shown, raw = expected.probabilities or {}, expected.raw_probabilities or {}
        wanted = [probability_text(expected.raw_probability, expected.probability, limits)]
        wanted += [probability_text(raw.get(label), shown.get(label), limits)
                   for label in others]
        assert line.split()[3:3 + len(wanted)] == wanted, line
    if limits is not None:  # the released int8 model
        columns = " ".join(" ".join(line.split()[3:-3]) for line in lines)
        assert not re.search(r"\d\.\d{3}", columns), columns
        assert "<0.01" in columns or ">0.99" in columns  # these X-rays saturate some class


def test_unreadable_files_are_not_frames(models_dir, frames_dir, unreadable_dir):
    """A folder with readable images goes on as before (wrap-around, each bad file reported
    once), but --count and the summary count frames classified, not files that failed."""
    for bad in unreadable_dir.iterdir():
        (frames_dir / f"50-{bad.name}").write_bytes(bad.read_bytes())
    images = sorted(frames_dir.iterdir())
    good = len(images) - 3
    count = good + 2
    result = kiosk("--source", f"folder:{frames_dir}", "--model", models_dir, "--interval", 0,
                   "--count", count, "--no-server", "--json")
    assert result.exit_code == EXIT_OK, result.stderr
    documents = json_lines(result.stdout)
    frames = [d for d in documents if d["event"] == "frame"]
    errors = [d["label"] for d in frames if d["error"]]
    assert sorted(errors) == [f"50-{name}" for name in sorted(p.name for p in
                                                             unreadable_dir.iterdir())]
    assert sum(not d["error"] for d in frames) == count
    assert [d["frame"] for d in frames] == list(range(1, count + 3 + 1))
    assert documents[-1] == {"event": "summary", "frames": count, "unreadable": 3,
                             "verdicts": documents[-1]["verdicts"]}
    assert sum(documents[-1]["verdicts"].values()) == count


def test_folder_of_only_unreadable_files_exits_4(models_dir, unreadable_dir):
    """The audit's case: every file fails. It used to print 3 records, then a summary of 50
    "frames" and exit 0 (47 of them invented while it waited at full speed)."""
    result = kiosk("--source", f"folder:{unreadable_dir}", "--model", models_dir,
                   "--count", 50, "--interval", 0, "--no-server", "--json")
    assert result.exit_code == EXIT_UNAVAILABLE, result.stdout
    documents = json_lines(result.stdout)
    assert [d["event"] for d in documents] == ["start", "frame", "frame", "frame", "error"]
    assert all(d["error"] for d in documents[1:4])
    last = documents[-1]
    assert last["exit_code"] == EXIT_UNAVAILABLE
    assert (last["frames"], last["unreadable"], last["verdicts"]) == (0, 3, {})
    assert "none of its images can be read" in last["error"]
    assert last["disclaimer"] == DISCLAIMER
    assert "none of its images can be read" in result.stderr


def test_folder_of_only_unreadable_files_ends_without_count(models_dir, unreadable_dir):
    """Without --count it used to loop for ever at full CPU. A child process, so that a
    regression fails on the timeout instead of hanging the suite."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "covid_edge", "kiosk", "--source", f"folder:{unreadable_dir}",
             "--model", str(models_dir), "--interval", "0", "--no-server"],
            capture_output=True, text=True, timeout=120, env=subprocess_env(), cwd=REPO_ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail("covid-edge kiosk kept going on a folder where nothing can be read")
    assert done.returncode == EXIT_UNAVAILABLE, done.stderr
    assert len(frame_lines(done.stdout)) == 3
    assert "0 frame(s): none classified; 3 unreadable." in done.stderr
    assert f"error: folder:{unreadable_dir}: " in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("spoil", ["corrupt", "delete"])
def test_folder_that_stops_giving_images_ends_the_loop(classifier, tmp_path, covid_xray, spoil):
    """A folder that worked can stop working: its only image overwritten with junk (a new
    file to try, which fails) or removed. The source ends (exit 4 in the command) and the
    summary passed in keeps the counts."""
    folder = tmp_path / "frames"
    folder.mkdir()
    image = folder / "frame.jpg"
    image.write_bytes(covid_xray.read_bytes())
    records = []

    def sink(record, preview):
        records.append(record)
        if len(records) == 2:
            if spoil == "corrupt":
                image.write_bytes(b"not a picture any more")
            else:
                image.unlink()

    summary = KioskSummary()
    with pytest.raises(CameraUnavailable) as raised:
        run_kiosk(SharedClassifier(classifier), FolderSource(folder), [sink], interval_s=0,
                  count=100, summary=summary)
    assert summary.frames == 2
    if spoil == "corrupt":
        assert "none of its images can be read" in str(raised.value)
        assert summary.unreadable == 1 and records[-1]["error"]
    else:
        assert "no image left" in str(raised.value)
        assert summary.unreadable == 0 and len(records) == 2


@pytest.mark.parametrize("case", ["missing folder", "missing model"])
def test_json_failures_end_with_an_error_record(models_dir, tmp_path, frames_dir, case):
    """--json used to stop after the start record (or print nothing) when the source or the
    model failed: a script reading stdout could not tell why."""
    if case == "missing folder":
        args = ["--source", f"folder:{tmp_path / 'nothing'}", "--model", models_dir]
        expected_events, code, reason = ["start", "error"], EXIT_UNAVAILABLE, "no such folder"
    else:
        args = ["--source", f"folder:{frames_dir}", "--model", tmp_path / "x.tflite"]
        expected_events, code, reason = ["error"], EXIT_MODEL, "cannot load the model"
    result = kiosk(*args, "--no-server", "--json")
    assert result.exit_code == code
    documents = json_lines(result.stdout)
    assert [d["event"] for d in documents] == expected_events
    assert documents[-1]["exit_code"] == code and reason in documents[-1]["error"]
    assert documents[-1]["disclaimer"] == DISCLAIMER
    assert reason in result.stderr  # the person still reads it on stderr


# -- picamera2 ---------------------------------------------------------------------------------

@pytest.fixture
def picamera2_standin(monkeypatch):
    monkeypatch.syspath_prepend(str(STANDINS))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    import picamera2
    assert Path(picamera2.__file__).is_relative_to(STANDINS)  # never a real camera library
    picamera2.reset()
    yield picamera2
    picamera2.reset()
    sys.modules.pop("picamera2", None)


def test_picamera2_source_end_to_end(models_dir, classifier, picamera2_standin, some_xrays):
    picamera2_standin.SCENE.extend(Image.open(path) for path in some_xrays[:3])
    width, height = Image.open(some_xrays[0]).size
    result = kiosk("--source", "picamera2", "--model", models_dir, "--interval", 0,
                   "--count", 3, "--warmup", 0, "--resolution", f"{width}x{height}",
                   "--no-server", "--json")
    assert result.exit_code == EXIT_OK, result.output + result.stderr
    frames = [json.loads(line) for line in result.stdout.splitlines()][1:-1]
    assert [f["label"] for f in frames] == [f"picamera2 frame {n}" for n in (1, 2, 3)]
    for frame, path in zip(frames, some_xrays):
        # A gray film seen by the camera at the X-ray's own size is the X-ray, pixel for pixel.
        expected = classifier.classify_file(path)
        assert frame["probability"] == pytest.approx(expected.probability, abs=1e-9)
        assert frame["verdict"] == expected.verdict
    assert picamera2_standin.CALLS == [
        "Picamera2(0)", "create_still_configuration", "configure", "start",
        "capture_array", "capture_array", "capture_array", "stop", "close"]


def test_picamera2_camera_failing_mid_run_exits_4_and_releases_it(models_dir,
                                                                  picamera2_standin, covid_xray):
    picamera2_standin.SCENE.append(Image.open(covid_xray))
    picamera2_standin.FAIL_AFTER = 2
    result = kiosk("--source", "picamera2", "--model", models_dir, "--interval", 0,
                   "--warmup", 0, "--no-server")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "stopped giving frames (Camera frontend has timed out!)" in result.stderr
    assert len(frame_lines(result.stdout)) == 2
    assert picamera2_standin.CALLS[-2:] == ["stop", "close"]


def test_picamera2_failing_mid_run_with_json_ends_with_an_error_record(models_dir,
                                                                       picamera2_standin,
                                                                       covid_xray):
    picamera2_standin.SCENE.append(Image.open(covid_xray))
    picamera2_standin.FAIL_AFTER = 2
    result = kiosk("--source", "picamera2", "--model", models_dir, "--interval", 0,
                   "--warmup", 0, "--no-server", "--json")
    assert result.exit_code == EXIT_UNAVAILABLE
    documents = json_lines(result.stdout)
    assert [d["event"] for d in documents] == ["start", "frame", "frame", "error"]
    last = documents[-1]
    assert last["exit_code"] == EXIT_UNAVAILABLE and last["frames"] == 2
    assert "stopped giving frames (Camera frontend has timed out!)" in last["error"]
    assert picamera2_standin.CALLS[-2:] == ["stop", "close"]


def test_picamera2_missing_camera_number(models_dir, picamera2_standin):
    result = kiosk("--source", "picamera2:1", "--model", models_dir, "--no-server")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "cannot open Raspberry Pi camera 1" in result.stderr
    assert "rpicam-hello --list-cameras" in result.stderr


def test_without_picamera2_the_message_says_how_to_install_it(models_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    result = kiosk("--source", "picamera2", "--model", models_dir, "--no-server")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "sudo apt install -y python3-picamera2" in result.stderr
    assert "--system-site-packages" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_without_opencv_a_v4l2_camera_says_what_to_install(models_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    result = kiosk("--source", "v4l2:/dev/video0", "--model", models_dir, "--no-server")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "opencv-python-headless" in result.stderr


# -- usage -------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--source", "webcam"], "unknown source 'webcam'"),
    (["--source", "folder:"], "folder: needs a folder"),
    (["--source", "picamera2:front"], "camera number"),
    (["--source", "picamera2", "--resolution", "big"], "WIDTHxHEIGHT"),
])
def test_usage_errors_exit_2(args, message):
    result = kiosk(*args)
    assert result.exit_code == EXIT_USAGE
    assert message in result.output + result.stderr


@pytest.mark.parametrize("args, message", [
    (["--source", "webcam"], "unknown source 'webcam'"),
    (["--source", "picamera2", "--resolution", "big"], "WIDTHxHEIGHT"),
    (["--source", "picamera2", "--count", "0"], "--count"),
])
def test_usage_errors_with_json_print_an_error_record(args, message):
    """As classify --json does (json_command.py): the error on stdout too, here as one JSON
    line, since the kiosk's --json output is JSON lines."""
    result = kiosk(*args, "--json")
    assert result.exit_code == EXIT_USAGE
    [document] = json_lines(result.stdout)
    assert document["event"] == "error" and document["exit_code"] == EXIT_USAGE
    assert message in document["error"]
    assert message in result.stderr
    assert kiosk(*args).stdout == ""  # without --json, stdout stays empty


def test_serve_without_the_serve_extra_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "pip install " in result.stderr and "'.[serve]'" in result.stderr


def test_missing_folder_exits_4(models_dir, tmp_path):
    result = kiosk("--source", f"folder:{tmp_path / 'nothing'}", "--model", models_dir,
                   "--no-server")
    assert result.exit_code == EXIT_UNAVAILABLE and "no such folder" in result.stderr


def test_missing_model_exits_3(tmp_path, frames_dir):
    result = kiosk("--source", f"folder:{frames_dir}", "--model", tmp_path / "x.tflite")
    assert result.exit_code == EXIT_MODEL


def test_camera_frames_are_read_as_bgr():
    blue_in_bgr = np.zeros((2, 2, 3), dtype=np.uint8)
    blue_in_bgr[..., 0] = 255
    picture = bgr_to_picture(blue_in_bgr)
    assert picture.mode == "RGB" and picture.getpixel((0, 0)) == (0, 0, 255)
    # ITU-R 601 luma of pure blue is 0.114 * 255 = 29; read as RGB it would be red, 76.
    assert np.asarray(picture.convert("L")).tolist() == [[29, 29], [29, 29]]
    padded = bgr_to_picture(np.full((2, 2, 4), 200, np.uint8))  # XRGB8888: [B, G, R, X]
    assert padded.mode == "RGB" and padded.getpixel((1, 1)) == (200, 200, 200)


def test_open_source_parses_specs():
    assert open_source("folder:/tmp/x").description == "folder:/tmp/x"
    assert open_source("picamera2:1").camera_num == 1
    assert open_source("v4l2:/dev/video2").device == "/dev/video2"
    assert open_source("v4l2").device == "/dev/video0"


# -- deploy/ -----------------------------------------------------------------------------------

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_systemd_units_and_their_options_are_ones_the_commands_accept():
    import shlex
    defaults = dict(line.split("=", 1) for line in (DEPLOY / "covid-edge.default").read_text()
                    .splitlines() if line and not line.startswith("#"))
    for unit, variable in (("covid-edge-serve@.service", "COVID_EDGE_SERVE_ARGS"),
                           ("covid-edge-kiosk@.service", "COVID_EDGE_KIOSK_ARGS")):
        text = (DEPLOY / unit).read_text()
        assert "User=%i" in text and "[Install]" in text and "Restart=on-failure" in text
        exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
        words = shlex.split(exec_start.split("=", 1)[1])
        assert words[0] == "/home/%i/.venvs/covid-edge/bin/covid-edge"
        assert words[-1] == f"${variable}"
        args = words[1:-1] + shlex.split(shlex.split(defaults[variable])[0])
        # Parsing happens before --help is acted on: an unknown option would fail here.
        result = CliRunner().invoke(main, [*args, "--help"])
        assert result.exit_code == 0, (unit, args, result.output)


def test_browser_launcher_waits_for_the_server_then_opens_the_kiosk_page(classifier, tmp_path):
    import os
    import subprocess
    pytest.importorskip("fastapi", reason="needs the serve extra")
    from covid_edge.kiosk.server import create_app

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "browser-args"
    fake = bin_dir / "chromium-browser"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {record}\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "COVID_EDGE_WAIT_S": "20"}
    with server_in_thread(create_app(SharedClassifier(classifier))) as url:
        done = subprocess.run(["sh", str(DEPLOY / "covid-edge-browser.sh")],
                              env={**env, "COVID_EDGE_URL": f"{url}/kiosk"},
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    args = record.read_text().splitlines()
    assert "--kiosk" in args and args[-1] == f"{url}/kiosk"
    assert "no server" not in done.stderr

    # No server at all: it says so after COVID_EDGE_WAIT_S and shows the page anyway.
    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed = probe.getsockname()[1]
    done = subprocess.run(["sh", str(DEPLOY / "covid-edge-browser.sh")],
                          env={**env, "COVID_EDGE_WAIT_S": "1",
                               "COVID_EDGE_URL": f"http://127.0.0.1:{closed}/kiosk"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "no server at" in done.stderr
