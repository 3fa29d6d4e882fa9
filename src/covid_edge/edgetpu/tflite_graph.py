"""Read a .tflite file into a small plain-Python graph, without TensorFlow.

The flatbuffer accessors come from `ai_edge_litert.schema_py_generated` (the TFLite schema that
ai-edge-litert ships, read through the `flatbuffers` package it depends on), so this module
works on the device as well as on a desktop. Only what a compatibility check needs is kept:
subgraphs, operators in execution order, and their tensors' dtype, shape, shape signature,
quantization and whether they are compile-time constants.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from ..tflite_file import TFLITE_IDENTIFIER

# Small integer constants (axes, paddings, permutations) are read so that rules can look at
# them; anything larger is left in the file.
_MAX_CONSTANT_VALUES = 16


class TfliteFormatError(Exception):
    """The file is missing, unreadable, or not a TensorFlow Lite flatbuffer."""


class SchemaUnavailable(TfliteFormatError):
    """The TFLite flatbuffer schema (shipped by ai-edge-litert) cannot be imported."""


@dataclass(frozen=True)
class Quantization:
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    quantized_dimension: int = 0


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    dtype: str                       # "float32", "int8", "uint8", "int32", ...
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]  # -1 marks a dimension only known at run time
    quantization: Quantization | None
    is_constant: bool                 # backed by data in the file (weights, bias, axes)
    values: tuple[int, ...] | None = None  # small int32/int64 constants only

    @property
    def is_dynamic(self) -> bool:
        return any(dim < 0 for dim in self.shape_signature) or any(d < 0 for d in self.shape)

    @property
    def is_quantized(self) -> bool:
        return self.quantization is not None and len(self.quantization.scale) > 0

    def describe(self) -> str:
        dims = self.shape_signature if self.is_dynamic else self.shape
        shape = "x".join("?" if d < 0 else str(d) for d in dims) or "scalar"
        return f"{self.dtype}[{shape}]"


@dataclass(frozen=True)
class Operator:
    index: int
    name: str                     # builtin name, e.g. "CONV_2D"; "CUSTOM" for custom ops
    custom_code: str | None       # e.g. "edgetpu-custom-op"
    version: int
    inputs: tuple[Tensor, ...]    # optional inputs that are absent (-1) are left out
    outputs: tuple[Tensor, ...]
    fused_activation: str | None  # "NONE", "RELU6", ... for ops whose options carry one
    options: dict

    @property
    def label(self) -> str:
        return self.custom_code if self.name == "CUSTOM" and self.custom_code else self.name


@dataclass(frozen=True)
class Subgraph:
    index: int
    name: str
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


@dataclass(frozen=True)
class Graph:
    path: str
    schema_version: int
    description: str
    subgraphs: tuple[Subgraph, ...]
    metadata_names: tuple[str, ...]

    @property
    def main(self) -> Subgraph:
        return self.subgraphs[0]

    def custom_codes(self) -> list[str]:
        return sorted({op.custom_code for sg in self.subgraphs for op in sg.operators
                       if op.custom_code})


def load_schema():
    """The generated TFLite schema module, or SchemaUnavailable saying how to get it."""
    try:
        from ai_edge_litert import schema_py_generated
    except (ImportError, OSError) as exc:  # package or `flatbuffers` missing, or its library
        raise SchemaUnavailable(
            "reading .tflite files needs the TFLite schema that ai-edge-litert ships "
            f"({exc}); install it with `pip install ai-edge-litert` (64-bit Linux, macOS "
            "or Windows), or run this check on a desktop") from None
    return schema_py_generated


def _enum_names(enum_class) -> dict[int, str]:
    return {value: name for name, value in vars(enum_class).items()
            if not name.startswith("_") and isinstance(value, int)}


def _text(raw) -> str:
    if raw is None:
        return ""
    return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)


def read_graph(path: str | Path) -> Graph:
    """Parse `path`; raise TfliteFormatError with a message a user can act on."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TfliteFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TfliteFormatError(f"{path}: is a folder, not a .tflite file") from None
    except OSError as exc:
        raise TfliteFormatError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise TfliteFormatError(
            f"{path}: not a TensorFlow Lite model (a .tflite flatbuffer carries the "
            f"identifier {TFLITE_IDENTIFIER.decode()} at bytes 4-8)")
    schema = load_schema()
    try:
        return _parse(schema, data, str(path))
    except TfliteFormatError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, UnicodeDecodeError,
            AttributeError) as exc:
        # A truncated or corrupted flatbuffer fails deep inside the accessors.
        raise TfliteFormatError(
            f"{path}: the TFLite flatbuffer is damaged or truncated ({exc.__class__.__name__}: "
            f"{exc})") from None


def _parse(schema, data: bytes, path: str) -> Graph:
    model = schema.Model.GetRootAs(data, 0)
    operator_names = _enum_names(schema.BuiltinOperator)
    type_names = {code: name.lower() for code, name in _enum_names(schema.TensorType).items()}
    options_names = _enum_names(schema.BuiltinOptions)
    activation_names = _enum_names(schema.ActivationFunctionType)

    opcodes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Codes above 127 live in builtin_code; older files only fill the deprecated int8
        # field, so the real code is the larger of the two.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = operator_names.get(builtin, f"BUILTIN_{builtin}")
        custom = _text(code.CustomCode()) or None
        opcodes.append((name, custom, code.Version()))

    buffers = [model.Buffers(i) for i in range(model.BuffersLength())]

    def has_data(buffer_index: int) -> bool:
        if buffer_index <= 0 or buffer_index >= len(buffers):
            return False  # buffer 0 is the conventional empty buffer
        buffer = buffers[buffer_index]
        return buffer.DataLength() > 0 or buffer.Offset() > 1

    subgraphs = []
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        tensors = tuple(_tensor(sg.Tensors(t), t, type_names, buffers, has_data)
                        for t in range(sg.TensorsLength()))

        def pick(indices):
            return tuple(tensors[i] for i in indices if 0 <= i < len(tensors))

        operators = []
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            index = op.OpcodeIndex()
            if not 0 <= index < len(opcodes):
                raise TfliteFormatError(f"{path}: operator {o} names operator code {index}, "
                                        f"but the file has {len(opcodes)}")
            name, custom, version = opcodes[index]
            inputs = [op.Inputs(j) for j in range(op.InputsLength())]
            outputs = [op.Outputs(j) for j in range(op.OutputsLength())]
            activation, options = _options(schema, op, options_names, activation_names)
            operators.append(Operator(o, name, custom, version, pick(inputs), pick(outputs),
                                      activation, options))
        subgraphs.append(Subgraph(
            s, _text(sg.Name()), tensors, tuple(operators),
            pick(sg.Inputs(j) for j in range(sg.InputsLength())),
            pick(sg.Outputs(j) for j in range(sg.OutputsLength()))))

    if not subgraphs:
        raise TfliteFormatError(f"{path}: the model has no subgraph")
    metadata = tuple(_text(model.Metadata(i).Name()) for i in range(model.MetadataLength()))
    return Graph(path, model.Version(), _text(model.Description()), tuple(subgraphs), metadata)


def _tensor(tensor, index, type_names, buffers, has_data) -> Tensor:
    shape = tuple(int(d) for d in (tensor.ShapeAsNumpy() if tensor.ShapeLength() else ()))
    if tensor.ShapeSignatureIsNone() or tensor.ShapeSignatureLength() == 0:
        signature = shape
    else:
        signature = tuple(int(d) for d in tensor.ShapeSignatureAsNumpy())
    quant = tensor.Quantization()
    quantization = None
    if quant is not None and quant.ScaleLength() > 0:
        quantization = Quantization(
            tuple(float(v) for v in quant.ScaleAsNumpy()),
            tuple(int(v) for v in quant.ZeroPointAsNumpy()) if quant.ZeroPointLength() else (),
            int(quant.QuantizedDimension()))
    dtype = type_names.get(tensor.Type(), f"type{tensor.Type()}")
    constant = has_data(tensor.Buffer())
    values = None
    if constant and dtype in ("int32", "int64"):
        values = _small_ints(buffers[tensor.Buffer()], 4 if dtype == "int32" else 8)
    return Tensor(index, _text(tensor.Name()), dtype, shape, signature, quantization,
                  constant, values)


def _small_ints(buffer, width: int) -> tuple[int, ...] | None:
    length = buffer.DataLength()
    if length == 0 or length % width or length // width > _MAX_CONSTANT_VALUES:
        return None
    raw = buffer.DataAsNumpy().tobytes()
    return struct.unpack(f"<{length // width}{'i' if width == 4 else 'q'}", raw)


def _options(schema, op, options_names, activation_names) -> tuple[str | None, dict]:
    """The fused activation and the scalar fields of an operator's builtin options."""
    table = op.BuiltinOptions()
    class_name = options_names.get(op.BuiltinOptionsType())
    if table is None or not class_name or class_name == "NONE":
        return None, {}
    options_class = getattr(schema, class_name, None)
    if options_class is None:
        return None, {}
    options = options_class()
    options.Init(table.Bytes, table.Pos)
    fields = {}
    for attribute in dir(options_class):
        if attribute.startswith(("_", "GetRootAs", "Init")) or attribute.endswith(
                ("AsNumpy", "Length", "IsNone", "BufferHasIdentifier")):
            continue
        method = getattr(options, attribute)
        if not callable(method):
            continue
        try:
            value = method()
        except TypeError:
            continue  # vector accessors take an index: not a scalar field
        if isinstance(value, (bool, int, float)):
            fields[attribute] = value
    activation = fields.get("FusedActivationFunction")
    if activation is None:
        return None, fields
    return activation_names.get(activation, str(activation)), fields
