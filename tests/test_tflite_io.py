"""Reading .tflite models: every option of the fixtures, layer picking, and refusals."""

import pathlib
import sys

import numpy as np
import pytest
import tflite
from hypothesis import given, settings, strategies as st

from dwconv.golden.int8_ref import predict_int8
from dwconv.models.keras_io import ModelFileError
from dwconv.models.tflite_io import (load_all_tflite_layers, load_tflite_layer,
                                     tflite_layer_names)

DATA = pathlib.Path(__file__).parent / "data" / "tflite"
sys.path.insert(0, str(DATA))
import builder  # noqa: E402

sys.path.remove(str(DATA))


@pytest.mark.parametrize("name, kernel, strides, dilation, padding, m, bias, act, per_channel", [
    ("dw3x3_same", (3, 3), (1, 1), (1, 1), "same", 1, True, "NONE", True),
    ("dw3x3_valid_s2", (3, 3), (2, 2), (1, 1), "valid", 1, True, "NONE", True),
    ("dw3x2_s21_same", (3, 2), (2, 1), (1, 1), "same", 1, True, "NONE", True),
    ("dw3x3_m2", (3, 3), (1, 1), (1, 1), "same", 2, True, "NONE", True),
    ("dw3x3_m3_s2", (3, 3), (2, 2), (1, 1), "same", 3, True, "NONE", True),
    ("dw3x3_relu", (3, 3), (1, 1), (1, 1), "same", 1, True, "RELU", True),
    ("dw3x3_relu6", (3, 3), (1, 1), (1, 1), "same", 1, True, "RELU6", True),
    ("dw3x3_dil2_same_nobias", (3, 3), (1, 1), (2, 2), "same", 1, True, "NONE", True),
    ("dw3x3_dil2_valid_nobias", (3, 3), (1, 1), (2, 2), "valid", 1, True, "NONE", True),
    ("dw3x3_per_tensor", (3, 3), (1, 1), (1, 1), "same", 1, True, "NONE", False),
    ("dscnn_25x5x64", (3, 3), (1, 1), (1, 1), "same", 1, True, "RELU", True),
])
def test_fixture_options(name, kernel, strides, dilation, padding, m, bias, act, per_channel):
    layer = load_tflite_layer(DATA / f"{name}.tflite")
    spec = layer.spec
    assert (spec.kernel_size, spec.strides, spec.dilation_rate, spec.padding,
            spec.depth_multiplier) == (kernel, strides, dilation, padding, m)
    assert layer.activation == act and layer.per_channel == per_channel
    assert layer.kernel.dtype == np.int8 and layer.kernel.shape == spec.kernel_shape
    assert layer.bias.dtype == np.int32 and layer.bias.shape == (spec.out_channels,)
    assert (len(set(layer.weight_scales.tolist())) > 1) == per_channel
    with np.load(DATA / f"{name}.npz") as data:
        assert data["x"].shape[1:] == spec.input_shape


def test_dscnn_shape():
    spec = load_tflite_layer(DATA / "dscnn_25x5x64.tflite").spec
    assert spec.input_shape == (25, 5, 64) and spec.output_shape == (25, 5, 64)


def test_pair_picks_by_name_part_and_index():
    path = DATA / "dw_pw.tflite"
    assert load_tflite_layer(path).spec.channels == 8     # the only depthwise op
    by_index = load_tflite_layer(path, 0)
    by_text = load_tflite_layer(path, "0")
    by_name = load_tflite_layer(path, "dw_1/Relu")
    assert by_index.name == by_text.name == by_name.name
    with pytest.raises(ModelFileError, match=r"op 1 is CONV_2D, not a DEPTHWISE_CONV_2D"):
        load_tflite_layer(path, 1)
    with pytest.raises(ModelFileError, match=r"output of op 1 \(CONV_2D\)"):
        load_tflite_layer(path, "StatefulPartitionedCall")
    with pytest.raises(ModelFileError, match="has no op 7"):
        load_tflite_layer(path, 7)
    with pytest.raises(ModelFileError, match="no depthwise layer named 'nothing'"):
        load_tflite_layer(path, "nothing")


