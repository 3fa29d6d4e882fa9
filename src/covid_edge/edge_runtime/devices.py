"""Where a model runs: the CPU, or a Coral Edge TPU through the libedgetpu delegate.

One place decides it for `classify`, `serve`, `kiosk` and `bench latency`:
`resolve_device(device, model_path, card, runtime)` returns the model file to load, the
delegates to load it with, and notices the user must see (an `auto` fallback to the CPU).

The Edge TPU delegate is libedgetpu's TFLite external-delegate plugin, loaded through the
runtime's `load_delegate` (the LiteRT delegate API). Before that, the library is opened here
with ctypes to tell apart what Coral users actually hit, each with its own fix:
- the library is not installed (or not where the loader looks),
- the library is not a TFLite delegate plugin,
- it is installed but no Edge TPU is plugged in, or one is but cannot be opened (permissions,
  another process holds it),
- the compiled model needs a newer Edge TPU runtime than the one installed,
- the model is a CPU model (no edgetpu-custom-op): the delegate would leave all of it on the CPU.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when an Edge TPU is asked for: a CPU run never pays for them
    from ..edgetpu.package import CompiledModel

DEVICES = ("cpu", "edgetpu", "auto")
# Overrides the library name: a libedgetpu built for a newer TFLite, a non-standard prefix.
LIBRARY_ENV = "COVID_EDGE_EDGETPU_LIBRARY"
# Where the Edge TPU runtime installs its delegate, per operating system (Coral's docs).
EDGETPU_LIBRARIES = {
    "Linux": "libedgetpu.so.1",
    "Darwin": "libedgetpu.1.dylib",
    "Windows": "edgetpu.dll",
}
# edgetpu_compiler names its output INPUT_edgetpu.tflite.
COMPILED_SUFFIX = "_edgetpu.tflite"
CORAL_GET_STARTED_URL = "https://coral.ai/docs/accelerator/get-started/"
INSTALL_HINT = (
    "install the Edge TPU runtime: add Coral's apt repository (deb "
    "https://packages.cloud.google.com/apt coral-edgetpu-stable main) and run "
    "`sudo apt-get install libedgetpu1-std`, then unplug and replug the USB Accelerator "
    f"(docs/coral.md; {CORAL_GET_STARTED_URL}); or point {LIBRARY_ENV} at the library")
_RUNTIME_VERSION = re.compile(r"RuntimeVersion\((\d+)\)")
# libedgetpu's own words when a package is newer than the runtime (seen on allocate).
_PACKAGE_TOO_NEW = re.compile(
    r"Package requires runtime version \((\d+)\), which is newer than this runtime version "
    r"\((\d+)\)")


class DeviceError(Exception):
    """The requested device cannot run the model; the message says what to do.

    `reason` names the case for scripts and tests: library-missing, not-a-delegate, no-device,
    cannot-open, runtime-too-old, not-compiled, compiled-only.
    """

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class EdgeTpuLibrary:
    """libedgetpu as found on this machine."""

    path: str
    version_text: str | None   # edgetpu_version(), e.g. "BuildLabel(...), RuntimeVersion(14)"
    runtime_version: int | None
    devices: int | None        # Edge TPUs the library enumerates; None if it cannot say

    def to_dict(self) -> dict:
        return {"library": self.path, "version": self.version_text,
                "runtime_version": self.runtime_version, "devices": self.devices}


@dataclass
class DeviceChoice:
    """What `resolve_device` decided."""

    requested: str               # cpu, edgetpu or auto, as asked
    device: str                  # cpu or edgetpu: where the model really runs
    model_path: Path
    delegates: list = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    edgetpu: EdgeTpuLibrary | None = None

    def to_dict(self) -> dict:
        return {"requested": self.requested, "device": self.device,
                "file": str(self.model_path), "notices": list(self.notices),
                "edgetpu": self.edgetpu.to_dict() if self.edgetpu else None}


def library_name() -> str:
    """The delegate library to load: $COVID_EDGE_EDGETPU_LIBRARY, else the platform's name."""
    import platform  # here, like ctypes below: a CPU run never needs them

    return os.environ.get(LIBRARY_ENV) or EDGETPU_LIBRARIES.get(platform.system(),
                                                                "libedgetpu.so.1")


