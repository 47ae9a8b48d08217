"""int8 export folders (kind TFLiteDepthwiseConv2D): exact round trips, and refusals."""

import dataclasses
import json
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import dwconv
from dwconv.cli import main
from dwconv.models.export import export_layer, load_layer, read_export
from dwconv.models.int8_export import INT8_KIND
from dwconv.golden.int8_ref import Int8Layer, activation_range, predict_int8
from dwconv.models.keras_io import ModelFileError
from dwconv.golden.spec import LayerError, LayerSpec
from dwconv.models.tflite_io import load_tflite_layer

DATA = pathlib.Path(__file__).parent / "data" / "tflite"
#: every fixture the reader takes (dw3x3_dil2_same is the refused SPACE_TO_BATCH_ND + ADD form)
FIXTURES = sorted(p.stem for p in DATA.glob("*.tflite") if p.stem != "dw3x3_dil2_same")
FIELDS = ("input_scale", "input_zero_point", "output_scale", "output_zero_point", "act_min",
          "act_max", "activation", "per_channel", "source")
ARRAYS = ("kernel", "bias", "weight_scales", "multiplier", "shift")


def assert_same_layer(a, b):
    """Every field of two Int8Layers equal, arrays with their dtypes."""
    assert type(a) is type(b) is Int8Layer or (isinstance(a, Int8Layer)
                                               and isinstance(b, Int8Layer))
    assert a.spec == b.spec
    for name in FIELDS:
        assert getattr(a, name) == getattr(b, name), name
        assert type(getattr(a, name)) is type(getattr(b, name)), name
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)


def _fixture(name):
    return load_tflite_layer(DATA / f"{name}.tflite", 0 if name == "dw_pw" else None)


@pytest.mark.parametrize("name", FIXTURES)
def test_round_trip_of_every_fixture(name, tmp_path):
    layer = _fixture(name)
    export_layer(tmp_path / name, layer)
    back, formats = read_export(tmp_path / name)
    assert formats is None
    assert_same_layer(back, layer)
    assert_same_layer(load_layer(tmp_path / name)[0], layer)
    assert_same_layer(dwconv.load(tmp_path / name), layer)
    # and it computes what the interpreter gave, both resolvers
    with np.load(DATA / f"{name}.npz") as data:
        np.testing.assert_array_equal(predict_int8(back, data["x"]), data["auto"])
        np.testing.assert_array_equal(predict_int8(back, data["x"], "double"), data["ref"])


def test_folder_contents(tmp_path):
    """layer.json's fields and weights.npz's arrays, as the format documents them."""
    layer = _fixture("dw3x3_m3_s2")
    folder = tmp_path
    export_layer(folder / "e", layer)
    document = json.loads((folder / "e" / "layer.json").read_text())
    assert document["kind"] == INT8_KIND
    assert document["first_input_shape"] == [7, 7, 2]
    assert (document["stride"], document["kernel_size"], document["depth_multiplier"],
            document["padding"], document["dilation_rate"], document["data_format"]) == \
        ([2, 2], [3, 3], 3, "same", [1, 1], "channels_last")
    q = document["quantization"]
    assert q["source_model"] == "dw3x3_m3_s2.tflite" and q["quantized_dimension"] == 3
    assert q["per_channel"] is True and len(q["weight_scales"]) == 6
    assert q["input_scale"] == layer.input_scale and q["fused_activation"] == "NONE"
    assert "formats" not in document
    with np.load(folder / "e" / "weights.npz") as weights:
        assert weights["kernel"].dtype == np.int8 and weights["kernel"].shape == (3, 3, 2, 3)
        assert weights["bias"].dtype == np.int32 and weights["bias"].shape == (6,)
        np.testing.assert_array_equal(weights["multiplier"], layer.multiplier)
        np.testing.assert_array_equal(weights["shift"], layer.shift)
        assert weights["multiplier"].dtype == weights["shift"].dtype == np.int32
        assert weights["scale"].dtype == np.float32
        np.testing.assert_array_equal(weights["scale"], layer.float_scales())
        single = layer.quantized_multipliers("single")
        np.testing.assert_array_equal(weights["single_multiplier"], single[0])
        np.testing.assert_array_equal(weights["single_shift"], single[1])


