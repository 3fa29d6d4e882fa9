"""The pages in a real headless browser (Debian's Chromium driven by Playwright) against a real
`covid-edge serve`: upload a real X-ray, see the verdict and where the model looked, drop a
file, bad files, the live kiosk page; screenshots at 800x480 (the 7-inch touchscreen) and 1280x800.

Screenshots go to $COVID_EDGE_SCREENSHOTS when set, else to pytest's temporary folder. Without
Chromium or Playwright the tests skip, unless COVID_EDGE_REQUIRE_BROWSER=1 (CI sets it).
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from covid_edge import DISCLAIMER
from covid_edge.cli import main
from kiosk_helpers import copy_images, serve_command

CHROMIUM = Path(os.environ.get("COVID_EDGE_CHROMIUM", "/usr/bin/chromium"))
# Root in a container needs --no-sandbox; the rest keeps a test browser from phoning home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
SMALL, LARGE = {"width": 800, "height": 480}, {"width": 1280, "height": 800}
UPLOAD_LIMIT_MB = 1  # the server runs with a small limit so the oversized case is cheap


def _unavailable(reason: str):
    if os.environ.get("COVID_EDGE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser test required but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    if not CHROMIUM.is_file():
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        # Playwright gives every launch a fresh temporary profile (--user-data-dir).
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(models_dir):
    with serve_command("--model", models_dir, "--max-upload-mb", UPLOAD_LIMIT_MB) as (url, _):
        yield url


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("COVID_EDGE_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def api_classify(server: str, path: Path) -> dict:
    boundary = "covidedgetest"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() \
        + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{server}/api/v1/classify", data=body, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def upload(page, server: str, path) -> None:
    """Send `path` from the upload page and wait for the prediction page."""
    page.goto(server + "/")
    page.set_input_files("#file", str(path))
    with page.expect_navigation():
        page.click("#submit")


def assert_inside_viewport(page, selector: str):
    box = page.locator(selector).bounding_box()
    viewport = page.viewport_size
    assert box is not None, selector
    assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"] + 0.5, \
        f"{selector} is not fully visible without scrolling at {viewport}"


@pytest.mark.parametrize("viewport", [SMALL, LARGE], ids=["800x480", "1280x800"])
def test_upload_a_real_xray_and_see_the_verdict(browser, server, covid_xray, shots, viewport):
    from covid_edge.kiosk.server import format_percent
    expected = api_classify(server, covid_xray)
    page = browser.new_page(viewport=viewport)
    try:
        page.goto(server + "/")
        assert_inside_viewport(page, "#submit")
        page.set_input_files("#file", str(covid_xray))
        page.wait_for_selector("#preview:not([hidden])")
        assert covid_xray.name in page.inner_text("#chosen")
        size = f"{viewport['width']}x{viewport['height']}"
        page.screenshot(path=str(shots / f"upload-{size}.png"))

        with page.expect_navigation():
            page.click("#submit")
        assert page.inner_text("#verdict") == expected["verdict"].upper()
        assert page.inner_text("#prob-value") == format_percent(expected["probability"])
        assert "threshold" in page.inner_text("#prob-threshold")
        assert expected["model"]["name"] in page.inner_text("body")
        assert "ms inference" in page.inner_text("#latency")
        assert DISCLAIMER in page.inner_text("#notice")
        # The image really decoded in the browser.
        assert page.eval_on_selector("#xray", "img => img.naturalWidth") > 0
        # Verdict, bar and the not-a-diagnostic-device notice fit the screen without scrolling.
        for selector in ("#verdict", "#prob", "#notice"):
            assert_inside_viewport(page, selector)
        page.screenshot(path=str(shots / f"prediction-{size}.png"))
        assert (shots / f"prediction-{size}.png").stat().st_size > 10_000

        # Where the model looked: asked for after the verdict, shown in the X-ray's frame.
        page.click("#explain")
        page.wait_for_selector("#heatmap:not([hidden])", timeout=30_000)
        assert page.eval_on_selector("#heatmap", "img => img.naturalWidth") == 448
        assert page.locator("#xray").is_hidden()
        legend = page.inner_text("#heatmap-caption")
        assert "covid" in legend and "inferences" in legend and " ms" in legend
        assert "Red: pushed the model toward covid" in page.inner_text(
            "#explain-status")
        for selector in ("#heatmap", "#heatmap-caption", "#explain-status", "#explain",
                         "#verdict", "#notice"):
            assert_inside_viewport(page, selector)
        page.screenshot(path=str(shots / f"heatmap-{size}.png"))
        page.click("#explain")  # back to the X-ray, without asking the server again
        assert page.locator("#xray").is_visible() and page.locator("#heatmap").is_hidden()
    finally:
        page.close()


def test_drop_an_xray_onto_the_page(browser, server, normal_xray):
    expected = api_classify(server, normal_xray)
    page = browser.new_page(viewport=SMALL)
    try:
        page.goto(server + "/")
        page.evaluate("""(bytes) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], "dropped.jpg",
                                        {type: "image/jpeg"}));
            document.getElementById("drop").dispatchEvent(new DragEvent("drop", {
                dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""", list(normal_xray.read_bytes()))
        page.wait_for_selector("#preview:not([hidden])")
        assert "dropped.jpg" in page.inner_text("#chosen")
        with page.expect_navigation():
            page.click("#submit")
        assert page.inner_text("#verdict") == expected["verdict"].upper()
    finally:
        page.close()


def test_bad_files_get_a_clear_message(browser, server, shots):
    page = browser.new_page(viewport=SMALL)
    try:
        page.goto(server + "/")
        page.set_input_files("#file", {"name": "notes.png", "mimeType": "image/png",
                                       "buffer": b"not really a png"})
        with page.expect_navigation() as navigation:
            page.click("#submit")
        assert navigation.value.status == 415
        message = page.inner_text("#error")
        assert "notes.png: not an image covid-edge can read" in message
        assert_inside_viewport(page, "#error")
        page.screenshot(path=str(shots / "error-800x480.png"))

        # Oversized: refused in the page before anything is sent.
        page.set_input_files("#file", {"name": "huge.png", "mimeType": "image/png",
                                       "buffer": b"\0" * (UPLOAD_LIMIT_MB * 1024 * 1024 + 1)})
        assert f"over the {UPLOAD_LIMIT_MB} MB limit" in page.inner_text("#error")
        assert page.eval_on_selector("#file", "input => input.files.length") == 0
    finally:
        page.close()


def test_a_photo_gets_no_verdict(browser, server, shots):
    from conftest import REFERENCE
    photo = REFERENCE / "photos" / "cat.jpg"
    if not photo.is_file():
        pytest.skip(f"no reference photo at {photo}")
    expected = api_classify(server, photo)
    page = browser.new_page(viewport=SMALL)
    try:
        upload(page, server, photo)
        assert page.inner_text("#verdict") == expected["verdict"].upper()
        if expected["probability"] is None:  # refused by the guard: a reason, no bar
            assert expected["reason"] in page.inner_text("#reason")
            assert page.locator("#prob").count() == 0
            assert_inside_viewport(page, "#notice")
            page.screenshot(path=str(shots / "not-a-chest-xray-800x480.png"))
    finally:
        page.close()


def test_kiosk_page_updates_by_itself(browser, server, models_dir, some_xrays, shots):
    with tempfile.TemporaryDirectory() as folder:
        frames = copy_images(some_xrays[:2], Path(folder))
        page = browser.new_page(viewport=SMALL)
        try:
            page.goto(server + "/kiosk")
            assert "Waiting" in page.inner_text("#status")
            result = CliRunner().invoke(main, [
                "kiosk", "--source", f"folder:{folder}", "--model", str(models_dir),
                "--interval", "0", "--count", "2", "--server", server, "--json"])
            assert result.exit_code == 0, result.stderr
            last = [json.loads(line) for line in result.stdout.splitlines()][-2]
            assert last["label"] == frames[1].name
            # No reload: the page's own polling brings the second frame in.
            page.wait_for_function(
                "() => document.getElementById('result').dataset.seq === '2'", timeout=10_000)
            assert page.inner_text("#verdict") == last["verdict"].upper()
            assert frames[1].name in page.inner_text("#caption")
            page.wait_for_function("() => document.getElementById('xray').naturalWidth > 0")
            for selector in ("#verdict", "#prob", "#notice"):
                assert_inside_viewport(page, selector)
            page.screenshot(path=str(shots / "kiosk-800x480.png"))
        finally:
            page.close()


# -- a three-class model (normal / pneumonia / covid) --------------------------------------------

def assert_no_overflow(page):
    """Nothing on the page scrolls: the document, the main area and the result panel fit."""
    overflow = page.evaluate("""() => {
        const out = [];
        const doc = document.documentElement;
        if (doc.scrollHeight > window.innerHeight + 1 || doc.scrollWidth > window.innerWidth + 1)
            out.push("document " + doc.scrollWidth + "x" + doc.scrollHeight);
        for (const selector of ["main", ".panel", "#classes"]) {
            const el = document.querySelector(selector);
            if (el && (el.scrollHeight > el.clientHeight + 1 || el.scrollWidth > el.clientWidth + 1))
                out.push(selector + " " + el.scrollWidth + "x" + el.scrollHeight + " in "
                         + el.clientWidth + "x" + el.clientHeight);
        }
        return out;
    }""")
    assert not overflow, f"overflow at {page.viewport_size}: {overflow}"


@pytest.fixture(scope="module")
def three_class_server(three_class_dir):
    with serve_command("--model", three_class_dir) as (url, _):
        yield url


@pytest.mark.slow
@pytest.mark.parametrize("viewport", [SMALL, LARGE], ids=["800x480", "1280x800"])
def test_three_class_prediction_page_has_a_bar_per_class(browser, three_class_server,
                                                         three_class_dir, shots, viewport):
    from covid_edge.kiosk.server import format_percent
    xray = sorted((three_class_dir / "samples").glob("pneumonia-*"))[0]
    expected = api_classify(three_class_server, xray)
    assert list(expected["probabilities"]) == ["normal", "pneumonia", "covid"]
    page = browser.new_page(viewport=viewport)
    try:
        upload(page, three_class_server, xray)
        assert page.inner_text("#verdict") == expected["verdict"].upper()
        assert page.inner_text("#prob-value") == format_percent(expected["probability"])
        # Colours: covid warm, normal calm, another finding (pneumonia) its own amber.
        colour = {"covid": "positive", "normal": "negative"}.get(expected["verdict"], "finding")
        assert colour in page.get_attribute("#result", "class").split()
        for label in ("normal", "pneumonia"):
            row = f'.class-row[data-label="{label}"]'
            assert page.inner_text(f"{row} .class-name") == f"P({label})"
            assert page.inner_text(f"{row} .class-value") == format_percent(
                expected["probabilities"][label])
            assert page.locator(f"{row} .class-track").is_visible()
            assert_inside_viewport(page, row)
        for selector in ("#verdict", "#prob", "#classes", "#notice", "#again"):
            assert_inside_viewport(page, selector)
        assert_no_overflow(page)
        size = f"{viewport['width']}x{viewport['height']}"
        page.screenshot(path=str(shots / f"prediction-3class-{size}.png"))

        page.click("#explain")
        page.wait_for_selector("#heatmap:not([hidden])", timeout=30_000)
        target = expected["verdict"]  # a three-class page maps the verdict's class
        if target != "covid":
            assert page.locator(f'.class-row.chosen[data-label="{target}"]').count() == 1
            assert "most probable other class" in page.inner_text(".panel")
        assert target in page.inner_text("#heatmap-caption")
        assert f"Red: pushed the model toward {target}" in page.inner_text("#explain-status")
        assert_no_overflow(page)
        page.screenshot(path=str(shots / f"heatmap-3class-{size}.png"))
    finally:
        page.close()


@pytest.mark.slow
def test_three_class_kiosk_page_fits_800x480(browser, three_class_server, three_class_dir,
                                             shots):
    xrays = sorted((three_class_dir / "samples").glob("pneumonia-*"))[:1]
    with tempfile.TemporaryDirectory() as folder:
        copy_images(xrays, Path(folder))
        page = browser.new_page(viewport=SMALL)
        try:
            page.goto(three_class_server + "/kiosk")
            assert page.locator(".class-row").count() == 2
            result = CliRunner().invoke(main, [
                "kiosk", "--source", f"folder:{folder}", "--model", str(three_class_dir),
                "--interval", "0", "--count", "1", "--server", three_class_server, "--json"])
            assert result.exit_code == 0, result.stderr
            record = [json.loads(line) for line in result.stdout.splitlines()][-2]
            page.wait_for_function(
                "() => document.getElementById('result').dataset.seq === '1'", timeout=10_000)
            page.wait_for_function("() => document.getElementById('xray').naturalWidth > 0")
            assert page.inner_text("#verdict") == record["verdict"].upper()
            for label in ("normal", "pneumonia"):
                row = f'.class-row[data-label="{label}"]'
                assert page.inner_text(f"{row} .class-value").strip() not in ("", "–")
                assert_inside_viewport(page, row)
            if record["verdict"] != "covid":
                assert "most probable other class" in page.inner_text("#status")
                chosen = page.locator(".class-row.chosen")
                assert chosen.get_attribute("data-label") == record["verdict"]
            for selector in ("#verdict", "#prob", "#classes", "#notice"):
                assert_inside_viewport(page, selector)
            assert_no_overflow(page)
            page.screenshot(path=str(shots / "kiosk-3class-800x480.png"))
        finally:
            page.close()
