"""`covid-edge serve`: the JSON API and the pages, on the exported model with real LiteRT and
real X-rays; a real uvicorn for concurrency and the command itself."""

from __future__ import annotations

import base64
import html
import io
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="needs the serve extra")
try:  # Starlette's TestClient moved to httpx2; either speaks the same API
    import httpx2 as httpx
except ModuleNotFoundError:  # pragma: no cover
    import httpx
from fastapi.testclient import TestClient  # noqa: E402

from conftest import REFERENCE, REPO_ROOT, subprocess_env  # noqa: E402
from covid_edge import DISCLAIMER  # noqa: E402
from covid_edge.edge_runtime.classifier import Classifier  # noqa: E402
from covid_edge.kiosk.inference import SharedClassifier  # noqa: E402
from covid_edge.kiosk.server import ServerSettings, create_app, format_percent  # noqa: E402
from kiosk_helpers import copy_images, png_bytes, serve_command, server_in_thread  # noqa: E402

LOOPBACK = ("127.0.0.1", 50000)


@pytest.fixture(scope="module")
def classifier(models_dir) -> Classifier:
    return Classifier.load(models_dir)


@pytest.fixture(scope="module")
def shared(classifier) -> SharedClassifier:
    return SharedClassifier(classifier)


@pytest.fixture(scope="module")
def client(shared):
    with TestClient(create_app(shared), client=LOOPBACK) as test_client:
        yield test_client


def post_file(client, data: bytes, name: str = "chest.png", media_type: str = "image/png",
              path: str = "/api/v1/classify"):
    return client.post(path, files={"file": (name, data, media_type)})


def refused_photo(classifier):
    """(the reference cat photo, classify's answer to it); skips unless the guard refuses it."""
    from covid_edge.edge_runtime.guard import NOT_CHEST_XRAY
    photo = REFERENCE / "photos" / "cat.jpg"
    if not photo.is_file():
        pytest.skip(f"no reference photo at {photo}")
    expected = classifier.classify_file(photo)
    if expected.verdict != NOT_CHEST_XRAY:
        pytest.skip("this model's guard lets the photo through")
    return photo, expected


# -- classification ----------------------------------------------------------------------------

def test_api_gives_the_verdict_classify_gives(client, classifier, some_xrays, model_card):
    for path in some_xrays:
        response = post_file(client, path.read_bytes(), path.name, "image/jpeg")
        assert response.status_code == 200, response.text
        body = response.json()
        expected = classifier.classify_file(path)
        assert body["probability"] == pytest.approx(expected.probability, abs=1e-9)
        assert body["verdict"] == expected.verdict
        assert body["threshold"] == classifier.threshold  # calibrated, like probability
        assert body["positive_label"] == model_card["positive_label"]
        assert body["latency_ms"] > 0 and body["total_ms"] >= body["latency_ms"]
        assert body["model"]["name"] == model_card["name"]
        assert body["model"]["version"] == model_card["version"]
        assert body["image"] == {"format": "JPEG", "width": 224, "height": 224}
        assert body["runtime"].startswith(("ai_edge_litert", "tflite_runtime"))
        assert body["disclaimer"] == DISCLAIMER
        assert body["saved_as"] is None
        assert response.headers["cache-control"] == "no-store"


def test_png_and_16_bit_tiff_uploads_match_the_same_files_on_disk(client, classifier,
                                                                  covid_xray, tmp_path):
    gray = np.asarray(Image.open(covid_xray).convert("L"), dtype=np.uint16)
    files = {"chest.png": Image.open(covid_xray).convert("L"),
             "chest16.tif": Image.fromarray(gray * 200 + 1000)}  # a 16-bit radiograph
    for name, picture in files.items():
        path = tmp_path / name
        picture.save(path)
        response = post_file(client, path.read_bytes(), name, "image/tiff")
        assert response.status_code == 200, response.text
        assert response.json()["probability"] == pytest.approx(
            classifier.classify_file(path).probability, abs=1e-9)
        assert response.json()["image"]["format"] == ("PNG" if name.endswith("png") else "TIFF")