def test_per_tensor_writes_no_quantized_dimension(tmp_path):
    layer = _fixture("dw3x3_per_tensor")
    export_layer(tmp_path / "e", layer)
    q = json.loads((tmp_path / "e" / "layer.json").read_text())["quantization"]
    assert q["per_channel"] is False and q["quantized_dimension"] is None
    assert len(set(q["weight_scales"])) == 1


def test_formats_are_refused_on_write(tmp_path):
    with pytest.raises(LayerError, match="takes no formats"):
        export_layer(tmp_path / "e", _fixture("dw3x3_same"), {"input": "fixed<8,8>"})
    assert not (tmp_path / "e").exists()


def test_cli_export_of_a_tflite_model(tmp_path, capsys):
    assert main(["export", str(DATA / "dw3x3_relu6.tflite"), "-o", str(tmp_path / "e")]) == 0
    assert_same_layer(read_export(tmp_path / "e")[0], _fixture("dw3x3_relu6"))
    assert main(["export", str(DATA / "dw_pw.tflite"), "--layer", "0",
                 "-o", str(tmp_path / "p")]) == 0
    assert_same_layer(read_export(tmp_path / "p")[0], _fixture("dw_pw"))
    assert main(["export", str(DATA / "dw3x3_same.tflite"), "--input-format", "fixed<8,8>",
                 "-o", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "takes no formats" in err[0], err
    assert not (tmp_path / "f").exists()


# ---------------------------------------------------------------------------------------------
# Any int8 layer round trips: geometry, scales, zero points and clamps drawn

@st.composite
def int8_layers(draw):
    h, w, c = draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.integers(1, 5))
    m = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["same", "valid"]))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    if padding == "valid" and ((kh - 1) * dilation[0] + 1 > h or (kw - 1) * dilation[1] + 1 > w):
        padding = "same"
    fused = draw(st.sampled_from(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]))
    use_bias = draw(st.booleans())
    spec = LayerSpec((h, w, c), (kh, kw), strides, dilation, padding, m, use_bias,
                     {"RELU": "relu", "RELU6": "relu6"}.get(fused, "linear"),
                     draw(st.sampled_from(["channels_last", "channels_first"])),
                     draw(st.text(min_size=1, max_size=12)))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    per_channel = draw(st.booleans())
    scale = st.floats(2.0 ** -20, 10.0, width=32)
    scales = ([draw(scale) for _ in range(c * m)] if per_channel else [draw(scale)] * (c * m))
    bias = rng.integers(-(1 << 31), 1 << 31, c * m, dtype=np.int64).astype(np.int32)
    out_scale, out_zp = draw(scale), draw(st.integers(-128, 127))
    act_min, act_max = activation_range(fused, out_scale, out_zp)
    return Int8Layer(spec, rng.integers(-128, 128, spec.kernel_shape).astype(np.int8),
                     bias if use_bias else np.zeros(c * m, np.int32),
                     np.asarray(scales, np.float32), draw(scale), draw(st.integers(-128, 127)),
                     out_scale, out_zp, act_min, act_max, fused, per_channel,
                     source=draw(st.none() | st.text(max_size=8)))


@settings(max_examples=60, deadline=None)
@given(layer=int8_layers())
def test_any_int8_layer_round_trips(tmp_path_factory, layer):
    folder = tmp_path_factory.mktemp("e") / "layer"
    export_layer(folder, layer)
    assert_same_layer(read_export(folder)[0], layer)


# ---------------------------------------------------------------------------------------------
# Malformed folders: one-line errors

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good") / "e"
    export_layer(folder, _fixture("dw3x3_relu6"))
    return folder


def _edit(exported, tmp_path, document=None, arrays=None, drop=()):
    """A copy of the exported folder with layer.json and weights.npz edited."""
    target = tmp_path / "bad"
    target.mkdir()
    text = json.loads((exported / "layer.json").read_text())
    if document:
        document(text)
    (target / "layer.json").write_text(json.dumps(text))
    with np.load(exported / "weights.npz") as weights:
        values = {k: weights[k] for k in weights.files if k not in drop}
    values.update(arrays or {})
    np.savez(target / "weights.npz", **values)
    return target


def _q(key, value):
    def change(document):
        if value is KeyError:
            del document["quantization"][key]
        else:
            document["quantization"][key] = value
    return change


def _top(key, value):
    def change(document):
        document[key] = value
    return change