def test_dilated_with_bias_is_refused_saying_what_it_is():
    with pytest.raises(ModelFileError, match="SPACE_TO_BATCH_ND, DEPTHWISE_CONV_2D, "
                                             "BATCH_TO_SPACE_ND and ADD"):
        load_tflite_layer(DATA / "dw3x3_dil2_same.tflite")


def test_dilated_pattern_is_named_by_its_output():
    layer = load_tflite_layer(DATA / "dw3x3_dil2_same_nobias.tflite")
    assert layer.name == "StatefulPartitionedCall_1:0"
    assert tflite_layer_names(DATA / "dw3x3_dil2_same_nobias.tflite") == [layer.name]


def _two_layer_model(tmp_path):
    """Two DEPTHWISE_CONV_2D ops in a row, outputs named .../dw_a and .../dw_b."""
    rng = np.random.default_rng(0)
    kernel = rng.integers(-127, 128, (3, 3, 4, 1)).astype(np.int8)
    scales = np.full(4, 0.01, np.float32)
    g = builder.depthwise_graph(kernel, np.zeros(4, np.int32), scales, (5, 5, 4),
                                in_scale=0.02, in_zp=0, out_scale=0.05, out_zp=1, name="dw_a")
    g.tensors[-1].name = "model/dw_a"
    first = g.outputs[0]
    g2 = builder.depthwise_graph(kernel, np.ones(4, np.int32), scales, (5, 5, 4),
                                 in_scale=0.05, in_zp=1, out_scale=0.1, out_zp=2, name="dw_b")
    offset = len(g.tensors)
    for t in g2.tensors[1:]:
        g.tensors.append(t)
    g.tensors[-1].name = "model/dw_b"
    op = g2.ops[0]
    op.inputs = [first] + [i + offset - 1 if i > 0 else i for i in op.inputs[1:]]
    op.outputs = [len(g.tensors) - 1]
    g.ops.append(op)
    g.outputs = op.outputs
    path = tmp_path / "two.tflite"
    path.write_bytes(builder.write(g))
    return path


def test_several_layers_need_a_choice(tmp_path):
    path = _two_layer_model(tmp_path)
    with pytest.raises(ModelFileError, match="2 DEPTHWISE_CONV_2D ops"):
        load_tflite_layer(path)
    with pytest.raises(ModelFileError, match="part of 2 layer names"):
        load_tflite_layer(path, "model/dw")
    a, b = load_tflite_layer(path, "dw_a"), load_tflite_layer(path, "dw_b")
    assert (a.output_zero_point, b.output_zero_point) == (1, 2)
    assert b.bias.tolist() == [1, 1, 1, 1]
    assert load_tflite_layer(path, 1).name == "model/dw_b"
    assert [name for name, _ in load_all_tflite_layers(path)] == ["model/dw_a", "model/dw_b"]


def _write(tmp_path, graph, name="m.tflite"):
    path = tmp_path / name
    path.write_bytes(builder.write(graph))
    return path


def _graph(**overrides):
    rng = np.random.default_rng(1)
    kernel = overrides.pop("kernel", rng.integers(-127, 128, (3, 3, 4, 1)).astype(np.int8))
    args = dict(kernel=kernel, bias=np.zeros(kernel.shape[2] * kernel.shape[3], np.int32),
                weight_scales=np.full(kernel.shape[2] * kernel.shape[3], 0.01, np.float32),
                input_shape=(5, 5, kernel.shape[2]), in_scale=0.02, in_zp=0, out_scale=0.05,
                out_zp=0)
    args.update(overrides)
    return builder.depthwise_graph(**args)