def parse_runtime_version(text: str | None) -> int | None:
    match = _RUNTIME_VERSION.search(text or "")
    return int(match.group(1)) if match else None


def open_edgetpu_library(library: str | None = None) -> EdgeTpuLibrary:
    """Open libedgetpu with ctypes and read its version and device count, without opening a
    device. Raises DeviceError (library-missing, not-a-delegate)."""
    import ctypes

    library = library or library_name()
    try:
        handle = ctypes.CDLL(library)
    except OSError as exc:
        detail = str(exc).strip()
        if "cannot open shared object" in detail or "No such file" in detail or \
                "not found" in detail.lower() or "image not found" in detail:
            raise DeviceError(f"the Edge TPU runtime library {library} is not installed "
                              f"({detail}); {INSTALL_HINT}", "library-missing") from None
        raise DeviceError(
            f"the Edge TPU runtime library {library} cannot be loaded ({detail}): it may be "
            f"built for another CPU architecture or be damaged; {INSTALL_HINT}",
            "library-missing") from None
    if not hasattr(handle, "tflite_plugin_create_delegate"):
        raise DeviceError(
            f"{library} is not a TensorFlow Lite delegate plugin (it has no "
            "tflite_plugin_create_delegate): it is not libedgetpu; "
            f"unset {LIBRARY_ENV} or point it at libedgetpu.so.1", "not-a-delegate")
    version_text = _version_text(handle)
    return EdgeTpuLibrary(library, version_text, parse_runtime_version(version_text),
                          _device_count(handle))


def _version_text(handle) -> str | None:
    import ctypes

    function = getattr(handle, "edgetpu_version", None)
    if function is None:
        return None
    function.restype = ctypes.c_char_p
    function.argtypes = []
    raw = function()
    return raw.decode("utf-8", errors="replace") if raw else None


def _device_count(handle) -> int | None:
    """How many Edge TPUs libedgetpu enumerates (its C API edgetpu_list_devices)."""
    listing = getattr(handle, "edgetpu_list_devices", None)
    release = getattr(handle, "edgetpu_free_devices", None)
    if listing is None or release is None:
        return None
    import ctypes

    listing.restype = ctypes.c_void_p
    listing.argtypes = [ctypes.POINTER(ctypes.c_size_t)]
    release.restype = None
    release.argtypes = [ctypes.c_void_p]
    count = ctypes.c_size_t(0)
    devices = listing(ctypes.byref(count))
    if devices:
        release(devices)
    return int(count.value)


def load_edgetpu_delegate(runtime, library: str | None = None,
                          compiled: CompiledModel | None = None):
    """(delegate, EdgeTpuLibrary) for `runtime` (an interpreter.Runtime). With `compiled`, the
    model's required runtime version is checked against the library first.
    Raises DeviceError with the fix for each way it fails."""
    found = open_edgetpu_library(library)
    if compiled is not None:
        check_runtime_version(compiled, found)
    try:
        delegate = runtime.load_delegate(found.path)
    except ValueError as exc:
        raise _no_device_error(found, exc) from None
    except (OSError, AttributeError, RuntimeError) as exc:
        raise DeviceError(f"the {runtime.name} runtime could not load the Edge TPU delegate "
                          f"from {found.path} ({str(exc).strip() or type(exc).__name__})",
                          "cannot-open") from None
    return delegate, found


