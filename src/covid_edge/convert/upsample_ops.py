"""Nearest-neighbour 2x upsampling in a converted .tflite, as ops XNNPACK runs.

Keras' UpSampling2D(interpolation="nearest") reaches TFLite as RESHAPE -> TILE -> RESHAPE ->
TILE -> RESHAPE. XNNPACK has no TILE kernel, so each upsampling cuts the delegated graph: the
lung U-Net ran as 9 XNNPACK partitions with its 8 TILEs on the builtin kernels between them.
The same values come from CONCATENATION of the input with itself four times along the
channels followed by DEPTH_TO_SPACE(2): out[2h + r, 2w + s, c] = in[h, w, (2r + s) * C + c] =
x[h, w, c]. Both have int8 XNNPACK kernels and both only copy bytes (every tensor of the chain
has the input's scale and zero point), so the rewritten model gives bit-identical outputs in
one partition. On Zen 5 (AVX-512 VNNI) the lung model's invoke() took 5-8% less time at 1
thread and about 20% less at 2 (scripts/variant_latency.py, docs/lungs.md).

Only the exact chain is rewritten: shapes of a 2x upsampling, TILE multiples (1,1,2,1,1) and
(1,1,1,2,1), one quantization throughout, no other reader of the tensors after the first
RESHAPE (which the converter may share between upsamplings of one tensor).
"""

from __future__ import annotations

import numpy as np

FIRST_TILE = (1, 1, 2, 1, 1)
SECOND_TILE = (1, 1, 1, 2, 1)


def rewrite(tflite: bytes) -> tuple[bytes, int]:
    """`tflite` with every nearest 2x upsampling chain replaced; and how many were replaced.
    With none found, the bytes come back unchanged."""
    from tensorflow.lite.python import schema_py_generated as schema

    from .bias_correction import pack_tflite

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(tflite, 0))
    graph = model.subgraphs[0]
    builtin = {index: _builtin(model, op) for index, op in enumerate(graph.operators)}
    producer, readers = {}, {}
    for index, op in enumerate(graph.operators):
        for tensor in op.outputs:
            producer[int(tensor)] = index
        for tensor in op.inputs:
            readers.setdefault(int(tensor), []).append(index)

    operators, consumed, first_reshapes = [], set(), []
    for index, op in enumerate(graph.operators):
        if index in consumed:
            continue
        chain = _upsampling_chain(model, index, builtin, producer, readers, schema)
        if chain is None:
            operators.append(op)
            continue
        consumed.update(chain[1:])
        first_reshapes.append(graph.operators[chain[0]])
        operators.extend(_concat_depth_to_space(model, graph.operators[chain[0]].inputs[0],
                                                graph.operators[chain[-1]].outputs[0], schema))
    if not first_reshapes:
        return tflite, 0
    # A chain's first RESHAPE may feed another upsampling too: it goes only if nothing reads
    # its output any more.
    read = {int(t) for op in operators for t in op.inputs} | {int(t) for t in graph.outputs}
    graph.operators = [op for op in operators if not (
        any(op is reshape for reshape in first_reshapes) and int(op.outputs[0]) not in read)]
    _drop_unused_tensors(model)
    _drop_unused_buffers(model)
    _drop_unused_opcodes(model)
    return pack_tflite(model), len(first_reshapes)


def _builtin(model, op) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _upsampling_chain(model, start: int, builtin, producer, readers,
                      schema) -> list[int] | None:
    """The op indices [RESHAPE, TILE, RESHAPE, TILE, RESHAPE] of a chain whose first TILE is
    `start`, or None where `start` begins no such chain. Only the first RESHAPE's output may
    have other readers."""
    graph, ops = model.subgraphs[0], model.subgraphs[0].operators
    kind = schema.BuiltinOperator
    if builtin[start] != kind.TILE:
        return None
    first = producer.get(int(ops[start].inputs[0]))
    if first is None or builtin[first] != kind.RESHAPE:
        return None
    chain, index = [first, start], start
    for expected in (kind.RESHAPE, kind.TILE, kind.RESHAPE):
        output = int(ops[index].outputs[0])
        if len(readers.get(output, [])) != 1 or output in graph.outputs:
            return None
        index = readers[output][0]
        if builtin[index] != expected or ops[index].inputs[0] != output:
            return None
        chain.append(index)
    shapes = [_shape(graph, ops[first].inputs[0])] + [_shape(graph, ops[i].outputs[0])
                                                      for i in chain]
    if len(shapes[0]) != 4:
        return None
    n, h, w, c = shapes[0]
    if shapes[1:] != [(n, h, 1, w, c), (n, h, 2, w, c), (n, 2 * h, w, 1, c),
                      (n, 2 * h, w, 2, c), (n, 2 * h, 2 * w, c)]:
        return None
    if (_constant(model, ops[chain[1]].inputs[1], schema) != FIRST_TILE
            or _constant(model, ops[chain[3]].inputs[1], schema) != SECOND_TILE):
        return None
    tensors = [ops[first].inputs[0]] + [ops[i].outputs[0] for i in chain]
    if len({_quantization(graph.tensors[t]) for t in tensors}) != 1:
        return None
    return chain


def _shape(graph, tensor: int) -> tuple[int, ...]:
    return tuple(int(v) for v in graph.tensors[tensor].shape)


def _constant(model, tensor: int, schema) -> tuple[int, ...] | None:
    spec = model.subgraphs[0].tensors[tensor]
    dtype = {schema.TensorType.INT32: np.int32, schema.TensorType.INT64: np.int64}.get(spec.type)
    data = model.buffers[spec.buffer].data
    if dtype is None or data is None or len(data) == 0:
        return None
    return tuple(int(v) for v in np.frombuffer(bytes(bytearray(data)), dtype=dtype))