def test_dicom_upload_matches_the_same_file_on_disk(client, classifier, covid_xray, tmp_path):
    pytest.importorskip("pydicom", reason="DICOM needs the dicom extra")
    from test_dicom import dx_dataset, save, to_12_bit, xray_pixels
    path = tmp_path / "chest.dcm"
    save(dx_dataset(to_12_bit(xray_pixels(covid_xray)), bits_stored=12), path)
    response = post_file(client, path.read_bytes(), "export", "application/octet-stream")
    assert response.status_code == 200, response.text
    assert response.json()["image"] == {"format": "DICOM", "width": 224, "height": 224}
    assert response.json()["probability"] == pytest.approx(
        classifier.classify_file(path).probability, abs=1e-9)


def test_a_photo_is_refused_as_classify_refuses_it(client, classifier):
    """The out-of-distribution guard answers through the API and the page as it does on the
    command line: 'not a chest X-ray' with a reason and no probability."""
    from covid_edge.edge_runtime.guard import NOT_CHEST_XRAY
    photo, expected = refused_photo(classifier)
    body = post_file(client, photo.read_bytes(), photo.name, "image/jpeg").json()
    assert (body["verdict"], body["reason"]) == (NOT_CHEST_XRAY, expected.reason)
    assert body["probability"] is None and body["disclaimer"] == DISCLAIMER
    page = post_file(client, photo.read_bytes(), photo.name, "image/jpeg", path="/classify")
    assert page.status_code == 200
    assert f'id="verdict">{NOT_CHEST_XRAY.upper()}<' in page.text
    assert html.escape(expected.reason) in page.text
    assert 'id="prob"' not in page.text  # no probability bar for what is no chest X-ray
    assert 'id="explain"' not in page.text  # and no heatmap to ask for


def test_prediction_page_shows_verdict_bar_latency_model_and_notice(client, classifier,
                                                                    covid_xray, model_card):
    response = post_file(client, covid_xray.read_bytes(), covid_xray.name, "image/jpeg",
                         path="/classify")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    page = response.text
    expected = classifier.classify_file(covid_xray)
    assert f'id="verdict">{expected.verdict.upper()}<' in page
    assert format_percent(expected.probability) in page
    assert f"threshold {format_percent(classifier.threshold)}" in page
    assert f"{model_card['name']} {model_card['version']}" in page
    assert "ms inference" in page
    assert "data:image/jpeg;base64," in page  # the X-ray is shown, not linked to a stored file
    assert "Not a diagnostic device" in page and DISCLAIMER in page
    assert covid_xray.name in page


def test_upload_and_kiosk_pages_and_their_assets_are_served(client):
    upload = client.get("/")
    assert upload.status_code == 200
    assert 'enctype="multipart/form-data"' in upload.text and DISCLAIMER in upload.text
    assert "not stored" in upload.text
    assert client.get("/kiosk").status_code == 200
    for asset in ("/static/kiosk.css", "/static/upload.js", "/static/kiosk.js"):
        assert client.get(asset).status_code == 200, asset
    # No asset from the network: the kiosk is often offline.
    assert "http" not in upload.text.split("<body")[0].replace("http-equiv", "")


def test_model_and_health(client, classifier, model_card):
    model = client.get("/api/v1/model").json()
    assert (model["name"], model["version"]) == (model_card["name"], model_card["version"])
    assert model["threshold"] == classifier.threshold
    assert model["disclaimer"] == DISCLAIMER
    health = client.get("/api/v1/health").json()
    assert health["status"] == "ok"
    assert health["max_upload_bytes"] == 20 * 1024 * 1024
    assert health["uploads_saved"] is False