def test_no_bias_tensor_reads_as_zero_bias(tmp_path):
    layer = load_tflite_layer(_write(tmp_path, _graph(bias=None)))
    assert not layer.spec.use_bias and not layer.bias.any()


def test_relu_n1_to_1_is_a_clamp(tmp_path):
    layer = load_tflite_layer(_write(tmp_path, _graph(activation="RELU_N1_TO_1",
                                                      out_scale=0.02, out_zp=3)))
    assert (layer.act_min, layer.act_max) == (3 - 50, 3 + 50)
    x = np.random.default_rng(0).integers(-128, 128, (2, 5, 5, 4)).astype(np.int8)
    y = predict_int8(layer, x)
    assert y.min() == -47 and y.max() == 53


@pytest.mark.parametrize("change, message", [
    (dict(activation="TANH"), "fused activation TANH is not supported"),
    (dict(act_dtype=np.int16), "its input is INT16; only int8 activations"),
    (dict(bias_dtype=np.int64), "its bias is INT64; only int32 bias"),
    (dict(in_zp=200), "zero point 200"),
    (dict(weight_scales=np.full(3, 0.01, np.float32)), "3 scales"),
])
def test_unsupported_options_name_the_op(tmp_path, change, message):
    path = _write(tmp_path, _graph(**change))
    with pytest.raises(ModelFileError, match=message) as error:
        load_tflite_layer(path)
    assert "DEPTHWISE_CONV_2D op 0" in str(error.value)


def test_weight_zero_point_and_float_weights(tmp_path):
    g = _graph()
    g.tensors[1].zero_points = (1,) * 4
    with pytest.raises(ModelFileError, match="nonzero zero points"):
        load_tflite_layer(_write(tmp_path, g))
    g = _graph()
    g.tensors[0].dtype = np.float32
    with pytest.raises(ModelFileError, match="its input is FLOAT32"):
        load_tflite_layer(_write(tmp_path, g, "f.tflite"))


def test_output_shape_must_match_the_options(tmp_path):
    g = _graph()
    g.tensors[-1].shape = (1, 4, 5, 4)
    with pytest.raises(ModelFileError, match="its output has shape"):
        load_tflite_layer(_write(tmp_path, g))


def test_model_without_depthwise_names_its_ops(tmp_path):
    g = _graph()
    g.ops[0].code = tflite.BuiltinOperator.CONV_2D
    g.ops[0].options = None
    with pytest.raises(ModelFileError, match=r"no DEPTHWISE_CONV_2D op \(its ops: 0: CONV_2D\)"):
        load_tflite_layer(_write(tmp_path, g))


@pytest.mark.parametrize("content, message", [
    (b"", "not a TFLite model"),
    (b"hello world, not a flatbuffer", "not a TFLite model"),
    (b"\x1c\x00\x00\x00TFL3" + b"\xff" * 20, "not a readable TFLite model"),
])
def test_broken_files(tmp_path, content, message):
    path = tmp_path / "bad.tflite"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        load_tflite_layer(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ModelFileError, match="cannot read"):
        load_tflite_layer(tmp_path / "none.tflite")
    with pytest.raises(ModelFileError, match="is a folder"):
        load_tflite_layer(tmp_path)


@settings(max_examples=150, deadline=None)
@given(cut=st.integers(0, 1671), flip=st.integers(0, 255), where=st.integers(0, 1671))
def test_damaged_fixtures_fail_cleanly(tmp_path_factory, cut, flip, where):
    blob = bytearray((DATA / "dw3x3_same.tflite").read_bytes())
    blob[where % len(blob)] ^= flip
    blob = bytes(blob[:max(cut, where + 1)]) if cut < len(blob) else bytes(blob)
    path = tmp_path_factory.mktemp("d") / "m.tflite"
    path.write_bytes(blob)
    try:
        layer = load_tflite_layer(path)
    except ModelFileError as error:
        assert "\n" not in str(error)
    else:
        predict_int8(layer, np.zeros(layer.spec.input_shape, np.int8))
