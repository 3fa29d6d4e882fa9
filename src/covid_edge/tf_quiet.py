"""TensorFlow's start-up chatter (oneDNN notices, CUDA probing on a machine without a GPU,
absl warnings) is not the user's to act on: silenced before TensorFlow is imported, unless
--verbose asks for it."""

from __future__ import annotations

import logging
import os

import click

# Every command that starts TensorFlow takes it, with the same words.
verbose_option = click.option("--verbose", is_flag=True,
                              help="Show TensorFlow's own log lines (hidden by default).")


# Lines TensorFlow and XLA write at import through absl's C++ logging, before any Python
# setting can reach them; matched by substring.
NOISE = ("All log messages before absl::InitializeLog()", "cudart_stub.cc", "cuInit",
         "Could not find cuda drivers", "Unable to register cu", "TF-TRT Warning",
         "oneDNN custom operations", "computation placer already registered",
         "This TensorFlow binary is optimized", "rebuild TensorFlow with the appropriate")


# How TensorFlow computes, read once at its import; the same with or without --verbose, so
# that asking for its log lines cannot change a trained model. A variable the user set wins.
COMPUTE_SETTINGS = {
    # oneDNN's kernels round differently: off, as every release was trained.
    "TF_ENABLE_ONEDNN_OPTS": "0",
    # TensorFlow's pooling (BFC) allocator for CPU memory. The default hands every large
    # tensor back to the system and faults it in again for the next batch: on the 2-core
    # development machine a short `train` spent 31-35 s of its 100-123 s of CPU in the kernel
    # that way, pooled 7-8 s, for 0.5 GB more peak memory and the same predictions, metrics
    # and history byte for byte; wall time 1.04-1.25x shorter, with the machine's load
    # (scripts/training_speed.py, docs/speed.md "Training").
    "TF_CPU_ALLOCATOR_USE_BFC": "true",
}


def tensorflow_settings() -> None:
    """Call before the first `import tensorflow`/`import keras` of a command that trains or
    converts."""
    for name, value in COMPUTE_SETTINGS.items():
        os.environ.setdefault(name, value)


def quiet_tensorflow(verbose: bool = False) -> None:
    """Call before the first `import tensorflow`/`import keras`: applies tensorflow_settings()
    and imports both with their start-up noise dropped (real errors still show). Later
    imports are then free."""
    tensorflow_settings()
    if verbose:
        return
    # 3: C++ errors too, among them "failed call to cuInit" when no GPU exists.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    for name in ("tensorflow", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from .native_stderr import filtered_native_stderr

    with filtered_native_stderr(lambda line: any(noise in line for noise in NOISE)):
        try:
            import tensorflow  # noqa: F401
            import keras  # noqa: F401
        except ImportError:
            return  # the caller says what to install
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass
