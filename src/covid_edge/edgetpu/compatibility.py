"""Static Edge TPU compatibility: which ops `edgetpu_compiler` would map, and why not.

This reads the model only; it does not run the compiler (Linux x86-64 only, not on PyPI), so
its verdict is a forecast: the compiler has the final word.

Sources (the rules below quote them):
- Coral, "TensorFlow models on the Edge TPU", model requirements and the table of supported
  operations: https://coral.ai/docs/edgetpu/models-intro/#supported-operations
  The requirements: tensor parameters quantized to 8 bits (int8 or uint8); tensor sizes
  constant at compile time (no dynamic sizes); model parameters such as bias tensors constant
  at compile time; "tensors are either 1-, 2-, or 3-dimensional. If a tensor has more than 3
  dimensions, then only the 3 innermost dimensions may have a size greater than 1"; only the
  operations in the table. And: the compiler partitions the graph once, so at the first
  operation it cannot map, that operation and everything after it run on the CPU, even if
  later operations are supported.
- Edge TPU release notes, google-coral/edgetpu CHANGES.md: "Edge TPU runtime v13 and compiler
  2.0.291256449 (January 2020) ... Added support for ops: ExpandDims, Pack, Quantize, Sum, and
  TransposeConv".
- Compiler operation logs for models with float input and output (for example
  google-coral/edgetpu#84 and f0cal/google-coral#20): the leading float-to-int QUANTIZE is
  reported "Operation is otherwise supported, but not mapped due to some unspecified
  limitation", the trailing DEQUANTIZE "Operation is working on an unsupported data type",
  and the ops between them are still mapped. So those two conversions run on the CPU without
  cutting the graph; this module models them that way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from pathlib import Path

from .tflite_graph import Graph, Operator, Subgraph, Tensor, read_graph

CORAL_SUPPORTED_OPS_URL = "https://coral.ai/docs/edgetpu/models-intro/#supported-operations"
EDGETPU_CUSTOM_OP = "edgetpu-custom-op"
EDGETPU_DTYPES = ("int8", "uint8")

NO_FUSED_ACTIVATION = "No fused activation function."
ALL_RUNTIMES = "all runtimes"
RUNTIME_13 = "runtime 13 or later"
# In Coral's current table but neither in the runtime <= 12 table nor in the runtime-13
# release note: added in a later runtime (the table gives the exact version).
AFTER_RUNTIME_13 = "a runtime newer than 13"


@dataclass(frozen=True)
class OpSupport:
    coral_name: str
    since: str
    limitation: str = ""   # Coral's "known limitations" text, quoted


# TFLite builtin name -> the row of Coral's table. Limitation texts are Coral's wording of the
# runtime <= 12 table; where the current table relaxes one, the check says so in its reason.
SUPPORTED_OPS: dict[str, OpSupport] = {
    "ADD": OpSupport("Add", ALL_RUNTIMES),
    "AVERAGE_POOL_2D": OpSupport("AveragePool2d", ALL_RUNTIMES, NO_FUSED_ACTIVATION),
    "CONCATENATION": OpSupport(
        "Concatenation", ALL_RUNTIMES,
        "No fused activation function. If any input is a compile-time constant tensor, "
        "there must be only 2 inputs, and this constant tensor must be all zeroes "
        "(effectively, a zero-padding op)."),
    "CONV_2D": OpSupport("Conv2d", ALL_RUNTIMES),
    "DEPTHWISE_CONV_2D": OpSupport("DepthwiseConv2d", ALL_RUNTIMES),
    "EXPAND_DIMS": OpSupport("ExpandDims", RUNTIME_13),
    "FULLY_CONNECTED": OpSupport(
        "FullyConnected", ALL_RUNTIMES,
        "Only default format supported for fully-connected weights. Output tensor is "
        "one-dimensional."),
    "L2_NORMALIZATION": OpSupport("L2Normalization", ALL_RUNTIMES),
    "LOGISTIC": OpSupport("Logistic", ALL_RUNTIMES),
    "LSTM": OpSupport("LSTM", AFTER_RUNTIME_13),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": OpSupport("LSTM", AFTER_RUNTIME_13),
    "MAXIMUM": OpSupport("Maximum", ALL_RUNTIMES),
    "MAX_POOL_2D": OpSupport("MaxPool2d", ALL_RUNTIMES, NO_FUSED_ACTIVATION),
    "MEAN": OpSupport("Mean", ALL_RUNTIMES,
                      "Supports reduction along x- and/or y-dimensions only."),
    "MINIMUM": OpSupport("Minimum", ALL_RUNTIMES),
    "MUL": OpSupport("Mul", ALL_RUNTIMES),
    "PACK": OpSupport("Pack", RUNTIME_13),
    "PAD": OpSupport("Pad", ALL_RUNTIMES, "Supports padding along x- and/or y-dimensions only."),
    "PRELU": OpSupport("PReLU", AFTER_RUNTIME_13),
    "QUANTIZE": OpSupport("Quantize", RUNTIME_13),
    "REDUCE_MAX": OpSupport("ReduceMax", AFTER_RUNTIME_13),
    "REDUCE_MIN": OpSupport("ReduceMin", AFTER_RUNTIME_13),
    "RELU": OpSupport("ReLU", ALL_RUNTIMES),
    "RELU6": OpSupport("ReLU6", ALL_RUNTIMES),
    "RELU_N1_TO_1": OpSupport("ReLUN1To1", ALL_RUNTIMES),
    "RESHAPE": OpSupport("Reshape", ALL_RUNTIMES),
    "RESIZE_BILINEAR": OpSupport(
        "ResizeBilinear", ALL_RUNTIMES,
        "Input/output is a 3-dimensional tensor. Depending on input/output size, this "
        "operation may not be mapped to the Edge TPU to avoid loss in precision."),
    "RESIZE_NEAREST_NEIGHBOR": OpSupport(
        "ResizeNearestNeighbor", ALL_RUNTIMES,
        "Input/output is a 3-dimensional tensor. Depending on input/output size, this "
        "operation may not be mapped to the Edge TPU to avoid loss in precision."),
    "RSQRT": OpSupport("Rsqrt", AFTER_RUNTIME_13),
    "SLICE": OpSupport("Slice", ALL_RUNTIMES),
    "SOFTMAX": OpSupport("Softmax", ALL_RUNTIMES,
                         "Supports only 1D input tensor with a max of 16,000 elements."),
    "SPACE_TO_DEPTH": OpSupport("SpaceToDepth", ALL_RUNTIMES),
    "SPLIT": OpSupport("Split", ALL_RUNTIMES),
    "SQUARED_DIFFERENCE": OpSupport("SquaredDifference", AFTER_RUNTIME_13),
    "SQUEEZE": OpSupport(
        "Squeeze", ALL_RUNTIMES,
        "Supported only when input tensor dimensions that have leading 1s (that is, no "
        "relayout needed)."),
    "STRIDED_SLICE": OpSupport(
        "StridedSlice", ALL_RUNTIMES,
        "Supported only when all strides are equal to 1 (that is, effectively a Stride op), "
        "and with ellipsis-axis-mask == 0, and new-axis-max == 0."),
    "SUB": OpSupport("Sub", ALL_RUNTIMES),
    "SUM": OpSupport("Sum", RUNTIME_13),
    "TANH": OpSupport("Tanh", ALL_RUNTIMES),
    "TRANSPOSE": OpSupport("Transpose", AFTER_RUNTIME_13),
    "TRANSPOSE_CONV": OpSupport("TransposeConv", RUNTIME_13),
}

SOFTMAX_MAX_ELEMENTS = 16_000

GENERAL_NOTES = (
    "Static forecast from the file alone; `edgetpu_compiler -s MODEL.tflite` has the final word "
    "(it also decides size-dependent cases and on-chip memory use).",
    "Coral publishes no limit on TFLite operator versions, so versions are listed, not judged; "
    "a compiler older than the converter can still refuse a newer op version (e.g. "
    "google-coral/edgetpu#147: \"Didn't find op for builtin opcode 'TRANSPOSE_CONV' version "
    "'3'\").",
)


@dataclass
class OpVerdict:
    subgraph: int
    index: int
    op: str
    custom_code: str | None
    version: int
    placement: str                       # "edgetpu" or "cpu"
    reasons: list[str] = field(default_factory=list)   # why it is not mapped
    notes: list[str] = field(default_factory=list)     # caveats that do not change placement
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.custom_code if self.op == "CUSTOM" and self.custom_code else self.op

    @property
    def mapped(self) -> bool:
        return self.placement == "edgetpu"

    def to_dict(self) -> dict:
        return {"subgraph": self.subgraph, "index": self.index, "op": self.op,
                "custom_code": self.custom_code, "version": self.version,
                "placement": self.placement, "reasons": self.reasons, "notes": self.notes,
                "inputs": self.inputs, "outputs": self.outputs}


@dataclass
class Report:
    path: str
    compiled: bool
    ops: list[OpVerdict]
    first_unmapped: OpVerdict | None
    ops_after_first_unmapped: int
    model_issues: list[str]
    notes: list[str]

    @property
    def mapped(self) -> int:
        return sum(op.mapped for op in self.ops)

    @property
    def on_cpu(self) -> int:
        return len(self.ops) - self.mapped

    @property
    def fully_mapped(self) -> bool:
        return not self.compiled and self.on_cpu == 0 and not self.model_issues

    @property
    def edgetpu_custom_ops(self) -> list[OpVerdict]:
        return [op for op in self.ops if op.custom_code == EDGETPU_CUSTOM_OP]

    @property
    def verdict(self) -> str:
        if self.compiled:
            return "already-compiled"
        return "maps-fully" if self.fully_mapped else "cpu-fallback"

    def to_dict(self) -> dict:
        first = self.first_unmapped
        return {
            "file": self.path,
            "verdict": self.verdict,
            "compiled": self.compiled,
            "edgetpu_custom_ops": [op.index for op in self.edgetpu_custom_ops],
            "summary": {
                "ops": len(self.ops), "edgetpu": self.mapped, "cpu": self.on_cpu,
                "first_unmapped": None if first is None else {
                    "subgraph": first.subgraph, "index": first.index, "op": first.label,
                    "reasons": first.reasons},
                "ops_after_first_unmapped": self.ops_after_first_unmapped,
            },
            "model_issues": self.model_issues,
            "ops": [op.to_dict() for op in self.ops],
            "notes": self.notes,
            "reference": CORAL_SUPPORTED_OPS_URL,
        }


def check_file(path: str | Path) -> Report:
    return check_graph(read_graph(path))


def check_graph(graph: Graph) -> Report:
    if EDGETPU_CUSTOM_OP in graph.custom_codes():
        return _compiled_report(graph)
    main = graph.main
    verdicts = [_judge(main, op) for op in main.operators]
    first_cut = None
    for verdict, op in zip(verdicts, main.operators):
        if first_cut is None and verdict.reasons and not _is_edge_conversion(main, op):
            first_cut = verdict
        elif first_cut is not None and verdict.mapped:
            verdict.placement = "cpu"
            verdict.reasons.append(
                f"after the partition point: the compiler maps the graph only up to its first "
                f"unmapped op (#{first_cut.index} {first_cut.label}) and runs the rest on the CPU")
    after = 0 if first_cut is None else len(main.operators) - first_cut.index - 1

    issues = _model_issues(graph)
    for sg in graph.subgraphs[1:]:
        for op in sg.operators:
            verdict = _judge(sg, op)
            verdict.placement = "cpu"
            verdict.reasons.insert(0, f"in subgraph {sg.index}: the Edge TPU compiles one "
                                      "subgraph")
            verdicts.append(verdict)
    return Report(graph.path, False, verdicts, first_cut, after, issues, list(GENERAL_NOTES))


def _compiled_report(graph: Graph) -> Report:
    verdicts = []
    for sg in graph.subgraphs:
        for op in sg.operators:
            verdict = OpVerdict(sg.index, op.index, op.name, op.custom_code, op.version, "cpu",
                                inputs=[_tensor_text(t) for t in op.inputs],
                                outputs=[_tensor_text(t) for t in op.outputs])
            if op.custom_code == EDGETPU_CUSTOM_OP:
                verdict.placement = "edgetpu"
                verdict.notes.append("compiled by edgetpu_compiler: runs on the Edge TPU "
                                     "through the libedgetpu delegate")
            else:
                verdict.reasons.append("left on the CPU by edgetpu_compiler")
            verdicts.append(verdict)
    notes = ["Already compiled for the Edge TPU: the compiler's segment is the "
             f"'{EDGETPU_CUSTOM_OP}' custom op. Run it with the Edge TPU delegate "
             "(libedgetpu); plain LiteRT cannot resolve that op."]
    return Report(graph.path, True, verdicts, None, 0, [], notes)


def _model_issues(graph: Graph) -> list[str]:
    issues = []
    if len(graph.subgraphs) > 1:
        issues.append(f"the model has {len(graph.subgraphs)} subgraphs (control flow or several "
                      "signatures); the Edge TPU compiles one, the ops of the others run on "
                      "the CPU")
    for tensor in graph.main.inputs:
        if tensor.shape_signature and tensor.shape_signature[0] < 0:
            issues.append(f"input '{short_name(tensor.name)}' has a dynamic batch size "
                          f"{_shape_text(tensor.shape_signature)}: convert with a fixed batch "
                          "of 1")
        elif len(tensor.shape) >= 2 and tensor.shape[0] != 1:
            issues.append(f"input '{short_name(tensor.name)}' has batch size {tensor.shape[0]}: the Edge "
                          "TPU runs batch 1")
    for tensor in graph.main.inputs + graph.main.outputs:
        if tensor.dtype not in EDGETPU_DTYPES:
            role = "input" if tensor in graph.main.inputs else "output"
            issues.append(f"model {role} '{short_name(tensor.name)}' is {tensor.dtype}: for the Edge TPU "
                          "convert with inference_input_type/inference_output_type int8 or "
                          "uint8 (a float end adds a QUANTIZE/DEQUANTIZE that runs on the CPU)")
    return issues


def _is_edge_conversion(subgraph: Subgraph, op: Operator) -> bool:
    """The float<->int conversion at a model's ends, which the compiler leaves on the CPU."""
    graph_inputs = {t.index for t in subgraph.inputs}
    graph_outputs = {t.index for t in subgraph.outputs}
    if op.name == "QUANTIZE":
        return bool(op.inputs) and all(t.index in graph_inputs and t.dtype not in EDGETPU_DTYPES
                                       for t in op.inputs)
    if op.name == "DEQUANTIZE":
        return bool(op.outputs) and all(t.index in graph_outputs for t in op.outputs)
    return False


def _judge(subgraph: Subgraph, op: Operator) -> OpVerdict:
    verdict = OpVerdict(subgraph.index, op.index, op.name, op.custom_code, op.version, "edgetpu",
                        inputs=[_tensor_text(t) for t in op.inputs],
                        outputs=[_tensor_text(t) for t in op.outputs])
    support = SUPPORTED_OPS.get(op.name)
    if op.name == "CUSTOM":
        verdict.reasons.append(f"custom op '{op.custom_code}' is not an Edge TPU operation")
    elif support is None:
        verdict.reasons.append(f"{op.name} is not in Coral's table of supported operations")
    if op.name == "QUANTIZE" and _is_edge_conversion(subgraph, op):
        verdict.reasons.append(
            "converts the float model input to integers: the compiler leaves this QUANTIZE on "
            "the CPU (its log: 'Operation is otherwise supported, but not mapped due to some "
            "unspecified limitation') and maps what follows")
    elif op.name == "DEQUANTIZE" and _is_edge_conversion(subgraph, op):
        verdict.reasons.append("converts the output back to float: runs on the CPU at the end "
                               "of the graph")
    else:
        verdict.reasons.extend(_tensor_problems(op))
    if support is not None and not verdict.reasons:
        _check_limitation(op, support, verdict)
        if support.since != ALL_RUNTIMES:
            verdict.notes.append(f"{support.coral_name} needs Edge TPU {support.since}")
    verdict.placement = "cpu" if verdict.reasons else "edgetpu"
    return verdict


