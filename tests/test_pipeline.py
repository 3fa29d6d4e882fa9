"""Folder scoring with decoding overlapped (pipeline.py) and the table-based integer input give
exactly what the one-by-one float path gives, on the real model and real files."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from conftest import CXR, REFERENCE
from covid_edge.edge_runtime.classifier import Classifier, default_threads, integer_input_map
from covid_edge.edge_runtime.pipeline import PREPARE_NICENESS, classify_paths
from covid_edge.preprocess import PreprocessSpec, quantize, to_model_input

TIMING_FIELDS = {"latency_ms", "total_ms"}


@pytest.fixture(scope="module")
def classifier(models_dir) -> Classifier:
    return Classifier.load(models_dir, num_threads=1)


def float_path(pixels, spec, details):
    scale, zero_point = details["quantization"]
    return quantize(to_model_input(pixels, spec)[np.newaxis], scale, zero_point,
                    np.dtype(details["dtype"]))


def test_integer_input_equals_the_float_path(classifier):
    spec, details = classifier.spec, classifier.input_details
    shortcut = integer_input_map(spec, details)
    assert shortcut is not None  # the released int8 model has the lossless input
    every_level = np.arange(256, dtype=np.uint8)
    picture = np.resize(every_level, (spec.height, spec.width))
    noise = np.random.default_rng(0).integers(0, 256, (spec.height, spec.width), dtype=np.uint8)
    for pixels in (picture, noise):
        fast = shortcut(pixels)
        assert fast.dtype == np.int8 and fast.shape == (1, spec.height, spec.width, 3)
        assert np.array_equal(fast, float_path(pixels, spec, details))
        assert np.array_equal(classifier.prepare_input(pixels), fast)


def test_lookup_table_for_a_lossy_input_is_exact():
    """The old [-1, 1] scaling (scale 2/255, zero point -1) is not pixel - 128; its table
    still reproduces the float path, rounding half to even included."""
    spec = PreprocessSpec(offset=-1.0)
    details = {"dtype": np.int8, "quantization": (2.0 / 255.0, -1)}
    table_map = integer_input_map(spec, details)
    pixels = np.resize(np.arange(256, dtype=np.uint8), (spec.height, spec.width))
    assert np.array_equal(table_map(pixels), float_path(pixels, spec, details))
    assert integer_input_map(spec, {"dtype": np.float32, "quantization": (0.0, 0)}) is None


def test_pipeline_gives_what_one_by_one_gives(classifier, tmp_path):
    files = sorted((CXR / "covid").glob("*.jpg"))[:6] + sorted((CXR / "normal").glob("*"))[:6]
    photo = REFERENCE / "photos" / "cat.jpg"
    if photo.is_file():
        files.append(photo)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    sixteen = tmp_path / "sixteen.png"
    gray = np.asarray(Image.open(files[0]).convert("L"), dtype=np.uint16) * 40 + 1000
    Image.fromarray(gray).save(sixteen)
    files = files[:3] + [broken, sixteen] + files[3:]

    one_by_one = [classifier.classify_file(path).to_dict() for path in files]
    for workers in (0, 1, 2):
        together = [p.to_dict() for p in classify_paths(classifier, files, workers=workers)]
        assert [p["path"] for p in together] == [str(f) for f in files]
        for expected, got in zip(one_by_one, together):
            for key in expected.keys() - TIMING_FIELDS:
                assert got[key] == expected[key], (key, expected["path"])
    assert one_by_one[3]["error"] and one_by_one[4]["verdict"] in ("covid", "normal")


def test_pipeline_stops_early_without_error(classifier):
    files = sorted((CXR / "normal").glob("*"))[:10]
    stream = classify_paths(classifier, files, workers=2)
    first = next(stream)
    stream.close()
    assert first.path == str(files[0]) and first.ok


def _preparing_niceness(classifier, monkeypatch) -> tuple[int, set[int]]:
    """(the calling thread's nice value, the preparing threads' nice values) over a folder."""
    seen = []
    prepare = classifier.prepare_file

    def recording(path):
        seen.append((threading.get_native_id(),
                     os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        return prepare(path)

    monkeypatch.setattr(classifier, "prepare_file", recording)
    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    files = sorted((CXR / "normal").glob("*"))[:4]
    list(classify_paths(classifier, files, workers=2))
    assert len(seen) == 4
    assert all(thread != threading.get_native_id() for thread, _ in seen)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller
    return caller, {nice for _, nice in seen}


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="per-thread nice values are Linux's")


@linux_only
@pytest.mark.skipif(default_threads() < 2, reason="one core: nothing to leave free")
def test_preparing_threads_yield_to_a_one_thread_interpreter(classifier, monkeypatch):
    assert classifier.num_threads == 1
    caller, preparing = _preparing_niceness(classifier, monkeypatch)
    assert preparing == {min(19, caller + PREPARE_NICENESS)}


@linux_only
def test_preparing_threads_keep_their_priority_when_the_interpreter_fills_the_cores(
        classifier, monkeypatch):
    monkeypatch.setattr(classifier, "num_threads", default_threads())
    caller, preparing = _preparing_niceness(classifier, monkeypatch)
    assert preparing == {caller}
