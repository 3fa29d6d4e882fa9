"""What makes a file a TensorFlow Lite model at first sight: the flatbuffer identifier "TFL3"
at bytes 4-8. Checked before an interpreter is made, so that a picture or a Keras file named
.tflite is refused in one line instead of by the runtime's own error."""

from __future__ import annotations

from pathlib import Path

TFLITE_IDENTIFIER = b"TFL3"
NOT_TFLITE = "not a TensorFlow Lite model (no TFL3 identifier)"


def header_problem(path: str | Path) -> str | None:
    """Why `path` cannot be a .tflite model, judged by its first 8 bytes; None when it can."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(8)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return None if header[4:8] == TFLITE_IDENTIFIER else NOT_TFLITE
