"""convert/upsample_ops: Keras' nearest UpSampling2D (RESHAPE/TILE chains) rewritten as
CONCATENATION + DEPTH_TO_SPACE, which XNNPACK runs; the outputs must stay bit-identical.
Real TensorFlow conversions and real LiteRT interpreters."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from covid_edge.edge_runtime.interpreter import select_runtime
from covid_edge.edge_runtime.lungs import load_lung_card
from covid_edge.model_card import released_models_dir


def interpreter(model, xnnpack: bool):
    """A LiteRT interpreter of `model` (bytes or a path), tensors allocated: with XNNPACK, or
    with the builtin kernels alone."""
    kwargs = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    module = select_runtime().module
    if not xnnpack:
        kwargs["experimental_op_resolver_type"] = \
            module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    loaded = module.Interpreter(num_threads=1, **kwargs)
    loaded.allocate_tensors()
    return loaded


def op_counts(model, xnnpack: bool = False) -> Counter:
    return Counter(op["op_name"] for op in interpreter(model, xnnpack)._get_ops_details())


def test_released_lung_model_runs_in_one_xnnpack_partition():
    card, model_path = load_lung_card(released_models_dir() / "lungs")
    builtin = op_counts(model_path)
    assert "TILE" not in builtin and builtin["DEPTH_TO_SPACE"] == 4
    assert sorted(builtin) == card["ops"]
    # one XNNPACK partition (the chains' TILEs cut the graph into nine)
    assert op_counts(model_path, xnnpack=True)["DELEGATE"] == 1


@pytest.fixture(scope="module")
def tiled_model(tmp_path_factory):
    """A tiny int8 model with a 2x and a 3x nearest upsampling of one tensor, converted by
    TensorFlow as covid-edge converts its models (the converter shares their first RESHAPE)."""
    pytest.importorskip("tensorflow", reason="needs the [train] extra")
    import keras

    from covid_edge.convert import quantize

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    doubled = keras.layers.UpSampling2D(2, interpolation="nearest")(x)
    doubled = keras.layers.Conv2D(2, 1)(doubled)
    tripled = keras.layers.UpSampling2D(3, interpolation="nearest")(x)
    tripled = keras.layers.Conv2D(2, 1)(tripled)
    model = keras.Model(inputs, [doubled, tripled])
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(16):
            yield [rng.uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)]

    saved = quantize.export_saved_model(model, tmp_path_factory.mktemp("upsample") / "saved")
    return quantize.convert_variant(saved, "int8", representative)


def outputs(model: bytes, x: np.ndarray, xnnpack: bool) -> list[np.ndarray]:
    loaded = interpreter(model, xnnpack)
    loaded.set_tensor(loaded.get_input_details()[0]["index"], x)
    loaded.invoke()
    return [loaded.get_tensor(d["index"]).copy() for d in loaded.get_output_details()]


@pytest.mark.train
def test_2x_upsampling_is_rewritten_with_identical_outputs(tiled_model):
    from covid_edge.convert import upsample_ops

    rewritten, replaced = upsample_ops.rewrite(tiled_model)
    assert replaced == 1
    before, after = op_counts(tiled_model), op_counts(rewritten)
    # the 3x upsampling is not the chain the rewrite knows: its two TILEs stay
    assert before["TILE"] == 4 and after["TILE"] == 2
    assert before["RESHAPE"] == 5 and after["RESHAPE"] == 3  # the shared one stays
    assert after["DEPTH_TO_SPACE"] == 1
    assert after["CONCATENATION"] == before["CONCATENATION"] + 1
    detail = interpreter(tiled_model, xnnpack=False).get_input_details()[0]
    rng = np.random.default_rng(1)
    for _ in range(10):
        x = rng.integers(-128, 128, detail["shape"]).astype(detail["dtype"])
        for xnnpack in (True, False):
            for old, new in zip(outputs(tiled_model, x, xnnpack), outputs(rewritten, x, xnnpack)):
                np.testing.assert_array_equal(old, new)
    # the chains' shape constants and intermediates are gone, not left dangling
    assert len(rewritten) < len(tiled_model)


@pytest.mark.train
def test_a_model_without_the_chain_comes_back_unchanged(tiled_model):
    from covid_edge.convert import upsample_ops

    rewritten, _ = upsample_ops.rewrite(tiled_model)
    assert upsample_ops.rewrite(rewritten) == (rewritten, 0)
    released = (released_models_dir() / "covid-edge-int8.tflite").read_bytes()
    assert upsample_ops.rewrite(released) == (released, 0)


@pytest.mark.train
def test_released_lung_model_keeps_no_unused_operator_codes():
    # An interpreter resolves every code in the table at load: a TILE left there would still
    # need a TILE kernel.
    from tensorflow.lite.python import schema_py_generated as schema

    _, model_path = load_lung_card(released_models_dir() / "lungs")
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model_path.read_bytes(), 0))
    names = {value: name for name, value in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
    codes = {names[max(c.builtinCode, c.deprecatedBuiltinCode)]: c.version
             for c in model.operatorCodes}
    assert "TILE" not in codes and "RESHAPE" not in codes
    # the version TensorFlow's converter gives int8 DEPTH_TO_SPACE and CONCATENATION
    assert codes["DEPTH_TO_SPACE"] == 2 and codes["CONCATENATION"] == 2