def _no_device_error(found: EdgeTpuLibrary, exc: Exception) -> DeviceError:
    """The plugin returned no delegate: libedgetpu could not open an Edge TPU."""
    detail = str(exc).strip().replace("\n", " ")
    detail = f" ({detail})" if detail else ""
    version = f", runtime {found.runtime_version}" if found.runtime_version else ""
    where = f"libedgetpu ({found.path}{version})"
    if found.devices == 0:
        return DeviceError(
            f"{where} is installed but found no Edge TPU{detail}. Plug the USB Accelerator "
            "into a USB 3 port and check that `lsusb` lists 1a6e:089a (Global Unichip) or "
            "18d1:9302 (Google); unplug and replug it after installing libedgetpu1-std so its "
            "udev rule applies; an M.2/PCIe Coral needs the gasket driver (/dev/apex_0)",
            "no-device")
    if found.devices:
        opened = (f"{where} found {found.devices} Edge TPU{'s' if found.devices > 1 else ''} "
                  f"but could not open one{detail}.")
    else:
        opened = f"{where} is installed but could not open an Edge TPU{detail}."
    return DeviceError(
        f"{opened} An Edge TPU serves one process at a time: stop other programs using it. "
        "If this user lacks permission: libedgetpu1-std's udev rule gives the device to the "
        "plugdev group, so run `sudo usermod -aG plugdev $USER`, log in again and replug it. "
        "If nothing is plugged in, plug the USB Accelerator into a USB 3 port", "cannot-open")


def check_runtime_version(compiled: CompiledModel, found: EdgeTpuLibrary) -> None:
    """Raise DeviceError when the compiled model needs a newer Edge TPU runtime."""
    needed, have = compiled.min_runtime_version, found.runtime_version
    if needed is None or have is None or needed <= have:
        return
    raise DeviceError(runtime_too_old_message(Path(compiled.path).name, needed, have),
                      "runtime-too-old")


def runtime_too_old_message(model_name: str, needed: int, have: int) -> str:
    return (f"{model_name} was compiled for Edge TPU runtime {needed}, but the installed "
            f"libedgetpu is runtime {have}. Update the runtime (`sudo apt-get update && sudo "
            "apt-get install libedgetpu1-std`), or recompile the CPU model for this runtime "
            f"with `edgetpu_compiler -m {have} ...`")


def compile_hint(model_path: Path) -> str:
    compiled = model_path.with_name(model_path.stem + COMPILED_SUFFIX)
    folder = model_path.parent
    if "site-packages" in folder.parts or not os.access(folder, os.W_OK):
        # The released models inside an installed package: never write there (a reinstall
        # would lose it); work on a copy of the folder, card included.
        return (f"copy the model folder somewhere writable (`cp -r {folder} ~/covid-edge-models`), "
                "compile the copy on an x86-64 Linux machine with edgetpu_compiler (or Coral's "
                f"Colab): `edgetpu_compiler -s -o ~/covid-edge-models "
                f"~/covid-edge-models/{model_path.name}`, then pass --model ~/covid-edge-models")
    return (f"compile it on an x86-64 Linux machine with edgetpu_compiler (or Coral's Colab): "
            f"`edgetpu_compiler -s -o {folder} {model_path}`, and keep {compiled.name} beside it")


def partner_model(model_path: Path, card: dict | None, want: str) -> Path | None:
    """The existing file that is `model_path` built for the other device: the model card's
    `devices` map first, else edgetpu_compiler's naming (X.tflite <-> X_edgetpu.tflite)."""
    names = {key: value for key, value in ((card or {}).get("devices") or {}).items()
             if isinstance(value, str)}
    other = "cpu" if want == "edgetpu" else "edgetpu"
    candidate = None
    if names.get(other) == model_path.name and names.get(want):
        candidate = model_path.with_name(names[want])
    elif want == "edgetpu" and not model_path.name.endswith(COMPILED_SUFFIX):
        candidate = model_path.with_name(model_path.stem + COMPILED_SUFFIX)
    elif want == "cpu" and model_path.name.endswith(COMPILED_SUFFIX):
        candidate = model_path.with_name(model_path.name[:-len(COMPILED_SUFFIX)] + ".tflite")
    return candidate if candidate is not None and candidate.is_file() else None


def _library_status(library: str | None) -> str:
    """A second problem worth fixing in the same trip, said with the first."""
    try:
        open_edgetpu_library(library)
    except DeviceError as exc:
        return f" Also: {exc}"
    return ""


def _cpu_name(model_path: Path) -> str:
    if model_path.name.endswith(COMPILED_SUFFIX):
        return f"expected {model_path.name[:-len(COMPILED_SUFFIX)]}.tflite"
    return "pass the plain int8 model, e.g. covid-edge-int8.tflite"


