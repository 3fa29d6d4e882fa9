"""What an `edgetpu_compiler` output file says about itself, read without TensorFlow or libedgetpu.

The compiler replaces the part of the graph it maps with one `edgetpu-custom-op`. That op's
custom options are a FlexBuffer map (libedgetpu tflite/custom_op_data.cc) whose key "4" holds
the serialized Edge TPU package: a flatbuffer with file identifier "DWN1"
(libedgetpu executable/executable.fbs, table Package). Its first field, min_runtime_version,
is what the runtime compares with its own version before it runs the model; loading a package
newer than the runtime fails with "Package requires runtime version (N), which is newer than
this runtime version (M)". Reading it here lets covid-edge say so before it opens the device.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from .compatibility import EDGETPU_CUSTOM_OP
from .tflite_graph import TFLITE_IDENTIFIER, TfliteFormatError, load_schema

PACKAGE_IDENTIFIER = b"DWN1"
_EXECUTABLE_KEY = "4"  # custom_op_data.cc: "4" ---> string (serialized executable)
# executable.fbs, table Package: field index of each value read here.
_MIN_RUNTIME_VERSION_FIELD = 0
_COMPILER_VERSION_FIELD = 4


@dataclass(frozen=True)
class EdgeTpuPackage:
    """One edgetpu-custom-op's package header."""

    operator: int
    min_runtime_version: int | None
    compiler_version: str | None


@dataclass(frozen=True)
class CompiledModel:
    """An Edge-TPU-compiled .tflite file: its packages and its input/output types."""

    path: str
    packages: tuple[EdgeTpuPackage, ...]
    input_dtypes: tuple[str, ...]
    output_dtypes: tuple[str, ...]

    @property
    def min_runtime_version(self) -> int | None:
        """The newest runtime any of its packages asks for (None if none could be read)."""
        versions = [p.min_runtime_version for p in self.packages
                    if p.min_runtime_version is not None]
        return max(versions) if versions else None


def read_compiled_model(path: str | Path) -> CompiledModel | None:
    """The Edge TPU packages of `path`, or None for a model the compiler has not touched.

    Raises TfliteFormatError for a file that is not a readable .tflite model.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TfliteFormatError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise TfliteFormatError(f"{path}: not a TensorFlow Lite model")
    schema = load_schema()
    try:
        model = schema.Model.GetRootAs(data, 0)
        custom_codes = {}
        for index in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(index).CustomCode()
            if code:
                custom_codes[index] = code.decode("utf-8", errors="replace")
        packages = []
        for s in range(model.SubgraphsLength()):
            subgraph = model.Subgraphs(s)
            for o in range(subgraph.OperatorsLength()):
                op = subgraph.Operators(o)
                if custom_codes.get(op.OpcodeIndex()) != EDGETPU_CUSTOM_OP:
                    continue
                options = (op.CustomOptionsAsNumpy().tobytes()
                           if op.CustomOptionsLength() else b"")
                packages.append(_package(o, options))
        if not packages:
            return None
        main = model.Subgraphs(0)
        type_names = {value: name.lower() for name, value in vars(schema.TensorType).items()
                      if not name.startswith("_") and isinstance(value, int)}

        def dtypes(count, index_of):
            return tuple(type_names.get(main.Tensors(index_of(i)).Type(), "unknown")
                         for i in range(count))

        return CompiledModel(str(path), tuple(packages),
                             dtypes(main.InputsLength(), main.Inputs),
                             dtypes(main.OutputsLength(), main.Outputs))
    except (struct.error, IndexError, ValueError, TypeError, AttributeError) as exc:
        raise TfliteFormatError(f"{path}: the TFLite flatbuffer is damaged or truncated "
                                f"({exc.__class__.__name__}: {exc})") from None


def _package(operator: int, custom_options: bytes) -> EdgeTpuPackage:
    """The package header inside one edgetpu-custom-op; fields it cannot read are None."""
    executable = _executable_bytes(custom_options)
    if executable is None or executable[4:8] != PACKAGE_IDENTIFIER:
        return EdgeTpuPackage(operator, None, None)
    from flatbuffers import encode, number_types
    from flatbuffers.table import Table

    root = encode.Get(number_types.UOffsetTFlags.packer_type, executable, 0)
    table = Table(bytearray(executable), root)

    def field_offset(index: int) -> int:
        return table.Offset(4 + 2 * index)  # vtable slots start after two uint16 sizes

    version_at = field_offset(_MIN_RUNTIME_VERSION_FIELD)
    version = table.Get(number_types.Int32Flags, table.Pos + version_at) if version_at else None
    compiler_at = field_offset(_COMPILER_VERSION_FIELD)
    compiler = None
    if compiler_at:
        compiler = table.String(table.Pos + compiler_at).decode("utf-8", errors="replace")
    return EdgeTpuPackage(operator, version, compiler or None)


def _executable_bytes(custom_options: bytes) -> bytes | None:
    if not custom_options:
        return None
    from flatbuffers import flexbuffers

    try:
        root = flexbuffers.GetRoot(custom_options)
        if not root.IsMap:
            return None
        value = root.AsMap[_EXECUTABLE_KEY]
        if value.IsString:
            return bytes(value.AsStringBytes)
        if value.IsBlob:
            return bytes(value.AsBlob)
    except (KeyError, IndexError, TypeError, ValueError, struct.error):
        return None
    return None