def test_openapi_schema_documents_the_upload_and_its_errors(client):
    schema = client.get("/api/v1/openapi.json").json()
    operation = schema["paths"]["/api/v1/classify"]["post"]
    body = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["properties"]["file"]["format"] == "binary"
    assert "20 MB" in body["properties"]["file"]["description"]
    assert {"200", "400", "413", "415", "422"} <= set(operation["responses"])
    assert "ClassifyResponse" in schema["components"]["schemas"]
    assert {"/api/v1/model", "/api/v1/health", "/api/v1/kiosk/latest"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 404  # CDN-based, off on an offline kiosk


# -- explanation (occlusion heatmap) ----------------------------------------------------------

def test_explain_api_returns_the_heatmap_covid_edge_explain_draws(client, classifier,
                                                                  covid_xray):
    from covid_edge.edge_runtime.explain import canvas_size, explain_to_png
    from covid_edge.image_io import read_grayscale
    response = post_file(client, covid_xray.read_bytes(), covid_xray.name, "image/jpeg",
                         path="/api/v1/explain")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "no-store"
    picture = Image.open(io.BytesIO(response.content))
    assert (picture.format, picture.size) == ("PNG", canvas_size())
    explanation, png = explain_to_png(classifier, read_grayscale(covid_xray), covid_xray.name)
    assert response.content == png  # the very figure of the command line's explain
    expected = classifier.classify_file(covid_xray)
    assert response.headers["x-explanation-verdict"] == expected.verdict
    assert float(response.headers["x-explanation-probability"]) == pytest.approx(
        expected.probability, rel=1e-5)
    assert int(response.headers["x-explanation-inferences"]) == explanation.inferences > 100


def test_explain_json_overlay_and_the_pages_own_request(client, classifier, normal_xray):
    """The prediction page carries the model's input pixels and sends them back for the map:
    the same map as for the original upload, without the server keeping anything."""
    from covid_edge.preprocess import load_pixels
    original = post_file(client, normal_xray.read_bytes(), normal_xray.name, "image/jpeg",
                         path="/api/v1/explain?format=json&view=overlay")
    assert original.status_code == 200, original.text
    body = original.json()
    assert body["view"] == "overlay" and (body["png_width"], body["png_height"]) == (448, 448)
    overlay = Image.open(io.BytesIO(base64.b64decode(
        body["image_url"].removeprefix("data:image/png;base64,"))))
    assert overlay.size == (448, 448)
    expected = classifier.classify_file(normal_xray)
    assert body["verdict"] == expected.verdict
    assert body["probability"] == pytest.approx(expected.probability, abs=1e-9)
    assert body["inferences"] == 1 + body["grid"][0] * body["grid"][1]
    assert body["elapsed_ms"] > 0 and body["disclaimer"] == DISCLAIMER

    page = post_file(client, normal_xray.read_bytes(), normal_xray.name, "image/jpeg",
                     path="/classify").text
    assert 'id="explain"' in page and "/static/explain.js" in page
    data_url = html.unescape(page.split('data-input="', 1)[1].split('"', 1)[0])
    model_input = base64.b64decode(data_url.removeprefix("data:image/png;base64,"))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(model_input))),
                          load_pixels(normal_xray, classifier.spec))
    again = post_file(client, model_input, "model-input.png",
                      path="/api/v1/explain?format=json&view=overlay").json()
    for key in ("verdict", "probability", "base_score", "max_drop", "max_rise", "peak_xy"):
        assert again[key] == body[key], key


def test_explain_refuses_what_classify_refuses(client, classifier, covid_xray):
    from covid_edge.edge_runtime.guard import NOT_CHEST_XRAY
    corrupt = post_file(client, covid_xray.read_bytes()[:2000], "broken.jpg", "image/jpeg",
                        path="/api/v1/explain")
    assert corrupt.status_code == 422 and "truncated" in corrupt.json()["error"]
    assert post_file(client, b"just text", "notes.png", path="/api/v1/explain").status_code == 415
    assert post_file(client, b"", "empty.png", path="/api/v1/explain").status_code == 400
    bad_view = post_file(client, covid_xray.read_bytes(), "x.jpg", "image/jpeg",
                         path="/api/v1/explain?view=poster")
    assert bad_view.status_code == 422 and "view" in bad_view.json()["error"]

    photo, expected = refused_photo(classifier)
    refused = post_file(client, photo.read_bytes(), photo.name, "image/jpeg",
                        path="/api/v1/explain")
    assert refused.status_code == 422
    body = refused.json()
    assert (body["verdict"], body["reason"]) == (NOT_CHEST_XRAY, expected.reason)
    assert "No heatmap" in body["error"]