def _quantization(tensor) -> tuple:
    q = tensor.quantization
    if q is None or q.scale is None:
        return (tensor.type, None)
    return (tensor.type, tuple(np.asarray(q.scale).tolist()),
            tuple(np.asarray(q.zeroPoint).tolist()))


def _concat_depth_to_space(model, source: int, target: int, schema) -> list:
    graph = model.subgraphs[0]
    original = graph.tensors[source]
    stacked = schema.TensorT()
    stacked.shape = np.array([*original.shape[:3], 4 * original.shape[3]], dtype=np.int32)
    signature = original.shapeSignature
    if signature is not None and len(signature) == 4:  # e.g. a batch of -1 (any)
        stacked.shapeSignature = np.array([*signature[:3], 4 * signature[3]], dtype=np.int32)
    stacked.type = original.type
    stacked.quantization = original.quantization
    stacked.buffer = 0
    stacked.name = _name(original) + "/repeated_for_depth_to_space"
    graph.tensors.append(stacked)
    stacked_index = len(graph.tensors) - 1

    # The versions TensorFlow's converter gives both ops on int8 tensors (2); 1 otherwise.
    version = 2 if original.type == schema.TensorType.INT8 else 1
    concat = schema.OperatorT()
    concat.opcodeIndex = _opcode(model, schema.BuiltinOperator.CONCATENATION, schema, version)
    concat.inputs = np.array([source] * 4, dtype=np.int32)
    concat.outputs = np.array([stacked_index], dtype=np.int32)
    concat.builtinOptionsType = schema.BuiltinOptions.ConcatenationOptions
    concat.builtinOptions = schema.ConcatenationOptionsT()
    concat.builtinOptions.axis = 3

    depth_to_space = schema.OperatorT()
    depth_to_space.opcodeIndex = _opcode(model, schema.BuiltinOperator.DEPTH_TO_SPACE, schema,
                                         version)
    depth_to_space.inputs = np.array([stacked_index], dtype=np.int32)
    depth_to_space.outputs = np.array([target], dtype=np.int32)
    depth_to_space.builtinOptionsType = schema.BuiltinOptions.DepthToSpaceOptions
    depth_to_space.builtinOptions = schema.DepthToSpaceOptionsT()
    depth_to_space.builtinOptions.blockSize = 2
    return [concat, depth_to_space]


def _name(tensor) -> str:
    return tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)


def _opcode(model, builtin: int, schema, version: int = 1) -> int:
    for index, code in enumerate(model.operatorCodes):
        if (max(code.builtinCode, code.deprecatedBuiltinCode) == builtin
                and code.version >= version):
            return index
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    # Codes above 127 live only in builtinCode; the deprecated field then holds the
    # placeholder the schema reserves for them.
    code.deprecatedBuiltinCode = builtin if builtin < 127 else 127
    code.version = version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _drop_unused_tensors(model) -> None:
    """Remove the tensors no op, input or output refers to any longer (the chains' shape
    constants and intermediates), renumbering every reference."""
    graph = model.subgraphs[0]
    used = {int(t) for op in graph.operators for t in list(op.inputs) + list(op.outputs)
            if t >= 0}
    used |= {int(t) for t in graph.inputs} | {int(t) for t in graph.outputs}
    for signature in model.signatureDefs or []:
        used |= {int(m.tensorIndex) for m in (signature.inputs or []) + (signature.outputs or [])}
    keep = sorted(used)
    new_index = {old: new for new, old in enumerate(keep)}

    def renumber(indices):
        return np.array([new_index[int(t)] if t >= 0 else -1 for t in indices], dtype=np.int32)

    graph.tensors = [graph.tensors[i] for i in keep]
    for op in graph.operators:
        op.inputs, op.outputs = renumber(op.inputs), renumber(op.outputs)
        if op.intermediates is not None and len(op.intermediates):
            op.intermediates = renumber(op.intermediates)
    graph.inputs, graph.outputs = renumber(graph.inputs), renumber(graph.outputs)
    for signature in model.signatureDefs or []:
        for mapping in (signature.inputs or []) + (signature.outputs or []):
            mapping.tensorIndex = new_index[int(mapping.tensorIndex)]


def _drop_unused_opcodes(model) -> None:
    """Remove operator codes no op uses any longer (TILE): an interpreter resolves every code
    in the table when it loads a model, so a kernel set without TILE would refuse the file."""
    used = sorted({int(op.opcodeIndex) for g in model.subgraphs for op in g.operators})
    new_index = {old: new for new, old in enumerate(used)}
    model.operatorCodes = [model.operatorCodes[i] for i in used]
    for g in model.subgraphs:
        for op in g.operators:
            op.opcodeIndex = new_index[int(op.opcodeIndex)]


def _drop_unused_buffers(model) -> None:
    """Remove buffers no tensor or metadata entry refers to. Buffer 0 stays: by convention
    the empty buffer of every tensor without data."""
    used = {0} | {int(t.buffer) for g in model.subgraphs for t in g.tensors}
    used |= {int(m.buffer) for m in model.metadata or []}
    used |= {int(b) for b in (model.metadataBuffer if model.metadataBuffer is not None else [])}
    keep = sorted(used)
    new_index = {old: new for new, old in enumerate(keep)}
    model.buffers = [model.buffers[i] for i in keep]
    for g in model.subgraphs:
        for tensor in g.tensors:
            tensor.buffer = new_index[int(tensor.buffer)]
    for entry in model.metadata or []:
        entry.buffer = new_index[int(entry.buffer)]
    if model.metadataBuffer is not None:
        model.metadataBuffer = [new_index[int(b)] for b in model.metadataBuffer]
