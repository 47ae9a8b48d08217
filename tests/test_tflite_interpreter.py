"""The int8 golden model equals LiteRT's interpreter bit for bit.

Fixtures (tests/data/tflite, converted from Keras by TensorFlow) hold the interpreter's
outputs, so the golden model is checked without it; with ai-edge-litert installed the
interpreter is also run live on the fixtures and on random models written with the tflite
package's builders, with both op resolvers:

- ``AUTO`` (the default; the XNNPACK delegate runs the op) equals rounding "fp32";
- ``BUILTIN_REF`` (reference kernels) equals rounding "double".
"""

import pathlib
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dwconv.golden.int8_ref import Int8Layer, predict, predict_int8
from dwconv.golden.spec import LayerSpec
from dwconv.models.tflite_io import load_tflite_layer

DATA = pathlib.Path(__file__).parent / "data" / "tflite"
sys.path.insert(0, str(DATA))
import builder  # noqa: E402

sys.path.remove(str(DATA))

FIXTURES = sorted(p.stem for p in DATA.glob("*.tflite")
                  if p.stem != "dw3x3_dil2_same")       # dilated with bias: refused
RESOLVERS = [("AUTO", "fp32"), ("BUILTIN_REF", "double")]

try:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
except ImportError:
    Interpreter = None
needs_litert = pytest.mark.skipif(Interpreter is None,
                                  reason="ai-edge-litert (dwconv[litert]) is not installed")


def run_interpreter(model, x, resolver, tensor_name=None):
    """The interpreter's value of the named tensor (default: the output), frame by frame."""
    kwargs = {"model_path": str(model)} if isinstance(model, pathlib.Path) else \
        {"model_content": model}
    kind = getattr(OpResolverType, resolver)
    it = Interpreter(**kwargs, experimental_op_resolver_type=kind)
    index = it.get_output_details()[0]["index"]
    if tensor_name is not None and it.get_output_details()[0]["name"] != tensor_name:
        # an inner tensor (the DEPTHWISE_CONV_2D of a DW + CONV_2D pair) must be kept
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Warning: Enabling `experimental_preserve_all")
            it = Interpreter(**kwargs, experimental_op_resolver_type=kind,
                             experimental_preserve_all_tensors=True)
        index = next(t["index"] for t in it.get_tensor_details() if t["name"] == tensor_name)
    it.allocate_tensors()
    frames = []
    for frame in x:
        it.set_tensor(it.get_input_details()[0]["index"], frame[None])
        it.invoke()
        frames.append(it.get_tensor(index)[0].copy())
    return np.stack(frames)


def _fixture(name):
    with np.load(DATA / f"{name}.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("stored, rounding", [("auto", "fp32"), ("ref", "double")])
def test_fixture_equals_stored_interpreter_output(name, stored, rounding):
    data = _fixture(name)
    layer = load_tflite_layer(DATA / f"{name}.tflite", 0 if name == "dw_pw" else None)
    np.testing.assert_array_equal(predict_int8(layer, data["x"], rounding), data[stored])


def test_stored_outputs_tell_the_roundings_apart():
    # the DS-CNN layer is where the two resolvers differ most: both forms are exercised
    data = _fixture("dscnn_25x5x64")
    assert np.count_nonzero(data["auto"] != data["ref"]) > 10
    assert np.abs(data["auto"].astype(int) - data["ref"]).max() == 1


@needs_litert
@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("resolver, rounding", RESOLVERS)
def test_fixture_equals_live_interpreter(name, resolver, rounding):
    data = _fixture(name)
    layer = load_tflite_layer(DATA / f"{name}.tflite", 0 if name == "dw_pw" else None)
    got = run_interpreter(DATA / f"{name}.tflite", data["x"], resolver, layer.name)
    np.testing.assert_array_equal(predict_int8(layer, data["x"], rounding), got)


@needs_litert
def test_default_rounding_is_the_default_interpreter():
    data = _fixture("dscnn_25x5x64")
    layer = load_tflite_layer(DATA / "dscnn_25x5x64.tflite")
    got = run_interpreter(DATA / "dscnn_25x5x64.tflite", data["x"], "AUTO")
    np.testing.assert_array_equal(predict_int8(layer, data["x"]), got)


def _ties_model(kernel_size, channels):
    """acc / 16 for acc = x in [-128, 127]: every x = 8 (mod 16) is an exact half."""
    kernel = np.zeros((kernel_size, kernel_size, channels, 1), np.int8)
    kernel[kernel_size // 2, kernel_size // 2] = 1
    scales = np.full(channels, 2.0 ** -4, np.float32)
    g = builder.depthwise_graph(kernel, np.zeros(channels, np.int32), scales,
                                (16, 16, channels), in_scale=1.0, in_zp=0, out_scale=1.0,
                                out_zp=0)
    x = np.arange(-128, 128).reshape(1, 16, 16, 1).repeat(channels, axis=3).astype(np.int8)
    spec = LayerSpec((16, 16, channels), (kernel_size, kernel_size), padding="same")
    return builder.write(g), x, Int8Layer(spec, kernel, np.zeros(channels, np.int32), scales,
                                          1.0, 0, 1.0, 0)


def test_ties_round_as_each_form_says():
    _, x, layer = _ties_model(1, 1)
    halves = x[0, :, :, 0].ravel()
    halves = halves[halves % 16 == 8]              # acc/16 = k + 0.5
    frame = np.zeros((16, 16, 1), np.int8)
    frame.ravel()[:halves.size] = halves
    exact = halves / 16
    got = {r: predict_int8(layer, frame, r).ravel()[:halves.size] for r in
           ("fp32", "double", "single")}
    np.testing.assert_array_equal(got["single"], np.floor(exact + 0.5))        # half up
    np.testing.assert_array_equal(got["double"], np.sign(exact) * np.floor(abs(exact) + 0.5))
    np.testing.assert_array_equal(got["fp32"], np.round(exact))                 # half to even


@needs_litert
@pytest.mark.parametrize("kernel_size, channels", [(1, 16), (3, 16), (1, 3), (3, 64)])
@pytest.mark.parametrize("resolver, rounding", RESOLVERS)
def test_ties_against_interpreter(kernel_size, channels, resolver, rounding):
    blob, x, layer = _ties_model(kernel_size, channels)
    got = run_interpreter(blob, x, resolver)
    np.testing.assert_array_equal(predict_int8(layer, x, rounding), got)
    # the other forms differ on these ties: the test tells them apart
    for other in {"fp32", "double", "single"} - {rounding}:
        assert np.any(predict_int8(layer, x, other) != got)


def _random_case(data, *, large=False):
    draw = data.draw
    h = draw(st.integers(1, 9), label="h")
    w = draw(st.integers(1, 9), label="w")
    c = draw(st.sampled_from([1, 2, 3, 4, 8, 16, 17, 32]), label="c")
    m = draw(st.sampled_from([1, 1, 2, 3]), label="m")
    kh = draw(st.sampled_from([1, 2, 3, 5]), label="kh")
    kw = draw(st.sampled_from([1, 2, 3, 5]), label="kw")
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    if padding == "VALID" and ((kh - 1) * dilation[0] + 1 > h or (kw - 1) * dilation[1] + 1 > w):
        padding = "SAME"
    activation = draw(st.sampled_from(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]))
    per_channel = draw(st.booleans())
    use_bias = draw(st.booleans())
    seed = draw(st.integers(0, 2 ** 32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    kernel = rng.integers(-127, 128, size=(kh, kw, c, m)).astype(np.int8)
    scales = rng.uniform(0.001, 0.05, size=c * m).astype(np.float32)
    if not per_channel:
        scales[:] = scales[0]
    in_scale = float(np.float32(rng.uniform(0.002, 0.1)))
    # from outputs mostly in range to mostly saturated (the clamp and the corners)
    spread = float(rng.choice([0.5, 3, 20, 200, 2000]))
    out_scale = float(np.float32(in_scale * scales.mean() * spread))
    # huge: up to 2**30, but |acc * scale| < 2**31, beyond which some XNNPACK kernels wrap
    # a product they convert to int32 (the golden model saturates it)
    max_scale = in_scale * float(scales.max()) / out_scale
    bias_range = int(2 ** 30 / max(1.0, max_scale)) if large else 30000
    # the interpreter's int8 kernel needs a bias tensor: "no bias" is a zero one
    bias = rng.integers(-bias_range, bias_range, size=c * m).astype(np.int32) \
        if use_bias else np.zeros(c * m, np.int32)
    in_zp, out_zp = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    g = builder.depthwise_graph(kernel, bias, scales, (h, w, c), in_scale=in_scale,
                                in_zp=in_zp, out_scale=out_scale, out_zp=out_zp,
                                strides=strides, dilation=dilation, padding=padding,
                                activation=activation, per_channel=per_channel)
    x = rng.integers(-128, 128, size=(2, h, w, c)).astype(np.int8)
    return builder.write(g), x


@needs_litert
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_models_equal_both_resolvers(data, tmp_path_factory):
    blob, x = _random_case(data)
    path = tmp_path_factory.mktemp("m") / "model.tflite"
    path.write_bytes(blob)
    layer = load_tflite_layer(path)
    for resolver, rounding in RESOLVERS:
        np.testing.assert_array_equal(predict_int8(layer, x, rounding),
                                      run_interpreter(blob, x, resolver),
                                      err_msg=f"{resolver} vs {rounding}")


@needs_litert
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_models_with_huge_bias(data, tmp_path_factory):
    # accumulators far beyond 2**24: float32(acc) rounds in the fp32 form
    blob, x = _random_case(data, large=True)
    path = tmp_path_factory.mktemp("m") / "model.tflite"
    path.write_bytes(blob)
    layer = load_tflite_layer(path)
    for resolver, rounding in RESOLVERS:
        np.testing.assert_array_equal(predict_int8(layer, x, rounding),
                                      run_interpreter(blob, x, resolver),
                                      err_msg=f"{resolver} vs {rounding}")


@needs_litert
@pytest.mark.parametrize("seed", range(3))
def test_wide_frames_equal_the_default_interpreter(seed):
    # many values per model: near-ties of the float32 product appear
    rng = np.random.default_rng(seed)
    c = 64
    kernel = rng.integers(-127, 128, size=(3, 3, c, 1)).astype(np.int8)
    scales = rng.uniform(0.002, 0.05, size=c).astype(np.float32)
    scales[::2] = 2.0 ** rng.integers(-8, -4, size=c // 2)
    in_scale, out_scale = 2.0 ** -4, float(np.float32(rng.uniform(0.01, 0.05)))
    bias = rng.integers(-2000, 2000, size=c).astype(np.int32)
    g = builder.depthwise_graph(kernel, bias, scales, (48, 48, c), in_scale=in_scale,
                                in_zp=int(rng.integers(-128, 128)), out_scale=out_scale,
                                out_zp=int(rng.integers(-128, 128)))
    blob = builder.write(g)
    spec = LayerSpec((48, 48, c), (3, 3), padding="same")
    layer = Int8Layer(spec, kernel, bias, scales, in_scale, g.tensors[0].zero_points[0],
                      out_scale, g.tensors[-1].zero_points[0])
    x = rng.integers(-128, 128, size=(1, 48, 48, c)).astype(np.int8)
    for resolver, rounding in RESOLVERS:
        np.testing.assert_array_equal(predict_int8(layer, x, rounding),
                                      run_interpreter(blob, x, resolver))


def _float_model(rng):
    """float32 -> QUANTIZE -> DEPTHWISE_CONV_2D -> DEQUANTIZE -> float32."""
    c = 4
    kernel = rng.integers(-127, 128, size=(3, 3, c, 1)).astype(np.int8)
    scales = rng.uniform(0.002, 0.05, size=c).astype(np.float32)
    in_scale = float(np.float32(rng.uniform(0.01, 0.05)))
    out_scale = float(np.float32(in_scale * scales.mean() * 30))
    g = builder.depthwise_graph(kernel, rng.integers(-3000, 3000, c).astype(np.int32), scales,
                                (16, 15, c), in_scale=in_scale, in_zp=-3, out_scale=out_scale,
                                out_zp=5)
    x8, y8 = g.inputs[0], g.outputs[0]
    xf = g.add(builder.Tensor("float_input", (1, 16, 15, c), np.float32))
    yf = g.add(builder.Tensor("float_output", (1, 16, 15, c), np.float32))
    import tflite
    g.ops.insert(0, builder.Op(tflite.BuiltinOperator.QUANTIZE, [xf], [x8]))
    g.ops.append(builder.Op(tflite.BuiltinOperator.DEQUANTIZE, [y8], [yf]))
    g.inputs, g.outputs = [xf], [yf]
    return builder.write(g), in_scale


@needs_litert
@pytest.mark.parametrize("resolver, rounding", RESOLVERS)
def test_float_arrays_are_quantized_as_tflite_quantize(resolver, rounding, tmp_path):
    rng = np.random.default_rng(5)
    blob, in_scale = _float_model(rng)
    (tmp_path / "f.tflite").write_bytes(blob)
    layer = load_tflite_layer(tmp_path / "f.tflite")
    x = rng.normal(0, 2, size=(3, 16, 15, 4)).astype(np.float32)
    # exact halves of the scale, both signs, and values beyond the int8 range
    x[0].flat[:8] = np.float32(in_scale) * np.array([0.5, -0.5, 1.5, -1.5, 2.5, -2.5,
                                                     300, -300], np.float32)
    # values within a few float32 steps of halves: division and reciprocal part here
    halves = (rng.integers(-100, 100, 960) + 0.5) * np.float32(in_scale)
    steps = rng.integers(-3, 4, 960)
    near = np.array([np.float32(v) for v in halves], np.float32)
    for i, k in enumerate(steps):
        for _ in range(abs(k)):
            near[i] = np.nextafter(near[i], np.float32(np.sign(k) * np.inf))
    x[1].flat[:] = near
    y = predict(layer, x, rounding)
    assert y.dtype == np.float64
    got = run_interpreter(blob, x, resolver)
    np.testing.assert_array_equal(y.astype(np.float32), got)


@needs_litert
def test_product_is_rounded_to_float32_before_the_integer():
    # found on wide random frames: acc * scale is 129.49999..., but float32(acc) * scale
    # rounds to 129.5, which goes to the even 130 (101 after the zero point); rounding the
    # exact product gives 129 (100): the interpreter follows the float32 product
    in_scale, w_scale, out_scale = 0.040538933128118515, 0.008613117039203644, \
        0.023837696760892868
    g = builder.depthwise_graph(np.ones((1, 1, 1, 1), np.int8), np.array([8841], np.int32),
                                np.array([w_scale], np.float32), (1, 1, 1), in_scale=in_scale,
                                in_zp=0, out_scale=out_scale, out_zp=-29)
    blob = builder.write(g)
    layer = Int8Layer(LayerSpec((1, 1, 1), (1, 1)), np.ones((1, 1, 1, 1), np.int8),
                      np.array([8841], np.int32), np.array([w_scale], np.float32), in_scale, 0,
                      out_scale, -29)
    x = np.zeros((1, 1, 1, 1), np.int8)
    scale = layer.float_scales()[0]
    exact = np.rint(8841 * np.float64(scale)) - 29          # without the float32 rounding
    got = run_interpreter(blob, x, "AUTO")
    np.testing.assert_array_equal(predict_int8(layer, x, "fp32"), got)
    assert got.ravel()[0] == 101 and exact == 100