CHANNELS = 8
DOCUMENT_CASES = [
    (_q("input_scale", KeyError), "'quantization' has no 'input_scale'"),
    (_q("input_scale", "0.5"), "'input_scale' must be a number, not '0.5'"),
    (_q("input_scale", float("nan")), "input scale .* must be positive, not nan"),
    (_q("output_scale", float("inf")), "output scale .* must be positive, not inf"),
    (_q("input_scale", -1.0), "input scale .* must be positive"),
    (_q("output_zero_point", 300), "output zero point .* is 300, outside int8"),
    (_q("input_zero_point", 1.5), "'input_zero_point' must be an integer"),
    (_q("act_min", True), "'act_min' must be an integer, not True"),
    (_q("weight_scales", [0.01] * 3), "list of 8 numbers"),
    (_q("weight_scales", [0.01] * 7 + [float("nan")]), "weight scales .* must be finite"),
    (_q("weight_scales", [0.01] * 7 + [float("inf")]), "weight scales .* must be finite"),
    (_q("per_channel", "yes"), "'per_channel' must be true or false"),
    (_q("quantized_dimension", 0), "'quantized_dimension' is 0"),
    (_q("per_channel", False), "'quantized_dimension' is 3"),
    (_q("fused_activation", "TANH"), "fused activation TANH is not supported"),
    (_q("fused_activation", "RELU"), "activation 'relu6' does not match the fused activation"
                                     " RELU"),
    (_q("act_max", 100), r"act_min/act_max \[-128, 100\] are not what RELU6 gives"),
    (_q("act_min", 10), r"act_min/act_max"),
    (_q("source_model", 3), "'source_model' must be a file name"),
    (_q("output_scale", 10 ** 400), "quantization 'output_scale' is too large for a float"),
    (_q("weight_scales", [10 ** 400] * 8), "a weight scale is too large for a float"),
    (_top("quantization", [1, 2]), "needs a 'quantization' object"),
    (_top("formats", {"input": "fixed<8,8>"}), "drop its 'formats'"),
    (_top("first_input_shape", [6, 6]), "input_shape must be three positive integers"),
    (_top("kernel_size", [2, 2]), "member kernel.npy has shape .* implies 32 values"),
]


@pytest.mark.parametrize("change, message", DOCUMENT_CASES)
def test_malformed_layer_json(exported, tmp_path, change, message):
    folder = _edit(exported, tmp_path, document=change)
    with pytest.raises((ModelFileError, LayerError), match=message) as error:
        read_export(folder)
    assert "\n" not in str(error.value)


def test_per_tensor_with_several_scales(tmp_path):
    export_layer(tmp_path / "e", _fixture("dw3x3_per_tensor"))

    def change(document):
        document["quantization"]["weight_scales"][0] *= 2
    folder = _edit(tmp_path / "e", tmp_path, document=change)
    with pytest.raises(ModelFileError, match="per-tensor quantization with 2 different"):
        read_export(folder)


ARRAY_CASES = [
    (dict(arrays={"kernel": np.zeros((3, 3, 8, 1), np.float32)}),
     "kernel must be int8 integers, not float32"),
    (dict(arrays={"kernel": np.full((3, 3, 8, 1), 200, np.int16)}),
     r"kernel holds values outside int8 \[-128, 127\] \(from 200 to 200\)"),
    (dict(arrays={"bias": np.full(8, 1 << 40, np.int64)}), "bias holds values outside int32"),
    (dict(arrays={"bias": np.zeros(8, np.float64)}), "bias must be int32 integers"),
    (dict(arrays={"bias": np.zeros(9, np.int32)}), "member bias.npy has shape"),
    (dict(arrays={"kernel": np.zeros(72, np.int8)}),
     r"kernel has shape \[72\], not \[3, 3, 8, 1\]"),
    (dict(arrays={"shift": np.zeros((8, 1), np.int32)}), r"shift has shape \[8, 1\], not \[8\]"),
    (dict(arrays={"scale": np.zeros((2, 4), np.float32)}), r"scale has shape \[2, 4\], not \[8\]"),
    (dict(drop=("scale",)), r"must hold .* \(missing 'scale'\)"),
    (dict(drop=("bias",)), "must hold 'kernel' and 'bias'"),
    (dict(arrays={"multiplier": np.zeros(8, np.int32)}),
     "multiplier of channel 0 is 0, but the scales in layer.json give"),
    (dict(arrays={"shift": np.full(8, 5, np.int32)}), "shift of channel 0 is 5"),
    (dict(arrays={"single_shift": np.full(8, 5, np.int32)}), "single_shift of channel 0"),
    (dict(arrays={"scale": np.full(8, np.nan, np.float32)}), "scale of channel 0 is nan"),
    (dict(arrays={"scale": np.ones(8, np.float64)}), "scale must be float32, not float64"),
    (dict(arrays={"kernel": np.array(["x"] * 72).reshape(3, 3, 8, 1)}),
     "member kernel.npy holds <U1 values, not numbers"),
]


