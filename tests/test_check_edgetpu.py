"""`covid-edge check-edgetpu`: the static Edge TPU compatibility check, on real .tflite files.

The reference files come from ../shared/reference; rule cases are real flatbuffers written by
editing Google's MobileNetV2 with the TFLite schema's object API (LiteRT still loads them)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import EDGETPU_REFERENCE, REFERENCE, float_variant, subprocess_env

from covid_edge.cli import main
from covid_edge.edgetpu.compatibility import (CORAL_SUPPORTED_OPS_URL, EDGETPU_CUSTOM_OP,
                                              SUPPORTED_OPS, check_file)
from covid_edge.edgetpu.tflite_graph import TfliteFormatError, load_schema, read_graph

UINT8_REFERENCE = REFERENCE / "mobilenet_v2_1.0_224_quant.tflite"
V2_OPS = 66
AVERAGE_POOL_OP = 62  # MobileNetV2's global pooling, three ops before the end


@pytest.fixture(scope="module", autouse=True)
def reference_files():
    for path in (UINT8_REFERENCE, EDGETPU_REFERENCE):
        if not path.is_file():
            pytest.skip(f"reference model not found at {path}")


def run_cli(*args):
    result = CliRunner().invoke(main, ["check-edgetpu", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def edited_reference(tmp_path, edit, name="edited.tflite"):
    """Write a copy of the uint8 MobileNetV2 after `edit(model, schema)` changed it."""
    import flatbuffers
    schema = load_schema()
    model = schema.ModelT.InitFromPackedBuf(UINT8_REFERENCE.read_bytes(), 0)
    edit(model, schema)
    builder = flatbuffers.Builder(4 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path = tmp_path / name
    path.write_bytes(bytes(builder.Output()))
    return path


# --- reading the flatbuffer ------------------------------------------------------------------

def test_reads_the_reference_graph():
    graph = read_graph(UINT8_REFERENCE)
    assert len(graph.subgraphs) == 1
    ops = graph.main.operators
    assert len(ops) == V2_OPS
    assert (ops[0].name, ops[-1].name) == ("CONV_2D", "SOFTMAX")
    assert ops[0].fused_activation == "RELU6"
    (image,) = graph.main.inputs
    assert (image.dtype, image.shape, image.shape_signature) == ("uint8", (1, 224, 224, 3),
                                                                 (1, 224, 224, 3))
    assert image.quantization.scale == (0.0078125,) and image.quantization.zero_point == (128,)
    reshape = ops[64]
    assert reshape.name == "RESHAPE" and reshape.inputs[1].values == (1, 1001)
    assert reshape.inputs[1].is_constant and not reshape.inputs[0].is_constant


def test_real_builtin_code_is_the_larger_of_the_two_fields(tmp_path):
    # Codes above 127 live in builtin_code; deprecated_builtin_code then holds 127.
    def use_gelu(model, schema):
        model.operatorCodes.append(schema.OperatorCodeT(
            deprecatedBuiltinCode=schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES,
            builtinCode=schema.BuiltinOperator.GELU))
        model.subgraphs[0].operators[30].opcodeIndex = len(model.operatorCodes) - 1
    graph = read_graph(edited_reference(tmp_path, use_gelu))
    assert graph.main.operators[30].name == "GELU"


def test_every_table_entry_is_a_tflite_builtin():
    builtins = {name for name in vars(load_schema().BuiltinOperator) if not name.startswith("_")}
    assert set(SUPPORTED_OPS) <= builtins
    assert "DEQUANTIZE" not in SUPPORTED_OPS and "HARD_SWISH" not in SUPPORTED_OPS


def test_a_photo_is_not_a_tflite_model():
    photo = sorted((REFERENCE / "photos").glob("*.jpg"))[0]
    with pytest.raises(TfliteFormatError, match="not a TensorFlow Lite model"):
        read_graph(photo)
    result = run_cli(photo)
    assert result.exit_code == 3
    assert "not a TensorFlow Lite model" in result.output
    assert "Traceback" not in result.output


def test_a_truncated_model_is_reported_not_crashed(tmp_path):
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(UINT8_REFERENCE.read_bytes()[:4096])
    with pytest.raises(TfliteFormatError, match="damaged or truncated"):
        read_graph(truncated)
    result = run_cli(truncated, "--json")
    assert result.exit_code == 3
    assert "damaged or truncated" in json.loads(result.stdout)["error"]


def test_a_missing_file_or_a_folder_is_not_a_readable_tflite_file(tmp_path):
    """Exit 3 as the help says, with the JSON error document under --json; no MODEL at all
    is the usage error (2)."""
    missing = tmp_path / "nope.tflite"
    (tmp_path / "empty").mkdir()
    for path, message in ((missing, "no such file"), (tmp_path / "empty", "a folder")):
        result = run_cli(path)
        assert result.exit_code == 3, result.output
        assert message in result.output and "Usage:" not in result.output
        result = run_cli(path, "--json")
        assert result.exit_code == 3, result.output
        payload = json.loads(result.stdout)
        assert payload["exit_code"] == 3 and payload["file"] == str(path)
        assert message in payload["error"] and "not a medical device" in payload["disclaimer"]
    assert run_cli().exit_code == 2
    result = run_cli("--json")
    assert result.exit_code == 2 and json.loads(result.stdout)["exit_code"] == 2


def test_a_folder_with_models_names_one_of_them():
    result = run_cli(REFERENCE)
    assert result.exit_code == 3
    assert "name one of its .tflite files" in result.output


def test_json_errors_carry_the_exit_code(tmp_path):
    renamed = tmp_path / "notes.tflite"
    renamed.write_text("a text file, renamed")
    result = run_cli(renamed, "--json")
    assert result.exit_code == 3
    payload = json.loads(result.stdout)
    assert payload["exit_code"] == 3 and payload["file"] == str(renamed)
    assert "not a TensorFlow Lite model" in payload["error"]


def test_missing_schema_package_gives_an_actionable_error():
    code = ("import sys; sys.modules['ai_edge_litert'] = None\n"
            "from covid_edge.cli import main\n"
            f"main(['check-edgetpu', {str(UINT8_REFERENCE)!r}])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=subprocess_env(), timeout=120)
    assert done.returncode == 3
    assert "pip install ai-edge-litert" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_check_never_imports_tensorflow():
    code = ("import sys\n"
            "from covid_edge.edgetpu.compatibility import check_file\n"
            f"assert check_file({str(UINT8_REFERENCE)!r}).fully_mapped\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'matplotlib'))\n"
            "print(heavy)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=subprocess_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- reference models ------------------------------------------------------------------------

def test_uint8_reference_maps_fully():
    report = check_file(UINT8_REFERENCE)
    assert report.verdict == "maps-fully"
    assert (report.mapped, report.on_cpu, report.first_unmapped) == (V2_OPS, 0, None)
    assert not report.model_issues
    result = run_cli(UINT8_REFERENCE)
    assert result.exit_code == 0
    assert f"all {V2_OPS} ops would map to the Edge TPU" in result.output
    assert CORAL_SUPPORTED_OPS_URL in result.output


def test_uint8_reference_json():
    result = run_cli(UINT8_REFERENCE, "--json")
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["verdict"] == "maps-fully" and payload["compiled"] is False
    assert payload["summary"]["edgetpu"] == V2_OPS and payload["summary"]["cpu"] == 0
    assert len(payload["ops"]) == V2_OPS
    assert {op["placement"] for op in payload["ops"]} == {"edgetpu"}
    assert payload["reference"] == CORAL_SUPPORTED_OPS_URL


def test_compiled_reference_is_recognised():
    report = check_file(EDGETPU_REFERENCE)
    assert report.compiled and report.verdict == "already-compiled"
    assert [op.custom_code for op in report.edgetpu_custom_ops] == [EDGETPU_CUSTOM_OP]
    result = run_cli(EDGETPU_REFERENCE)
    assert result.exit_code == 0
    assert "Already compiled for the Edge TPU" in result.output
    assert EDGETPU_CUSTOM_OP in result.output
    payload = json.loads(run_cli(EDGETPU_REFERENCE, "--json").stdout)
    assert payload["verdict"] == "already-compiled" and payload["edgetpu_custom_ops"] == [0]


# --- rules, on edited copies of the reference ------------------------------------------------

def test_first_unmapped_op_sends_the_rest_to_the_cpu(tmp_path):
    def hard_swish_at_30(model, schema):
        model.operatorCodes.append(schema.OperatorCodeT(
            deprecatedBuiltinCode=schema.BuiltinOperator.HARD_SWISH,
            builtinCode=schema.BuiltinOperator.HARD_SWISH))
        model.subgraphs[0].operators[30].opcodeIndex = len(model.operatorCodes) - 1
    path = edited_reference(tmp_path, hard_swish_at_30)
    report = check_file(path)
    assert report.first_unmapped.index == 30
    assert "HARD_SWISH is not in Coral's table" in report.first_unmapped.reasons[0]
    assert report.mapped == 30 and report.on_cpu == V2_OPS - 30
    assert report.ops_after_first_unmapped == V2_OPS - 31
    assert all("after the partition point" in op.reasons[-1] for op in report.ops[31:])
    result = run_cli(path, "--cpu-only")
    assert result.exit_code == 1
    assert "op #30 HARD_SWISH is the first op the compiler cannot map" in result.output
    assert f"{V2_OPS - 31} ops after it" in result.output


def test_dynamic_batch_is_flagged(tmp_path):
    def dynamic_batch(model, schema):
        sg = model.subgraphs[0]
        sg.tensors[sg.inputs[0]].shapeSignature = np.array([-1, 224, 224, 3], np.int32)
    report = check_file(edited_reference(tmp_path, dynamic_batch))
    assert report.first_unmapped.index == 0
    assert any("dynamic shape" in r for r in report.first_unmapped.reasons)
    assert any("dynamic batch" in issue for issue in report.model_issues)
    assert report.mapped == 0


def test_batch_of_two_breaks_the_rank_rule(tmp_path):
    def batch_two(model, schema):
        sg = model.subgraphs[0]
        sg.tensors[sg.inputs[0]].shape = np.array([2, 224, 224, 3], np.int32)
    report = check_file(edited_reference(tmp_path, batch_two))
    assert report.first_unmapped.index == 0
    assert any("more than 3 innermost non-unit dimensions" in r
               for r in report.first_unmapped.reasons)
    assert any("batch size 2" in issue for issue in report.model_issues)


def test_fused_activation_on_pooling_is_not_mapped(tmp_path):
    def relu_on_pool(model, schema):
        options = model.subgraphs[0].operators[AVERAGE_POOL_OP].builtinOptions
        options.fusedActivationFunction = schema.ActivationFunctionType.RELU
    report = check_file(edited_reference(tmp_path, relu_on_pool))
    first = report.first_unmapped
    assert (first.index, first.op) == (AVERAGE_POOL_OP, "AVERAGE_POOL_2D")
    assert "No fused activation function." in first.reasons[0]
    assert report.ops_after_first_unmapped == V2_OPS - AVERAGE_POOL_OP - 1


def test_float_ends_run_on_the_cpu_without_cutting_the_graph(tmp_path):
    def float_ends(model, schema):
        sg = model.subgraphs[0]
        codes = model.operatorCodes
        for code in (schema.BuiltinOperator.QUANTIZE, schema.BuiltinOperator.DEQUANTIZE):
            codes.append(schema.OperatorCodeT(deprecatedBuiltinCode=code, builtinCode=code))
        quantize, dequantize = len(codes) - 2, len(codes) - 1
        old_in, old_out = sg.inputs[0], sg.outputs[0]
        sg.tensors.append(schema.TensorT(shape=np.array([1, 224, 224, 3], np.int32),
                                         type=schema.TensorType.FLOAT32, name="image_float"))
        sg.tensors.append(schema.TensorT(shape=np.array([1, 1001], np.int32),
                                         type=schema.TensorType.FLOAT32, name="scores_float"))
        new_in, new_out = len(sg.tensors) - 2, len(sg.tensors) - 1
        sg.operators = ([schema.OperatorT(opcodeIndex=quantize, inputs=[new_in],
                                          outputs=[old_in])]
                        + sg.operators
                        + [schema.OperatorT(opcodeIndex=dequantize, inputs=[old_out],
                                            outputs=[new_out])])
        sg.inputs, sg.outputs = [new_in], [new_out]
    path = edited_reference(tmp_path, float_ends)

    # The edited file is a working model: LiteRT runs it end to end.
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"],
                           np.zeros((1, 224, 224, 3), np.float32))
    interpreter.invoke()

    report = check_file(path)
    assert (report.mapped, report.on_cpu) == (V2_OPS, 2)
    assert report.first_unmapped is None
    assert report.ops[0].op == "QUANTIZE" and not report.ops[0].mapped
    assert "unspecified limitation" in report.ops[0].reasons[0]
    assert report.ops[-1].op == "DEQUANTIZE" and not report.ops[-1].mapped
    assert all(op.mapped for op in report.ops[1:-1])
    assert any("float32" in issue for issue in report.model_issues)
    assert run_cli(path).exit_code == 1


def test_a_second_subgraph_is_flagged(tmp_path):
    def two_subgraphs(model, schema):
        model.subgraphs.append(copy.deepcopy(model.subgraphs[0]))
    report = check_file(edited_reference(tmp_path, two_subgraphs))
    assert any("2 subgraphs" in issue for issue in report.model_issues)
    assert report.mapped == V2_OPS and report.on_cpu == V2_OPS
    assert all("in subgraph 1" in op.reasons[0] for op in report.ops if op.subgraph == 1)
    assert run_cli(edited_reference(tmp_path, two_subgraphs, "two.tflite")).exit_code == 1


# --- our models ------------------------------------------------------------------------------

def _variant_path(models_dir, model_card, name):
    variant = model_card["variants"].get(name)
    if variant is None:
        pytest.skip(f"the model card in {models_dir} has no {name} variant")
    return models_dir / variant["file"]


def test_our_int8_model_maps_fully(models_dir, model_card):
    path = _variant_path(models_dir, model_card, "int8")
    report = check_file(path)
    assert report.verdict == "maps-fully", [
        (op.index, op.label, op.reasons) for op in report.ops if not op.mapped]
    assert report.first_unmapped is None
    result = run_cli(path)
    assert result.exit_code == 0
    assert f"all {len(report.ops)} ops would map" in result.output


def test_our_float_model_fails_with_clear_reasons(models_dir, model_card):
    path = _variant_path(models_dir, model_card, float_variant(models_dir, model_card))
    report = check_file(path)
    assert report.verdict == "cpu-fallback"
    assert report.first_unmapped.index == 0 and report.mapped == 0
    assert any("not quantized to 8 bits" in r and "float32" in r
               for r in report.first_unmapped.reasons)
    assert any("float32" in issue for issue in report.model_issues)
    result = run_cli(path)
    assert result.exit_code == 1
    assert "is the first op the compiler cannot map" in result.output
    assert "not quantized to 8 bits" in result.output


# --- the model's input and output types ------------------------------------------------------

@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_8_bit_model_ends_are_not_reported_as_float(tmp_path, dtype):
    """uint8 ends (Coral's own models) and int8 ends (ours) are both what the Edge TPU takes;
    only a float end is a model issue, and it names the end that is float."""
    def retype(model, schema):
        sg = model.subgraphs[0]
        code = getattr(schema.TensorType, dtype.upper())
        for index in (sg.inputs[0], sg.outputs[0]):
            sg.tensors[index].type = code
    report = check_file(edited_reference(tmp_path, retype))
    assert not any("input" in issue or "output" in issue for issue in report.model_issues)
    assert report.verdict == "maps-fully"

    def float_output(model, schema):
        retype(model, schema)
        sg = model.subgraphs[0]
        sg.tensors[sg.outputs[0]].type = schema.TensorType.FLOAT32
    issues = check_file(edited_reference(tmp_path, float_output, "float_out.tflite")).model_issues
    assert len(issues) == 1 and issues[0].startswith("model output") and "float32" in issues[0]


def test_a_float_variant_is_pointed_at_the_int8_file_in_a_short_report(models_dir, model_card):
    path = _variant_path(models_dir, model_card, float_variant(models_dir, model_card))
    result = run_cli(path)
    lines = result.output.splitlines()
    assert result.exit_code == 1
    assert lines[1].startswith("Summary:"), "the verdict comes first"
    int8 = str(_variant_path(models_dir, model_card, "int8"))
    assert any("Use the int8 model" in line and int8 in line for line in lines)
    assert not any(line.startswith("Model:") and "inference_input_type" in line for line in lines)
    assert len(lines) < 60
    assert len(run_cli(path, "--all").output.splitlines()) > len(lines)
