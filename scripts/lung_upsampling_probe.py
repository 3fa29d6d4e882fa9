"""Does the lung model lose time to XNNPACK's partitions? A probe: the shipped file against the
same file with its upsamplings rewritten into ops XNNPACK runs.

    python scripts/lung_upsampling_probe.py [--model models/lungs/lungs-int8.tflite]
                                            [--images 300] [--rounds 3] [--runs 300]

Keras 3's UpSampling2D(interpolation="nearest") converts to five TFLite ops: RESHAPE
[1,H,W,C] -> [1,H,1,W,C], TILE x2 on the new axis, RESHAPE [1,2H,W,1,C], TILE x2, RESHAPE
[1,2H,2W,C]. XNNPACK (LiteRT's default CPU delegate) does not take TILE, so the U-Net's four
upsamplings cut its graph into nine delegated pieces with builtin-kernel copies between them.
Four copies of the input side by side along the channels (CONCATENATION) and DEPTH_TO_SPACE
with block 2 put input[h, w, c] at output[2h+i, 2w+j, c] for every i, j: the same bytes, from
two ops XNNPACK takes, int8 included, and one scale and zero point throughout.

The probe rewrites the file that way (in memory, nothing is written), checks that both give
the same output bytes on --images lung X-rays from ../shared/data/lungs under XNNPACK and
under the builtin kernels, and times invoke() at 1 thread, the two files alternated round by
round. Prints op counts, differing outputs and p50 times; measures, asserts nothing. Needs
TensorFlow (the [train] extra) for the flatbuffer schema.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))

from covid_edge.benchmarks.cpu_features import cpu_features, summary  # noqa: E402
from covid_edge.benchmarks.device_info import cpu_model  # noqa: E402

CHAIN = ("RESHAPE", "TILE", "RESHAPE", "TILE", "RESHAPE")


def rewrite(tflite: bytes) -> tuple[bytes, int]:
    """(the model with each nearest 2x upsampling chain replaced, how many were)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(tflite, 0))
    graph = model.subgraphs[0]
    names = {value: name for name, value in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}

    def op_name(op) -> str:
        code = model.operatorCodes[op.opcodeIndex]
        return names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")

    chains = [chain for chain in _chains(graph, op_name) if _nearest_2x(model, graph, chain)]
    concat_code = _opcode(model, schema, schema.BuiltinOperator.CONCATENATION)
    depth_code = _opcode(model, schema, schema.BuiltinOperator.DEPTH_TO_SPACE)
    replaced = {}
    for chain in chains:
        source = int(graph.operators[chain[0]].inputs[0])
        target = int(graph.operators[chain[-1]].outputs[0])
        wide = schema.TensorT()
        wide.type = graph.tensors[source].type
        wide.name = graph.tensors[target].name + b"/4_copies"
        wide.shape = np.array([*graph.tensors[source].shape[:3],
                               4 * graph.tensors[source].shape[3]], dtype=np.int32)
        wide.quantization = schema.QuantizationParametersT()
        wide.quantization.scale = np.array(graph.tensors[source].quantization.scale,
                                           dtype=np.float32)
        wide.quantization.zeroPoint = np.array(graph.tensors[source].quantization.zeroPoint,
                                               dtype=np.int64)
        model.buffers.append(schema.BufferT())
        wide.buffer = len(model.buffers) - 1
        graph.tensors.append(wide)
        wide_index = len(graph.tensors) - 1
        concat = schema.OperatorT()
        concat.opcodeIndex = concat_code
        concat.inputs = np.array([source] * 4, dtype=np.int32)
        concat.outputs = np.array([wide_index], dtype=np.int32)
        concat.builtinOptionsType = schema.BuiltinOptions.ConcatenationOptions
        concat.builtinOptions = schema.ConcatenationOptionsT()
        concat.builtinOptions.axis = 3
        depth = schema.OperatorT()
        depth.opcodeIndex = depth_code
        depth.inputs = np.array([wide_index], dtype=np.int32)
        depth.outputs = np.array([target], dtype=np.int32)
        depth.builtinOptionsType = schema.BuiltinOptions.DepthToSpaceOptions
        depth.builtinOptions = schema.DepthToSpaceOptionsT()
        depth.builtinOptions.blockSize = 2
        # In the first op's place: its input exists by then, and whatever reads the chain's
        # output came after the chain's last op.
        replaced[chain[0]] = [concat, depth]
        replaced.update({index: [] for index in chain[1:]})
    graph.operators = [new for index, op in enumerate(graph.operators)
                       for new in replaced.get(index, [op])]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), len(chains)