def _tensor_problems(op: Operator) -> list[str]:
    """Tensor-level requirements: 8-bit quantized, static shapes, at most 3 non-unit dims."""
    unquantized, wrong_type, dynamic, high_rank = [], [], [], []
    tensors = [("constant" if t.is_constant else "input", t) for t in op.inputs] + [
        ("output", t) for t in op.outputs]
    for role, tensor in tensors:
        where = f"{role} {tensor.describe()} '{short_name(tensor.name)}'"
        if tensor.dtype.startswith("float"):
            unquantized.append(where)
        elif tensor.dtype in EDGETPU_DTYPES:
            if not tensor.is_quantized:
                unquantized.append(where + " without scale/zero point")
        elif not tensor.is_constant:
            # int32 constants (bias, shapes, axes) are fine; int32/int16/bool activations not.
            wrong_type.append(where)
        if tensor.is_dynamic:
            dynamic.append(f"{role} {_shape_text(tensor.shape_signature)} "
                           f"'{short_name(tensor.name)}'")
        if not tensor.is_constant and len(tensor.shape) > 3 and any(
                dim > 1 for dim in tensor.shape[:-3]):
            high_rank.append(where)
    problems = []
    if unquantized:
        problems.append("not quantized to 8 bits (the Edge TPU needs int8/uint8 tensors): "
                        + _listing(unquantized))
    if wrong_type:
        problems.append("tensor type the Edge TPU does not run: " + _listing(wrong_type))
    if dynamic:
        problems.append("dynamic shape (sizes must be fixed at compile time): "
                        + _listing(dynamic))
    if high_rank:
        problems.append("more than 3 innermost non-unit dimensions (only the 3 innermost "
                        "dimensions may be larger than 1; batch must be 1): "
                        + _listing(high_rank))
    return problems