@pytest.mark.parametrize("edit, message", ARRAY_CASES)
def test_malformed_weights(exported, tmp_path, edit, message):
    folder = _edit(exported, tmp_path, **edit)
    with pytest.raises((ModelFileError, LayerError), match=message) as error:
        read_export(folder)
    assert "\n" not in str(error.value)


def test_nonzero_bias_without_use_bias(tmp_path):
    layer = _fixture("dw3x3_same")
    export_layer(tmp_path / "e", dataclasses.replace(
        layer, spec=dataclasses.replace(layer.spec, use_bias=False),
        bias=np.zeros(8, np.int32)))
    folder = _edit(tmp_path / "e", tmp_path, arrays={"bias": np.ones(8, np.int32)})
    with pytest.raises(ModelFileError, match="use_bias false but weights.npz holds a nonzero"):
        read_export(folder)


def test_malformed_folder_through_the_cli(exported, tmp_path, capsys):
    folder = _edit(exported, tmp_path, document=_q("input_scale", "x"))
    np.save(tmp_path / "x.npy", np.zeros((6, 6, 8), np.int8))
    assert main(["golden", str(folder), "-i", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "y.npy")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "'input_scale' must be a number" in err[0], err
    assert not (tmp_path / "y.npy").exists()


# ---------------------------------------------------------------------------------------------
# The MobileNet pair: DEPTHWISE_CONV_2D then a 1x1 CONV_2D

def test_pair_as_a_block_is_refused_saying_the_depthwise_op_reads_alone(tmp_path, capsys):
    path = DATA / "dw_pw.tflite"
    message = (r"DEPTHWISE_CONV_2D op 0 \('.*'\) feeds a 1x1 CONV_2D \(op 1\), but int8 "
               r"separable blocks are not supported; drop --pointwise to read the depthwise "
               r"op alone")
    with pytest.raises(ModelFileError, match=message):
        load_tflite_layer(path, pointwise=True)
    with pytest.raises(ModelFileError, match=message):
        dwconv.load(path, layer="0", fuse=True, pointwise=True)
    assert main(["export", str(path), "--fuse", "--pointwise", "-o", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "drop --pointwise to read the depthwise op alone" in err[0], err
    assert not (tmp_path / "e").exists()
    # the depthwise op alone, picked or not, and a layer with no CONV_2D after it
    assert_same_layer(dwconv.load(path, layer="0"), load_tflite_layer(path, 0))
    assert_same_layer(load_tflite_layer(DATA / "dw3x3_same.tflite", pointwise=True),
                      load_tflite_layer(DATA / "dw3x3_same.tflite"))


# ---------------------------------------------------------------------------------------------
# export --all of a .tflite model: a tree of int8 folders

def test_export_all_of_a_tflite_model(tmp_path, capsys):
    assert main(["export", str(DATA / "dw_pw.tflite"), "--all", "-o", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    assert "dw_pw.tflite: found 1 depthwise-like layer(s) (1 DEPTHWISE_CONV_2D)" in out, out
    layers = dwconv.load_all(tmp_path / "t")
    (name, layer), = layers.items()
    assert_same_layer(layer, _fixture("dw_pw"))
    assert_same_layer(load_layer(tmp_path / "t")[0], _fixture("dw_pw"))
    assert name == _fixture("dw_pw").name


def test_export_all_refuses_or_skips_an_unsupported_op(tmp_path, capsys):
    path = DATA / "dw3x3_dil2_same.tflite"
    assert main(["export", str(path), "--all", "-o", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "BATCH_TO_SPACE_ND and ADD" in err[0] and \
        "--skip-unsupported writes the other layers" in err[0], err
    assert main(["export", str(path), "--all", "--skip-unsupported",
                 "-o", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "no layer of dw3x3_dil2_same.tflite can be exported: 1 " \
                             "skipped" in err[0] and "is a dilated depthwise" in err[0], err
    assert not (tmp_path / "t").exists()