def _chains(graph, op_name) -> list[list[int]]:
    """Runs of RESHAPE, TILE, RESHAPE, TILE, RESHAPE, each op the only reader of the last."""
    readers: dict[int, list[int]] = {}
    for index, op in enumerate(graph.operators):
        for tensor in op.inputs:
            readers.setdefault(int(tensor), []).append(index)
    outputs = {int(t) for t in graph.outputs}
    chains = []
    for start, op in enumerate(graph.operators):
        chain = [start] if op_name(op) == CHAIN[0] else []
        while chain and len(chain) < len(CHAIN):
            produced = int(graph.operators[chain[-1]].outputs[0])
            following = readers.get(produced, [])
            if produced in outputs or len(following) != 1 \
                    or op_name(graph.operators[following[0]]) != CHAIN[len(chain)]:
                chain = []
            else:
                chain.append(following[0])
        if chain:
            chains.append(chain)
    return chains


def _nearest_2x(model, graph, chain: list[int]) -> bool:
    """The shapes and tile counts of a nearest 2x upsampling of [1, H, W, C], one
    quantization from end to end."""
    ops = [graph.operators[index] for index in chain]
    source = graph.tensors[ops[0].inputs[0]]
    if source.shape is None or len(source.shape) != 4 or source.shape[0] != 1:
        return False
    _, h, w, c = (int(v) for v in source.shape)
    shapes = [[1, h, 1, w, c], [1, h, 2, w, c], [1, 2 * h, w, 1, c], [1, 2 * h, w, 2, c],
              [1, 2 * h, 2 * w, c]]
    tiles = {1: [1, 1, 2, 1, 1], 3: [1, 1, 1, 2, 1]}
    for position, op in enumerate(ops):
        output = graph.tensors[op.outputs[0]]
        if [int(v) for v in output.shape] != shapes[position] or output.type != source.type:
            return False
        if not (np.array_equal(output.quantization.scale, source.quantization.scale)
                and np.array_equal(output.quantization.zeroPoint,
                                   source.quantization.zeroPoint)):
            return False
        if position in tiles:
            multiples = graph.tensors[op.inputs[1]]
            data = model.buffers[multiples.buffer].data
            dtype = np.int64 if multiples.type == 4 else np.int32  # TensorType INT64 = 4
            if data is None or np.frombuffer(bytes(bytearray(data)), dtype).tolist() \
                    != tiles[position]:
                return False
    return True


def _opcode(model, schema, builtin: int) -> int:
    """The builtin's operator code, added if missing; version 2 has the int8 kernels."""
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            code.version = max(code.version, 2)
            return index
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 2
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def interpreter(module, content: bytes, xnnpack: bool = True):
    options = {} if xnnpack else {"experimental_op_resolver_type":
                                  module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    made = module.Interpreter(model_content=content, num_threads=1, **options)
    made.allocate_tensors()
    return made


def output(made, x: np.ndarray) -> np.ndarray:
    made.set_tensor(made.get_input_details()[0]["index"], x)
    made.invoke()
    return made.get_tensor(made.get_output_details()[0]["index"]).copy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path,
                        default=REPO_ROOT / "models" / "lungs" / "lungs-int8.tflite")
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "lungs")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=300, help="invokes per file and round")
    args = parser.parse_args()

    from covid_edge.edge_runtime.interpreter import select_runtime

    module = select_runtime().module
    print(f"host: {cpu_model()}; {summary(cpu_features())}")
    shipped = args.model.read_bytes()
    rewritten, count = rewrite(shipped)
    print(f"{args.model}: {count} upsampling chains rewritten")
    files = {"shipped": shipped, "rewritten": rewritten}
    for name, content in files.items():
        ops = collections.Counter(op["op_name"]
                                  for op in interpreter(module, content)._get_ops_details())
        print(f"  {name:9s} ops with XNNPACK: {dict(sorted(ops.items()))}")
    pairs = [(interpreter(module, shipped, xnnpack), interpreter(module, rewritten, xnnpack))
             for xnnpack in (True, False)]
    size = pairs[0][0].get_input_details()[0]["shape"][1:3]
    paths = sorted(p for p in (args.data / "images").glob("*")
                   if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:args.images]
    differing = 0
    for path in paths:
        gray = Image.open(path).convert("L").resize((int(size[1]), int(size[0])))
        x = (np.asarray(gray, dtype=np.int16) - 128).astype(np.int8)[None, ..., None]
        differing += sum(not np.array_equal(output(a, x), output(b, x)) for a, b in pairs)
    print(f"outputs differing (XNNPACK and builtin kernels, {len(paths)} X-rays): {differing}")
    timed = {name: [] for name in files}
    for _ in range(args.rounds):
        for name, content in files.items():
            made = interpreter(module, content)
            x = np.zeros(made.get_input_details()[0]["shape"], dtype=np.int8)
            index = made.get_input_details()[0]["index"]
            for run in range(args.runs + 30):
                made.set_tensor(index, x)
                start = time.perf_counter()
                made.invoke()
                if run >= 30:  # warm-up
                    timed[name].append(time.perf_counter() - start)
    p50 = {name: 1000 * statistics.median(times) for name, times in timed.items()}
    print(f"invoke p50 at 1 thread ({args.rounds} rounds x {args.runs}): "
          + ", ".join(f"{name} {ms:.3f} ms" for name, ms in p50.items())
          + f"; rewritten / shipped {p50['rewritten'] / p50['shipped']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