def _listing(items: list[str], most: int = 3) -> str:
    shown = "; ".join(items[:most])
    return shown if len(items) <= most else f"{shown}; and {len(items) - most} more"


def short_name(name: str, most: int = 48) -> str:
    """A converter tensor name cut to its meaningful tail: TF joins fused names with ';' and
    prefixes every layer path with the model's scopes."""
    first = name.split(";")[0]
    tail = "/".join(first.split("/")[-2:])
    return tail if len(tail) <= most else "..." + tail[-(most - 3):]


def _check_limitation(op: Operator, support: OpSupport, verdict: OpVerdict) -> None:
    """Coral's per-op limitations, where the file alone can decide them."""
    quote = f"Coral's table: \"{support.limitation}\""
    if support.limitation.startswith(NO_FUSED_ACTIVATION) and op.fused_activation not in (
            None, "NONE"):
        verdict.reasons.append(f"fused activation {op.fused_activation}; {quote}")
    if support.limitation == NO_FUSED_ACTIVATION:
        return
    if op.name == "CONCATENATION":
        if any(t.is_constant for t in op.inputs) and len(op.inputs) != 2:
            verdict.reasons.append(f"a constant input among {len(op.inputs)} inputs; {quote}")
    elif op.name == "FULLY_CONNECTED":
        if op.options.get("WeightsFormat", 0) != 0:
            verdict.reasons.append(f"non-default weights format; {quote}")
    elif op.name == "SOFTMAX" and op.inputs:
        shape = op.inputs[0].shape
        non_unit = [d for d in shape if d != 1]
        if len(non_unit) > 1 or prod(shape) > SOFTMAX_MAX_ELEMENTS:
            verdict.reasons.append(f"input {_shape_text(shape)}; {quote}")
    elif op.name in ("MEAN", "PAD"):
        _check_xy_only(op, quote, verdict)
    elif op.name == "STRIDED_SLICE":
        strides = op.inputs[3].values if len(op.inputs) > 3 else None
        masks = (op.options.get("EllipsisMask", 0), op.options.get("NewAxisMask", 0))
        if (strides is not None and any(s != 1 for s in strides)) or any(masks):
            verdict.reasons.append(f"strides {strides}, ellipsis/new-axis masks {masks}; {quote}")
        elif strides is None:
            verdict.notes.append(f"strides not constant, not checked; {quote}")
    elif support.limitation:
        verdict.notes.append(f"not checked statically; {quote}")


