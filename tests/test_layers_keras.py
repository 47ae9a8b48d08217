"""The new depthwise-like layers read from real Keras models: float golden = Keras.

DepthwiseConv1D, Conv1D/Conv2D with groups == channels, a ZeroPadding folded in with
--fuse, SeparableConv1D/2D and a DepthwiseConv2D + 1x1 Conv2D pair joined with --pointwise.
Each is saved as .keras, read back without Keras and compared with the Keras model's own
output (float32 tolerance); hypothesis draws the options, hand-picked cases pin the edges.
"""

import json
import tempfile
import pathlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

keras = pytest.importorskip("keras")
L = keras.layers

from dwconv.models.export import export_layer, read_export          # noqa: E402
from dwconv.golden.float_ref import float_forward                    # noqa: E402
from dwconv.models.keras_io import load_keras_layer                  # noqa: E402
from dwconv.golden.layer import Layer, SeparableLayer                # noqa: E402
from dwconv.golden.spec import LayerError                            # noqa: E402

SETTINGS = settings(max_examples=8, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
ACTIVATIONS = st.sampled_from(["linear", "relu", "relu6"])


def _randomize(model, seed):
    """Random weights everywhere (biases and BatchNormalization statistics too)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = []
        for w in layer.get_weights():
            if isinstance(layer, L.BatchNormalization) and len(weights) >= 2 and \
                    len(weights) == len(layer.get_weights()) - 1:
                weights.append(rng.uniform(0.5, 2.0, w.shape).astype(np.float32))  # variance
            else:
                weights.append(rng.normal(0, 0.7, w.shape).astype(np.float32))
        layer.set_weights(weights)


def _read(model, name=None, fuse=False, pointwise=False):
    """Save ``model`` as .keras and read one layer back (no Keras involved)."""
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "m.keras"
        model.save(path)
        return load_keras_layer(path, name, fuse=fuse, pointwise=pointwise)


def _keras(model, x):
    return np.asarray(keras.ops.convert_to_numpy(model(x.astype(np.float32),
                                                       training=False)), np.float64)


def _close(layer, model, x):
    expected = _keras(model, x)
    got = float_forward(layer, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * max(1, np.abs(expected).max()))


def _input(rng, shape, batch=2):
    return rng.normal(0, 1.5, (batch,) + tuple(shape))


# ---------------------------------------------------------------------------------------------
# DepthwiseConv1D

@st.composite
def conv1d_options(draw):
    k = draw(st.integers(1, 4))
    d = draw(st.integers(1, 3))
    s = draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["valid", "same"]))
    length = draw(st.integers((k - 1) * d + 1, 12))
    return dict(length=length, channels=draw(st.integers(1, 3)), kernel_size=k,
                strides=s, dilation_rate=d, padding=padding,
                multiplier=draw(st.integers(1, 3)), use_bias=draw(st.booleans()),
                activation=draw(ACTIVATIONS),
                data_format=draw(st.sampled_from(["channels_last", "channels_first"])))


def _depthwise_1d(o):
    shape = ((o["channels"], o["length"]) if o["data_format"] == "channels_first"
             else (o["length"], o["channels"]))
    model = keras.Sequential([keras.Input(shape), L.DepthwiseConv1D(
        o["kernel_size"], strides=o["strides"], padding=o["padding"],
        depth_multiplier=o["multiplier"], dilation_rate=o["dilation_rate"],
        use_bias=o["use_bias"], activation=o["activation"], data_format=o["data_format"],
        name="dw1")])
    return model, shape


@SETTINGS
@given(conv1d_options(), st.integers(0, 2**16))
def test_depthwise_conv1d_equals_keras(options, seed):
    model, shape = _depthwise_1d(options)
    _randomize(model, seed)
    layer = _read(model)
    spec = layer.spec
    assert spec.kind == "DepthwiseConv1D" and spec.rank == 1 and spec.height == 1
    assert layer.keras_kernel.shape == (options["kernel_size"], options["channels"],
                                        options["multiplier"])
    document = spec.to_dict()
    assert document["first_input_shape"] == [options["length"], options["channels"]]
    assert document["kernel_size"] == [options["kernel_size"]]
    assert len(document["output_shape"]) == 2
    _close(layer, model, _input(np.random.default_rng(seed), shape))


def test_depthwise_conv1d_arrays_keep_1d_shapes():
    model, shape = _depthwise_1d(dict(length=7, channels=2, kernel_size=3, strides=2,
                                      dilation_rate=1, padding="same", multiplier=2,
                                      use_bias=True, activation="linear",
                                      data_format="channels_first"))
    _randomize(model, 1)
    layer = _read(model)
    x = _input(np.random.default_rng(0), shape)
    assert float_forward(layer, x).shape == (2, 4, 4)          # (N, C*M, L_out)
    assert float_forward(layer, x[0]).shape == (4, 4)          # one sequence
    with pytest.raises(LayerError, match=r"takes \(N, C, L\) or \(C, L\) = \[2, 7\]"):
        float_forward(layer, x[..., None])


# ---------------------------------------------------------------------------------------------
# Conv1D / Conv2D with groups == channels

@st.composite
def grouped_options(draw):
    rank = draw(st.sampled_from([1, 2]))
    k = draw(st.integers(1, 3))
    d = draw(st.integers(1, 2))
    size = draw(st.integers((k - 1) * d + 1, 7))
    s = 1 if d > 1 else draw(st.integers(1, 2))      # Keras' Conv takes one or the other
    return dict(rank=rank, k=k, d=d, s=s, size=size,
                channels=draw(st.integers(2, 4)), multiplier=draw(st.integers(1, 3)),
                padding=draw(st.sampled_from(["valid", "same"] + (["causal"] if rank == 1
                                                                  else []))),
                use_bias=draw(st.booleans()), activation=draw(ACTIVATIONS))


@SETTINGS
@given(grouped_options(), st.integers(0, 2**16))
def test_grouped_conv_as_depthwise_equals_keras(o, seed):
    c = o["channels"]
    conv = L.Conv1D if o["rank"] == 1 else L.Conv2D
    shape = (o["size"], c) if o["rank"] == 1 else (o["size"], o["size"] + 1, c)
    model = keras.Sequential([keras.Input(shape), conv(
        c * o["multiplier"], o["k"], strides=o["s"], padding=o["padding"],
        dilation_rate=o["d"], groups=c, use_bias=o["use_bias"], activation=o["activation"],
        name="gconv")])
    _randomize(model, seed)
    layer = _read(model)
    assert layer.spec.kind == ("Conv1D" if o["rank"] == 1 else "Conv2D")
    assert layer.spec.depth_multiplier == o["multiplier"]
    _close(layer, model, _input(np.random.default_rng(seed), shape))


def test_grouped_conv_channel_order_is_keras():
    """Filter f of Conv2D(groups=C) reads channel f // M: a one-hot kernel shows which."""
    model = keras.Sequential([keras.Input((3, 3, 3)), L.Conv2D(6, 1, groups=3, use_bias=False,
                                                                name="g")])
    kernel = np.zeros((1, 1, 1, 6), np.float32)
    kernel[..., 3] = 1.0                    # filter 3 = channel 1 (M = 2), multiplier 1
    model.layers[0].set_weights([kernel])
    layer = _read(model)
    assert layer.kernel[0, 0, 1, 1] == 1.0 and np.count_nonzero(layer.kernel) == 1
    x = _input(np.random.default_rng(2), (3, 3, 3))
    np.testing.assert_array_equal(float_forward(layer, x)[..., 3], x[..., 1])
    _close(layer, model, x)


@pytest.mark.parametrize("conv, shape", [(L.Conv2D, (5, 5, 4)), (L.Conv1D, (6, 6))])
def test_grouped_conv_with_fewer_groups_is_refused(conv, shape):
    model = keras.Sequential([keras.Input(shape), conv(6 if len(shape) == 2 else 4, 3,
                                                      groups=2, name="grouped")])
    with pytest.raises(LayerError, match=r"'grouped' .* is a grouped convolution \(2 groups "
                                         r"of \d channels\), not a depthwise one"):
        _read(model)


def test_plain_conv_is_not_depthwise_like():
    from dwconv.models.keras_io import ModelFileError
    model = keras.Sequential([keras.Input((5, 5, 1)), L.Conv2D(2, 3, name="c")])
    with pytest.raises(ModelFileError, match="no DepthwiseConv2D or other depthwise-like layer"):
        _read(model)


# ---------------------------------------------------------------------------------------------
# ZeroPadding folded in

@st.composite
def zero_pad_options(draw):
    rank = draw(st.sampled_from([1, 2]))
    pads = [tuple(draw(st.integers(0, 4)) for _ in range(2)) for _ in range(rank)]
    k = draw(st.integers(1, 3))
    d = draw(st.integers(1, 2))
    s = draw(st.integers(1, 3))
    size = draw(st.integers(max(1, (k - 1) * d + 1 - min(a + b for a, b in pads)), 7))
    return dict(rank=rank, pads=pads, k=k, d=d, s=s, size=size,
                padding=draw(st.sampled_from(["valid", "same"])),
                channels=draw(st.integers(1, 3)), multiplier=draw(st.integers(1, 2)),
                data_format=draw(st.sampled_from(["channels_last", "channels_first"])),
                separable=draw(st.booleans()))


@SETTINGS
@given(zero_pad_options(), st.integers(0, 2**16))
def test_zero_padding_folded_equals_keras(o, seed):
    c, first = o["channels"], o["data_format"] == "channels_first"
    spatial = (o["size"],) if o["rank"] == 1 else (o["size"], o["size"] + 1)
    shape = (c,) + spatial if first else spatial + (c,)
    if o["rank"] == 1:
        pad = L.ZeroPadding1D(o["pads"][0], data_format=o["data_format"], name="zp")
        conv = L.SeparableConv1D if o["separable"] else L.DepthwiseConv1D
    else:
        pad = L.ZeroPadding2D(tuple(o["pads"]), data_format=o["data_format"], name="zp")
        conv = L.SeparableConv2D if o["separable"] else L.DepthwiseConv2D
    extra = dict(filters=3) if o["separable"] else {}
    model = keras.Sequential([keras.Input(shape), pad, conv(
        kernel_size=o["k"], strides=o["s"], dilation_rate=o["d"], padding=o["padding"],
        depth_multiplier=o["multiplier"], data_format=o["data_format"], name="dw", **extra)])
    _randomize(model, seed)
    layer = _read(model, fuse=True)
    spec = layer.spec
    assert isinstance(layer, SeparableLayer) == o["separable"]
    assert spec.explicit_padding and spec.input_shape[2] == c
    assert spec.shape_1d(spec.input_shape)[:-1] == list(spatial)
    assert "zp" in (layer.depthwise.fused if o["separable"] else layer.fused)
    document = spec.to_dict()
    assert len(document["padding"]) == o["rank"]
    assert document["first_input_shape"] == list(spatial) + [c]
    if o["padding"] == "valid":
        assert [tuple(p) for p in document["padding"]] == [tuple(p) for p in o["pads"]]
    _close(layer, model, _input(np.random.default_rng(seed), shape))
    with tempfile.TemporaryDirectory() as folder:
        export_layer(pathlib.Path(folder) / "e", layer)
        back, _ = read_export(pathlib.Path(folder) / "e")
    assert back.spec == spec and type(back) is type(layer)


def test_zero_padding_on_top_of_same_and_mobilenet_stride_2():
    model = keras.Sequential([keras.Input((6, 6, 2)), L.ZeroPadding2D(((0, 1), (0, 1)),
                                                                      name="pad"),
                              L.DepthwiseConv2D(3, strides=2, name="dw")])
    _randomize(model, 3)
    layer = _read(model, fuse=True)
    assert layer.spec.padding == ((0, 1), (0, 1)) and layer.spec.input_shape == (6, 6, 2)
    _close(layer, model, _input(np.random.default_rng(3), (6, 6, 2)))
    # without --fuse the ZeroPadding stays a layer of its own
    assert _read(model).spec.input_shape == (7, 7, 2)
    # on top of 'same': same's pads of the padded input plus the ZeroPadding's
    model = keras.Sequential([keras.Input((5, 4, 1)), L.ZeroPadding2D(((2, 0), (1, 3)),
                                                                      name="pad"),
                              L.DepthwiseConv2D((3, 2), padding="same", name="dw")])
    _randomize(model, 4)
    layer = _read(model, fuse=True)
    assert layer.spec.padding == ((3, 1), (1, 4))      # same on 7x8 with 3x2: (1,1), (0,1)
    _close(layer, model, _input(np.random.default_rng(4), (5, 4, 1)))


def test_zero_padding_with_two_consumers_is_not_folded():
    x = keras.Input((5, 5, 2))
    padded = L.ZeroPadding2D(1, name="zp")(x)
    out = L.Add()([L.DepthwiseConv2D(3, name="dw")(padded), L.Cropping2D(1)(padded)])
    layer = _read(keras.Model(x, out), "dw", fuse=True)
    assert layer.spec.padding == "valid" and layer.spec.input_shape == (7, 7, 2)


# ---------------------------------------------------------------------------------------------
# Separable layers and joined pairs

@st.composite
def separable_options(draw):
    rank = draw(st.sampled_from([1, 2]))
    k = draw(st.integers(1, 3))
    d = draw(st.integers(1, 2))
    s = 1 if d > 1 else draw(st.integers(1, 2))
    size = draw(st.integers((k - 1) * d + 1, 7))
    return dict(rank=rank, k=k, d=d, s=s, size=size, channels=draw(st.integers(1, 3)),
                multiplier=draw(st.integers(1, 2)), filters=draw(st.integers(1, 4)),
                padding=draw(st.sampled_from(["valid", "same"])),
                use_bias=draw(st.booleans()), activation=draw(ACTIVATIONS),
                data_format=draw(st.sampled_from(["channels_last", "channels_first"])),
                bn=draw(st.booleans()))


@SETTINGS
@given(separable_options(), st.integers(0, 2**16))
def test_separable_equals_keras(o, seed):
    c, first = o["channels"], o["data_format"] == "channels_first"
    spatial = (o["size"],) if o["rank"] == 1 else (o["size"], o["size"] + 1)
    shape = (c,) + spatial if first else spatial + (c,)
    conv = L.SeparableConv1D if o["rank"] == 1 else L.SeparableConv2D
    layers = [keras.Input(shape), conv(
        o["filters"], o["k"], strides=o["s"], padding=o["padding"], dilation_rate=o["d"],
        depth_multiplier=o["multiplier"], use_bias=o["use_bias"],
        activation="linear" if o["bn"] else o["activation"], data_format=o["data_format"],
        name="sep")]
    if o["bn"]:
        layers += [L.BatchNormalization(axis=1 if first else -1, name="bn"),
                   L.Activation(o["activation"], name="act")]
    model = keras.Sequential(layers)
    _randomize(model, seed)
    layer = _read(model, fuse=o["bn"])
    assert isinstance(layer, SeparableLayer) and layer.kind == conv.__name__
    assert layer.filters == o["filters"] and layer.spec.use_bias is False
    assert layer.depthwise.spec.activation == "linear"
    if o["bn"]:
        assert layer.fused == ("bn", "act") and layer.activation == o["activation"]
    _close(layer, model, _input(np.random.default_rng(seed), shape))


@pytest.mark.parametrize("after", ["none", "bn_relu6", "relu"])
def test_depthwise_pointwise_pair_equals_keras(after):
    """MobileNet's pair: DepthwiseConv2D + BN + ReLU6, then a 1x1 Conv2D [+ BN + ReLU]."""
    layers = [keras.Input((6, 5, 3)), L.DepthwiseConv2D(3, padding="same", use_bias=False,
                                                        name="dw"),
              L.BatchNormalization(name="dw_bn"), L.ReLU(6.0, name="dw_relu"),
              L.Conv2D(4, 1, use_bias=after == "relu", name="pw")]
    if after == "bn_relu6":
        layers += [L.BatchNormalization(name="pw_bn"), L.ReLU(6.0, name="pw_relu")]
    elif after == "relu":
        layers += [L.ReLU(name="pw_relu")]
    model = keras.Sequential(layers)
    _randomize(model, 7)
    layer = _read(model, fuse=True, pointwise=True)
    assert isinstance(layer, SeparableLayer) and layer.kind == "DepthwiseConv2D+Conv2D"
    assert layer.depthwise.spec.activation == "relu6" and layer.depthwise.spec.use_bias
    assert layer.depthwise.fused == ("dw_bn", "dw_relu")
    assert layer.fused[0] == "pw" and layer.filters == 4
    _close(layer, model, _input(np.random.default_rng(7), (6, 5, 3)))
    # without --pointwise the pair stays apart
    assert isinstance(_read(model, fuse=True), Layer)


def test_pointwise_join_needs_a_1x1_stride_1_conv():
    for conv in (L.Conv2D(4, 3, padding="same", name="pw"), L.Conv2D(4, 1, strides=2, name="pw")):
        model = keras.Sequential([keras.Input((6, 6, 2)), L.DepthwiseConv2D(3, name="dw"), conv])
        assert isinstance(_read(model, fuse=True, pointwise=True), Layer)


# ---------------------------------------------------------------------------------------------
# export writes and reads back every kind

def _models():
    yield "dw1d", keras.Sequential([keras.Input((3, 9)), L.DepthwiseConv1D(
        3, strides=2, depth_multiplier=2, data_format="channels_first", name="dw")]), {}
    yield "grouped", keras.Sequential([keras.Input((5, 5, 2)), L.Conv2D(
        4, 3, groups=2, padding="same", activation="relu", name="dw")]), {}
    yield "padded", keras.Sequential([keras.Input((5, 5, 2)), L.ZeroPadding2D(
        ((1, 0), (0, 2)), name="zp"), L.DepthwiseConv2D(2, name="dw")]), dict(fuse=True)
    yield "sep1d", keras.Sequential([keras.Input((8, 2)), L.SeparableConv1D(
        3, 3, depth_multiplier=2, activation="relu6", name="dw")]), {}
    yield "pair", keras.Sequential([keras.Input((5, 5, 2)), L.DepthwiseConv2D(
        3, activation="relu", name="dw"), L.Conv2D(3, 1, use_bias=False, name="pw")]), \
        dict(fuse=True, pointwise=True)


@pytest.mark.parametrize("name, model, options", list(_models()),
                         ids=[m[0] for m in _models()])
def test_export_round_trip(tmp_path, name, model, options):
    from dwconv.golden.formats import LayerFormats
    _randomize(model, 11)
    layer = _read(model, **options)
    formats = LayerFormats.from_strings(mid="fixed<12,5,RND,SAT>")
    export_layer(tmp_path / "e", layer, formats)
    document = json.loads((tmp_path / "e" / "layer.json").read_text())
    weights = np.load(tmp_path / "e" / "weights.npz")
    separable = isinstance(layer, SeparableLayer)
    assert document["kind"] == layer.kind
    assert ("mid" in document["formats"]) == separable
    if separable:
        assert document["formats"]["mid"] == "fixed<12,5,RND,SAT>"
        assert document["filters"] == layer.filters
        assert weights["pointwise_kernel"].shape == (1,) * layer.spec.rank + \
            layer.pointwise_kernel.shape
    assert weights["kernel"].shape == layer.depthwise.keras_kernel.shape if separable else \
        weights["kernel"].shape == layer.keras_kernel.shape
    back, stored = read_export(tmp_path / "e")
    assert type(back) is type(layer) and back.spec == layer.spec and back.name == layer.name
    assert LayerFormats.from_strings(**stored).to_dict(separable) == formats.to_dict(separable)
    x = _input(np.random.default_rng(0), model.inputs[0].shape[1:])
    np.testing.assert_array_equal(float_forward(back, x), float_forward(layer, x))
    _close(back, model, x)


@pytest.mark.parametrize("name, model, options", list(_models()),
                         ids=[m[0] for m in _models()])
def test_legacy_h5_reads_the_same(tmp_path, name, model, options):
    """A legacy .h5 of the same model gives the same layer as its .keras."""
    _randomize(model, 12)
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    from_keras = load_keras_layer(tmp_path / "m.keras", "dw", **options)
    from_h5 = load_keras_layer(tmp_path / "m.h5", "dw", **options)
    assert type(from_h5) is type(from_keras) and from_h5.spec == from_keras.spec
    assert from_h5.fused == from_keras.fused
    x = _input(np.random.default_rng(1), model.inputs[0].shape[1:])
    np.testing.assert_array_equal(float_forward(from_h5, x), float_forward(from_keras, x))


def test_single_export_cli_of_separable_and_pair(tmp_path, capsys):
    from dwconv.cli import main
    model = dict((m[0], m[1]) for m in _models())["pair"]
    _randomize(model, 13)
    model.save(tmp_path / "m.keras")
    assert main(["export", str(tmp_path / "m.keras"), "--fuse", "--pointwise",
                 "--mid-format", "fixed<10,4,RND,SAT>", "-o", str(tmp_path / "e")]) == 0
    document = json.loads((tmp_path / "e" / "layer.json").read_text())
    assert document["kind"] == "DepthwiseConv2D+Conv2D" and document["filters"] == 3
    assert document["formats"]["mid"] == "fixed<10,4,RND,SAT>"
    assert document["depthwise_activation"] == "relu" and document["use_bias"] is False
    assert main(["export", str(tmp_path / "m.keras"), "--fuse", "-o",
                 str(tmp_path / "d")]) == 0
    assert json.loads((tmp_path / "d" / "layer.json").read_text())["kind"] == "DepthwiseConv2D"
    assert main(["export", str(tmp_path / "m.keras"), "--mid-format", "fixed<99,4>", "-o",
                 str(tmp_path / "bad")]) == 2
    assert "--mid-format" in capsys.readouterr().err and not (tmp_path / "bad").exists()