def _compiled(model_path: Path) -> CompiledModel | None:
    from ..edgetpu.package import read_compiled_model
    from ..edgetpu.tflite_graph import TfliteFormatError
    try:
        return read_compiled_model(model_path)
    except TfliteFormatError:
        return None  # the interpreter will say what is wrong with the file


def resolve_device(device: str, model_path: str | Path, card: dict | None, runtime,
                   library: str | None = None) -> DeviceChoice:
    """Decide where `model_path` runs. `runtime` is an interpreter.Runtime (for its delegate
    API). Raises DeviceError when `device` cannot be honoured."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    model_path = Path(model_path)
    if device == "cpu":
        # A compiled model is not refused here: the interpreter's own error (unresolved
        # custom op) is translated by explain_interpreter_failure.
        return DeviceChoice(device, "cpu", model_path)

    compiled = _compiled(model_path)
    if device == "edgetpu":
        notices = []
        if compiled is None:
            partner = partner_model(model_path, card, "edgetpu")
            if partner is None:
                raise DeviceError(
                    f"{model_path.name} is not compiled for the Edge TPU (it holds no "
                    "edgetpu-custom-op): even with the Edge TPU delegate every op would run on "
                    f"the CPU. To use the Coral, {compile_hint(model_path)}; or run it with "
                    f"--device cpu.{_library_status(library)}", "not-compiled")
            notices.append(f"--device edgetpu: running {partner.name}, the Edge TPU build of "
                           f"{model_path.name}")
            model_path, compiled = partner, _compiled(partner)
        delegate, found = load_edgetpu_delegate(runtime, library, compiled)
        return DeviceChoice(device, "edgetpu", model_path, [delegate], notices, found)

    # auto: the Edge TPU when a compiled model and the delegate are both there, else the CPU.
    tpu_model = model_path if compiled else partner_model(model_path, card, "edgetpu")
    cpu_model = partner_model(model_path, card, "cpu") if compiled else model_path
    if tpu_model is not None:
        try:
            delegate, found = load_edgetpu_delegate(
                runtime, library, compiled if tpu_model == model_path else _compiled(tpu_model))
        except DeviceError as exc:
            reason = str(exc)
        else:
            notices = [] if tpu_model == model_path else [
                f"--device auto: Edge TPU found, running {tpu_model.name}"]
            return DeviceChoice(device, "edgetpu", tpu_model, [delegate], notices, found)
    else:
        reason = f"no Edge TPU build of {model_path.name} ({compile_hint(model_path)})"
    if cpu_model is None:
        raise DeviceError(
            f"--device auto: {model_path.name} runs only on an Edge TPU, and {reason}; there "
            f"is no CPU model beside it to fall back to ({_cpu_name(model_path)})",
            "compiled-only")
    return DeviceChoice(device, "cpu", cpu_model, [],
                        [f"--device auto: running on the CPU ({cpu_model.name}): {reason}"])


def explain_interpreter_failure(model_path: Path, exc: Exception,
                                card: dict | None = None) -> str | None:
    """A user's explanation of an interpreter error that concerns the Edge TPU, else None."""
    text = str(exc)
    too_new = _PACKAGE_TOO_NEW.search(text)
    if too_new:
        return runtime_too_old_message(model_path.name, int(too_new.group(1)),
                                       int(too_new.group(2)))
    if "edgetpu-custom-op" in text and "unresolved custom op" in text.lower():
        cpu_model = partner_model(model_path, card, "cpu")
        instead = (f"pass the CPU model instead ({cpu_model.name})" if cpu_model else
                   "pass the plain int8 model instead (e.g. covid-edge-int8.tflite)")
        return (f"{model_path.name} is compiled for the Coral Edge TPU (edgetpu_compiler "
                "output): it runs only through the Edge TPU delegate (libedgetpu). Use "
                f"--device edgetpu (or auto) on a machine with a Coral; on a CPU, {instead}. "
                "`covid-edge check-edgetpu` shows what the file holds.")
    if "edgetpu" in text.lower() and "failed to prepare" in text.lower():
        return (f"the Edge TPU could not prepare {model_path.name} "
                f"({text.strip().splitlines()[0]}); check the runtime version with "
                "`covid-edge info` and the model with `covid-edge check-edgetpu`")
    return None
