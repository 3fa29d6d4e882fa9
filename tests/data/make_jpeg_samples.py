"""How gradient-12bit.jpg, gradient-12bit-lossless.jpg and gradient-8bit-lossless.jpg were
made: real JPEG files of the kinds hospital exports hold and Pillow's 8-bit JPEG decoder may
not read (a 32x32 gradient each, under 1 KB). Needs `pip install imagecodecs` (libjpeg-turbo 3
and a lossless JPEG encoder), which covid-edge itself does not use.

    python tests/data/make_jpeg_samples.py
"""

from pathlib import Path

import imagecodecs
import numpy as np

HERE = Path(__file__).parent
ramp = (np.add.outer(np.arange(32), np.arange(32)) * 64).astype(np.uint16)  # 12-bit values
(HERE / "gradient-12bit.jpg").write_bytes(imagecodecs.jpeg8_encode(ramp, bitspersample=12))
(HERE / "gradient-12bit-lossless.jpg").write_bytes(
    imagecodecs.ljpeg_encode(ramp, bitspersample=12))
(HERE / "gradient-8bit-lossless.jpg").write_bytes(
    imagecodecs.jpeg8_encode((ramp >> 4).astype(np.uint8), lossless=True))