def _check_xy_only(op: Operator, quote: str, verdict: OpVerdict) -> None:
    """MEAN axes / PAD paddings must touch only y and x (dims 1 and 2 of NHWC)."""
    data, second = op.inputs[0], op.inputs[1] if len(op.inputs) > 1 else None
    relaxed = "(runtime <= 12 wording; later runtimes relax some cases: confirm with " \
              "edgetpu_compiler)"
    if second is None or second.values is None or len(data.shape) != 4:
        verdict.notes.append(f"not checked statically; {quote}")
        return
    if op.name == "MEAN":
        axes = {a % 4 for a in second.values}
        if not axes <= {1, 2}:
            verdict.reasons.append(f"reduces axes {sorted(axes)} of a 4-D tensor; {quote} "
                                   + relaxed)
    else:
        pads = second.values
        batch_and_channel = (pads[0], pads[1], pads[6], pads[7]) if len(pads) == 8 else ()
        if any(batch_and_channel):
            verdict.reasons.append(f"pads batch or channel dimensions {list(pads)}; {quote} "
                                   + relaxed)


def _shape_text(dims) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def _tensor_text(tensor: Tensor) -> str:
    kind = "const " if tensor.is_constant else ""
    return f"{kind}{tensor.describe()} '{tensor.name}'"
