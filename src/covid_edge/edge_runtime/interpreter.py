"""Finding a TFLite interpreter: ai_edge_litert, else tflite_runtime, else tensorflow.lite.

LiteRT (ai-edge-litert) is the maintained successor of tflite-runtime; TensorFlow is the last
resort because importing it costs seconds and hundreds of MB on a Raspberry Pi.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
from dataclasses import dataclass
from functools import cache
from typing import Any

# (runtime name, module holding Interpreter, distribution whose version we report)
RUNTIME_CANDIDATES = (
    ("ai_edge_litert", "ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime", "tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow", "tensorflow.lite", "tensorflow"),
)
RUNTIME_NAMES = tuple(name for name, _, _ in RUNTIME_CANDIDATES)


class RuntimeNotFound(Exception):
    """No TFLite interpreter is installed."""


class RuntimeNumpyMismatch(RuntimeError):
    """The runtime's compiled module was built against numpy 1 and numpy 2 is installed."""


def _numpy_abi_mismatch(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is numpy 2 refusing a module compiled against numpy 1.

    tflite-runtime 2.14.0, the last release and the only one for Python 3.11 on aarch64, is such
    a module: importing it works, creating an Interpreter then fails with "_ARRAY_API not found"
    under a SystemError that says nothing useful.
    """
    seen = 0
    while exc is not None and seen < 5:
        text = str(exc)
        if "_ARRAY_API" in text or "numpy.core.multiarray failed to import" in text:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


@dataclass(frozen=True)
class Runtime:
    name: str
    version: str
    module: Any

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    def interpreter(self, model_path: str, num_threads: int | None = None,
                    delegates: list | None = None, xnnpack: bool = True):
        """A new Interpreter for `model_path` (tensors not yet allocated).

        `xnnpack=False` asks for the plain builtin kernels, which is how a benchmark shows what
        the XNNPACK delegate is worth; tensorflow.lite and tflite_runtime accept it too.
        """
        module = self.module
        kwargs: dict[str, Any] = {"model_path": str(model_path), "num_threads": num_threads}
        if delegates:
            kwargs["experimental_delegates"] = delegates
        if not xnnpack:
            resolver = getattr(module, "experimental", module)
            op_resolver = getattr(resolver, "OpResolverType", None) or module.OpResolverType
            kwargs["experimental_op_resolver_type"] = op_resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        # numpy prints a page about that mismatch on sys.stderr before failing: held back and
        # replaced by one line; anything else printed is passed on.
        printed = io.StringIO()
        try:
            with contextlib.redirect_stderr(printed):
                interpreter = module.Interpreter(**kwargs)
        except (SystemError, ImportError) as exc:
            if _numpy_abi_mismatch(exc):
                import numpy
                raise RuntimeNumpyMismatch(
                    f"{self.label} was built against numpy 1 and cannot run with numpy "
                    f"{numpy.__version__}: pip install 'numpy<2'") from None
            sys.stderr.write(printed.getvalue())
            raise
        except BaseException:
            sys.stderr.write(printed.getvalue())
            raise
        sys.stderr.write(printed.getvalue())
        return interpreter

    def load_delegate(self, library: str, options: dict | None = None):
        loader = getattr(self.module, "load_delegate", None)
        if loader is None:
            loader = self.module.experimental.load_delegate
        return loader(library, options)


@cache
def _load(name: str) -> Runtime | None:
    for candidate, module_name, distribution in RUNTIME_CANDIDATES:
        if candidate != name:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return None
        if not hasattr(module, "Interpreter"):
            # import_module("tensorflow.lite") is TensorFlow's source package, without the
            # public API; that is the attribute path tf.lite.
            module = importlib.import_module(module_name.split(".")[0])
            for attribute in module_name.split(".")[1:]:
                module = getattr(module, attribute)
        return Runtime(name, _version(module_name, distribution), module)
    raise ValueError(f"unknown runtime {name!r}; choose from {', '.join(RUNTIME_NAMES)}")


def _version(module_name: str, distribution: str) -> str:
    """The package's own __version__ (already imported, free); the installed distribution's
    metadata only when it has none (importlib.metadata costs ~20 ms of a cold start)."""
    top = importlib.import_module(module_name.split(".")[0])
    version = getattr(top, "__version__", None)
    if isinstance(version, str) and version:
        return version
    from importlib import metadata
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def select_runtime(name: str | None = None) -> Runtime:
    """The named runtime, or the first installed one in order of preference."""
    if name is not None:
        runtime = _load(name)
        if runtime is None:
            raise RuntimeNotFound(f"the {name} runtime is not installed")
        return runtime
    for candidate in RUNTIME_NAMES:
        runtime = _load(candidate)
        if runtime is not None:
            return runtime
    raise RuntimeNotFound(
        "no TFLite interpreter is installed: pip install ai-edge-litert "
        "(or tflite-runtime on platforms without a LiteRT wheel)")


def available_runtimes() -> list[Runtime]:
    """Every installed runtime, in order of preference (imports each, TensorFlow included)."""
    return [runtime for name in RUNTIME_NAMES if (runtime := _load(name)) is not None]