def test_openapi_schema_documents_explain(client):
    schema = client.get("/api/v1/openapi.json").json()
    operation = schema["paths"]["/api/v1/explain"]["post"]
    assert "image/png" in operation["responses"]["200"]["content"]
    assert {"200", "400", "413", "415", "422"} <= set(operation["responses"])
    assert {"ExplainResponse", "ExplainRefused"} <= set(schema["components"]["schemas"])
    body = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["properties"]["file"]["format"] == "binary"


# -- bad input ---------------------------------------------------------------------------------

def test_not_an_image_is_415_with_a_message(client):
    response = post_file(client, b"name,age\nx,1\n", "notes.png")
    assert response.status_code == 415
    assert "PNG, JPEG, TIFF, BMP or DICOM" in response.json()["error"]


def test_other_image_formats_are_415(client, covid_xray):
    gif = io.BytesIO()
    Image.open(covid_xray).save(gif, format="GIF")
    response = post_file(client, gif.getvalue(), "chest.gif", "image/gif")
    assert response.status_code == 415
    assert response.json()["error"].startswith("GIF images are not accepted")


def test_corrupt_image_is_422(client, covid_xray):
    truncated = covid_xray.read_bytes()[:2000]
    response = post_file(client, truncated, "broken.jpg", "image/jpeg")
    assert response.status_code == 422
    assert "truncated" in response.json()["error"]


def test_oversized_upload_is_413_before_and_while_reading(shared):
    settings = ServerSettings(max_upload_bytes=256 * 1024)
    noise = np.random.default_rng(0).integers(0, 256, (700, 700), dtype=np.uint8)
    big = png_bytes(Image.fromarray(noise))
    assert len(big) > settings.max_upload_bytes + 64 * 1024
    with TestClient(create_app(shared, settings), client=LOOPBACK) as client:
        declared = post_file(client, big)
        assert declared.status_code == 413
        assert "0.25 MB limit" in declared.json()["error"]

        # Without a Content-Length (chunked), the limit holds while the body streams in.
        boundary = "covidedgeboundary"
        parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                 f"filename=\"big.png\"\r\nContent-Type: image/png\r\n\r\n".encode(), big,
                 f"\r\n--{boundary}--\r\n".encode()]

        def chunks():
            for part in parts:
                for start in range(0, len(part), 65536):
                    yield part[start:start + 65536]

        streamed = client.post("/api/v1/classify", content=chunks(), headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert streamed.status_code == 413

        # Just over the limit, within the multipart allowance: caught after parsing.
        just_over = big[:settings.max_upload_bytes + 10]
        assert post_file(client, just_over).status_code == 413

        page = post_file(client, big, path="/classify")
        assert page.status_code == 413 and "0.25 MB limit" in page.text


def test_malformed_requests_are_400_or_415(client, covid_xray):
    assert client.post("/api/v1/classify", data={"other": "x"}).status_code in (400, 415)
    no_file = client.post("/api/v1/classify", files={"other": ("a.png", b"x", "image/png")})
    assert no_file.status_code == 400 and "'file'" in no_file.json()["error"]
    empty = post_file(client, b"")
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
    raw = client.post("/api/v1/classify", content=covid_xray.read_bytes(),
                      headers={"Content-Type": "image/jpeg"})
    assert raw.status_code == 415 and "multipart/form-data" in raw.json()["error"]
    two = client.post("/api/v1/classify", files=[("file", ("a.jpg", b"1", "image/jpeg")),
                                                 ("file", ("b.jpg", b"2", "image/jpeg"))])
    assert two.status_code == 400


def test_bad_upload_on_the_page_shows_the_message_with_the_status(client):
    response = post_file(client, b"\x00" * 100, "scan.png", path="/classify")
    assert response.status_code == 415
    assert 'role="alert">scan.png: not an image covid-edge can read' in response.text
    assert 'id="upload-form"' in response.text  # the upload form again, to try another file


def test_unknown_paths(client):
    assert client.get("/api/v1/nothing").json() == {"error": "Not Found"}
    page = client.get("/nothing")
    assert page.status_code == 404 and "Back to the upload page" in page.text


# -- storage, concurrency ----------------------------------------------------------------------

def test_uploads_are_saved_only_with_save_uploads(shared, covid_xray, tmp_path):
    folder = tmp_path / "kept"
    with TestClient(create_app(shared, ServerSettings(save_uploads=folder)),
                    client=LOOPBACK) as client:
        body = post_file(client, covid_xray.read_bytes(), covid_xray.name, "image/jpeg").json()
    saved = folder / body["saved_as"]
    assert saved.read_bytes() == covid_xray.read_bytes()
    sidecar = json.loads((folder / f"{body['saved_as']}.json").read_text())
    assert sidecar["probability"] == body["probability"]
    assert sorted(p.name for p in folder.iterdir()) == sorted([saved.name, f"{saved.name}.json"])


def test_large_uploads_are_spooled_to_an_anonymous_file(client, monkeypatch):
    """Bodies over 1 MB go to a temporary file (thirty uploads in flight do not hold thirty
    copies in memory); it is anonymous and closed after the answer."""
    import tempfile

    opened = []
    real = tempfile.TemporaryFile

    def spy(*args, **kwargs):
        handle = real(*args, **kwargs)
        opened.append(handle)
        return handle

    monkeypatch.setattr(tempfile, "TemporaryFile", spy)
    noise = np.random.default_rng(1).integers(0, 256, (1100, 1100), dtype=np.uint8)
    big = png_bytes(Image.fromarray(noise))
    assert len(big) > 1024 * 1024
    response = post_file(client, big, "noise.png")
    assert response.status_code == 200, response.text
    assert response.json()["image"] == {"format": "PNG", "width": 1100, "height": 1100}
    assert opened and all(handle.closed for handle in opened)


def test_concurrent_requests_each_get_their_own_verdict(shared, classifier, some_xrays):
    """Twelve uploads at once through a real uvicorn: every answer belongs to its image, so the
    shared interpreter is not mixed up between requests."""
    expected = {path.name: classifier.classify_file(path).probability for path in some_xrays}
    jobs = [path for path in some_xrays for _ in range(2)]
    with server_in_thread(create_app(shared)) as url:
        def send(path):
            response = httpx.post(f"{url}/api/v1/classify", timeout=60,
                                  files={"file": (path.name, path.read_bytes(), "image/jpeg")})
            return path.name, response.status_code, response.json()

        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            answers = list(pool.map(send, jobs))
    for name, status, body in answers:
        assert status == 200, body
        assert body["probability"] == pytest.approx(expected[name], abs=1e-9), name


# -- the kiosk feed ----------------------------------------------------------------------------

def kiosk_record(frame: int = 1, **changes) -> dict:
    record = {"frame": frame, "source": "folder:x", "label": "a.jpg",
              "captured_at": "2026-01-01T00:00:00+00:00", "verdict": "normal",
              "probability": 0.1, "threshold": 0.5, "positive_label": "covid",
              "latency_ms": 1.0, "total_ms": 2.0, "runtime": "ai_edge_litert 2",
              "model": {"name": "m", "version": "1", "variant": "int8"}, "interval_s": 1.0,
              "error": None}
    record.update(changes)
    return record


def test_kiosk_feed_keeps_the_newest_frame_and_its_picture(shared, covid_xray):
    import base64
    jpeg = covid_xray.read_bytes()
    with TestClient(create_app(shared), client=LOOPBACK) as client:
        assert client.get("/api/v1/kiosk/latest").json()["frame"] is None
        first = client.post("/api/v1/kiosk/frames", json=kiosk_record(1))
        assert first.status_code == 201 and first.json() == {"seq": 1}
        second = client.post("/api/v1/kiosk/frames", json=kiosk_record(
            2, verdict="covid", probability=0.9,
            preview_jpeg_base64=base64.b64encode(jpeg).decode()))
        assert second.json() == {"seq": 2}
        latest = client.get("/api/v1/kiosk/latest").json()
        assert latest["seq"] == 2 and latest["frame"]["verdict"] == "covid"
        assert "preview_jpeg_base64" not in latest["frame"]
        picture = client.get(latest["frame"]["preview_url"])
        assert picture.content == jpeg and picture.headers["content-type"] == "image/jpeg"
        assert client.get("/api/v1/kiosk/frames/1/preview.jpg").status_code == 404
        not_jpeg = client.post("/api/v1/kiosk/frames", json=kiosk_record(
            3, preview_jpeg_base64=base64.b64encode(b"GIF89a").decode()))
        assert not_jpeg.status_code == 422
        invalid = client.post("/api/v1/kiosk/frames", json={"frame": "x"})
        assert invalid.status_code == 422 and invalid.json()["error"].startswith("invalid")


def test_kiosk_frames_are_refused_from_other_machines(shared):
    with TestClient(create_app(shared), client=("192.168.1.50", 40000)) as client:
        response = client.post("/api/v1/kiosk/frames", json=kiosk_record())
        assert response.status_code == 403
        assert "this device only" in response.json()["error"]
        assert client.get("/api/v1/kiosk/latest").json()["seq"] == 0


# -- the command -------------------------------------------------------------------------------

def test_serve_command_binds_localhost_and_stops_cleanly(models_dir, covid_xray):
    with serve_command("--model", models_dir) as (url, process):
        assert url.startswith("http://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1])
        assert httpx.get(f"{url}/api/v1/health", timeout=30).json()["status"] == "ok"
        # Bound to the loopback address only, not to every interface.
        listening = [line for line in open("/proc/net/tcp").read().splitlines()[1:]
                     if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A"]
        assert listening and all(line.split()[1].startswith("0100007F:") for line in listening)

        # A second server on the same port: one clear line and exit code 4.
        busy = subprocess.run([sys.executable, "-m", "covid_edge", "serve", "--model",
                               str(models_dir), "--port", str(port)], capture_output=True,
                              text=True, env=subprocess_env(), cwd=REPO_ROOT, timeout=60)
        assert busy.returncode == 4
        assert f"cannot listen on 127.0.0.1:{port}" in busy.stderr
        assert "Traceback" not in busy.stderr
    assert process.returncode == 0


def test_serve_without_a_model_exits_3(tmp_path):
    done = subprocess.run([sys.executable, "-m", "covid_edge", "serve", "--model",
                           str(tmp_path / "none.tflite"), "--port", "0"], capture_output=True,
                          text=True, env=subprocess_env(), cwd=REPO_ROOT, timeout=60)
    assert done.returncode == 3 and "cannot load the model" in done.stderr


def test_format_percent():
    assert format_percent(0.912) == "91.2 %"
    assert format_percent(0.0576) == "5.76 %"
    assert format_percent(0.0076) == "0.76 %"
    assert format_percent(1e-7) == "< 0.01 %"
    assert format_percent(None) == "-"


NO_TF_CHILD = """
import json, sys
from fastapi.testclient import TestClient
from covid_edge.cli import main
from covid_edge.edge_runtime.classifier import Classifier
from covid_edge.kiosk.inference import SharedClassifier
from covid_edge.kiosk.server import create_app
models, image, folder = sys.argv[1:4]
with TestClient(create_app(SharedClassifier(Classifier.load(models)))) as client:
    response = client.post("/api/v1/classify", files={"file": ("x.jpg", open(image, "rb"))})
    assert response.status_code == 200, response.text
    response = client.post("/api/v1/explain", files={"file": ("x.jpg", open(image, "rb"))})
    assert response.status_code == 200, response.text
code = main(["kiosk", "--source", "folder:" + folder, "--count", "2", "--interval", "0",
             "--no-server", "--model", models], standalone_mode=False)
forbidden = json.loads(sys.argv[4])
print("REPORT " + json.dumps({"code": code,
      "loaded": sorted({n.split(".")[0] for n in sys.modules} & set(forbidden))}))
"""


def test_server_and_kiosk_import_no_tensorflow(models_dir, covid_xray, some_xrays, tmp_path):
    from test_no_tensorflow import FORBIDDEN
    copy_images(some_xrays[:2], tmp_path / "frames")
    done = subprocess.run(
        [sys.executable, "-c", NO_TF_CHILD, str(models_dir), str(covid_xray),
         str(tmp_path / "frames"), json.dumps(FORBIDDEN)],
        capture_output=True, text=True, env=subprocess_env(), cwd=REPO_ROOT, timeout=120)
    reports = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and reports, done.stdout + done.stderr
    report = json.loads(reports[-1][len("REPORT "):])
    assert report == {"code": 0, "loaded": []}

