"""TensorFlow's start-up chatter (oneDNN notices, CUDA probing on a machine without a GPU,
absl warnings) is not the user's to act on: silenced before TensorFlow is imported, unless
--verbose asks for it."""

from __future__ import annotations

import logging
import os


def quiet_tensorflow(verbose: bool = False) -> None:
    """Call before the first `import tensorflow`/`import keras`; later calls change nothing
    on the C++ side, which reads the variables once."""
    if verbose:
        return
    # 3: C++ errors too, among them "failed call to cuInit" when no GPU exists.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # its notice, not its speed, matters
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    for name in ("tensorflow", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass
