"""JPEG files Pillow's decoder refuses are named for what they are (covid_edge.jpeg_frame):
real 12-bit and lossless JPEGs made by tests/data/make_jpeg_samples.py."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from covid_edge.image_io import ImageReadError, read_image
from covid_edge import jpeg_frame
from covid_edge.jpeg_frame import unreadable_jpeg_reason
from covid_edge.kiosk.inference import UnsupportedImage, identify

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name, words", [
    ("gradient-12bit.jpg", "a 12-bit JPEG"),
    ("gradient-12bit-lossless.jpg", "a 12-bit lossless JPEG"),
])
def test_a_12_bit_jpeg_is_refused_by_name_with_the_fix(name, words):
    with pytest.raises(ImageReadError) as refused:
        read_image(DATA / name)
    message = str(refused.value)
    assert words in message and "16-bit PNG or TIFF" in message
    assert "use PNG, JPEG" not in message and "corrupt" not in message


def test_the_server_refuses_it_as_unsupported_with_the_same_words():
    with pytest.raises(UnsupportedImage, match="a 12-bit JPEG"):
        identify((DATA / "gradient-12bit.jpg").read_bytes())


def test_an_8_bit_lossless_jpeg_is_read_or_named(tmp_path):
    lossless = DATA / "gradient-8bit-lossless.jpg"
    if not jpeg_frame._reads_8_bit_lossless():  # Pillow built on an older libjpeg
        with pytest.raises(ImageReadError, match="a lossless JPEG"):
            read_image(lossless)
        return
    assert read_image(lossless).gray.size == (32, 32)
    damaged = tmp_path / "half.jpg"
    damaged.write_bytes(lossless.read_bytes()[:300])
    with pytest.raises(ImageReadError, match="truncated"):  # not "cannot read lossless"
        read_image(damaged)


def test_the_frame_header_is_found_behind_a_large_exif_block():
    data = (DATA / "gradient-12bit.jpg").read_bytes()
    app1 = b"\xff\xe1" + (65533).to_bytes(2, "big") + b"Exif\x00\x00" + bytes(65525)
    assert "12-bit" in unreadable_jpeg_reason(io.BytesIO(data[:2] + app1 + data[2:]))


def test_other_failures_keep_their_words(covid_xray, tmp_path):
    truncated = tmp_path / "half.jpg"
    truncated.write_bytes(covid_xray.read_bytes()[:3000])
    assert unreadable_jpeg_reason(truncated) is None  # an 8-bit baseline frame
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(truncated)
    for data in (b"", b"\xff\xd8", b"\xff\xd8\x00\x01", b"GIF89a", b"\xff\xd8\xff\xe0\xff\xff"):
        assert unreadable_jpeg_reason(io.BytesIO(data)) is None
