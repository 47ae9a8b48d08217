"""The separable block's fixed datapath (golden.separable_ref), bit for bit.

The reference here takes another path: every value is a dyadic rational small enough for
float64 to hold exactly, so the depthwise and pointwise sums are computed in float64 on
the quantized weights, and each conversion (mid, accumulator, output) quantizes a float
(QFormat.quantize) where the golden model shifts raw integers (QFormat.convert).
"""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dwconv.golden.fixed_ref import fixed_forward
from dwconv.golden.float_ref import float_forward_nhwc
from dwconv.golden.formats import DEFAULT_FORMATS, LayerFormats
from dwconv.golden.layer import Layer, SeparableLayer
from dwconv.golden.separable_ref import (depthwise_mid_raw, pointwise_raw,
                                         quantize_pointwise, separable_forward,
                                         separable_forward_raw)
from dwconv.golden.spec import LayerError, LayerSpec

ROUNDING = ["TRN", "RND", "RND_CONV", "RND_ZERO", "RND_INF", "RND_MIN_INF", "TRN_ZERO"]
OVERFLOW = ["WRAP", "SAT", "SAT_ZERO", "SAT_SYM"]


@st.composite
def qformats(draw, max_width=10, signed=None):
    signed = draw(st.booleans()) if signed is None else signed
    width = draw(st.integers(3, max_width))
    int_bits = draw(st.integers(1, width - 1))
    text = (f"{'fixed' if signed else 'ufixed'}<{width},{int_bits},"
            f"{draw(st.sampled_from(ROUNDING))},{draw(st.sampled_from(OVERFLOW))}>")
    return text


@st.composite
def blocks(draw):
    rank = draw(st.sampled_from([1, 2]))
    c, m, f = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 4))
    k = draw(st.integers(1, 3))
    size = draw(st.integers(k, 6))
    spec = LayerSpec(input_shape=(size, c) if rank == 1 else (size, size + 1, c),
                     kernel_size=k, strides=draw(st.integers(1, 2)),
                     padding=draw(st.sampled_from(["valid", "same"])), depth_multiplier=m,
                     use_bias=draw(st.booleans()),
                     activation=draw(st.sampled_from(["linear", "relu", "relu6"])),
                     kind="DepthwiseConv1D" if rank == 1 else "DepthwiseConv2D")
    kind = draw(st.sampled_from(["SeparableConv1D" if rank == 1 else "SeparableConv2D"]
                                + (["DepthwiseConv2D+Conv2D"] if rank == 2 else [])))
    if kind != "DepthwiseConv2D+Conv2D":
        spec = dataclasses.replace(spec, use_bias=False, activation="linear")
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    depthwise = Layer(spec, rng.normal(0, 1.5, spec.kernel_shape),
                      rng.normal(0, 2, spec.out_channels) if spec.use_bias else None)
    use_bias = draw(st.booleans())
    layer = SeparableLayer(depthwise, rng.normal(0, 1.5, (spec.out_channels, f)),
                           rng.normal(0, 2, f) if use_bias else None, use_bias=use_bias,
                           activation=draw(st.sampled_from(["linear", "relu", "relu6"])),
                           kind=kind)
    roles = {role: draw(qformats()) for role in ("input", "weight", "bias", "output",
                                                 "pointwise", "mid")}
    roles["accum"] = draw(st.one_of(st.none(), qformats(max_width=16, signed=True)))
    return layer, LayerFormats.from_strings(**roles), seed


def _activate(value, activation):
    if activation == "relu":
        return np.maximum(value, 0.0)
    if activation == "relu6":
        return np.clip(value, 0.0, 6.0)
    return value


def _reference(layer, formats, x_raw):
    """The datapath in exact float64 arithmetic, each conversion a float quantization."""
    dw, spec = layer.depthwise, layer.spec
    kernel = formats.weight.to_float(formats.weight.quantize(dw.kernel))
    bias = formats.bias.to_float(formats.bias.quantize(dw.bias)) if spec.use_bias else None
    exact_dw = Layer(spec, kernel, bias)     # float32 holds these few-bit values exactly
    assert np.array_equal(exact_dw.kernel, kernel)
    dw_sum = float_forward_nhwc(exact_dw, formats.input.to_float(x_raw))
    mid_raw = formats.mid.quantize(dw_sum)
    pw = formats.pointwise.to_float(formats.pointwise.quantize(layer.pointwise_kernel))
    pw_bias = formats.bias.to_float(formats.bias.quantize(layer.pointwise_bias)) \
        if layer.use_bias else 0.0
    acc = formats.mid.to_float(mid_raw) @ pw + pw_bias
    if formats.accum is not None:
        acc = formats.accum.to_float(formats.accum.quantize(acc))
    return mid_raw, formats.output.quantize(_activate(acc, layer.activation))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(blocks())
def test_separable_fixed_equals_exact_reference(block):
    layer, formats, seed = block
    fmt = formats.input
    x_raw = np.random.default_rng(seed).integers(fmt.raw_min, fmt.raw_max + 1,
                                                 size=(2,) + layer.spec.input_shape)
    mid_expected, out_expected = _reference(layer, formats, x_raw)
    np.testing.assert_array_equal(depthwise_mid_raw(layer, formats, x_raw), mid_expected)
    out = separable_forward_raw(layer, formats, x_raw)
    assert out.shape == (2,) + layer.output_shape
    np.testing.assert_array_equal(out, out_expected)


def _one_channel_block(kernel, pw, pw_bias=None, activation="linear", dw_bias=None,
                       dw_activation="linear"):
    spec = LayerSpec((1, 1, 1), (1, 1), use_bias=dw_bias is not None,
                     activation=dw_activation)
    kind = "SeparableConv2D" if dw_bias is None and dw_activation == "linear" else \
        "DepthwiseConv2D+Conv2D"
    return SeparableLayer(Layer(spec, np.full((1, 1, 1, 1), kernel),
                                None if dw_bias is None else [dw_bias]),
                          np.asarray(pw, float).reshape(1, -1),
                          None if pw_bias is None else np.asarray(pw_bias, float),
                          use_bias=pw_bias is not None, activation=activation, kind=kind)


@pytest.mark.parametrize("mid, kernel, x, expected", [
    ("fixed<6,3>", 1.5, 3.0, -28),                # 4.5 = 36 lsb wraps in 6 bits
    ("fixed<6,3,TRN,SAT>", 1.5, 3.0, 31),          # saturates at 3.875
    ("fixed<6,3,RND,SAT>", 1.5, 0.3125, 4),        # 0.46875 = 3.75 lsb -> 4
    ("fixed<6,3,TRN,SAT>", 1.5, 0.3125, 3),        # -> 3
    ("fixed<6,3,RND_CONV,SAT>", 1.0, 0.3125, 2),   # tie 2.5 lsb -> 2 (even)
    ("fixed<6,3,RND_CONV,SAT>", 1.0, -0.4375, -4),  # tie -3.5 lsb -> -4 (even)
])
def test_mid_conversion_by_hand(mid, kernel, x, expected):
    layer = _one_channel_block(kernel, [1.0])
    formats = LayerFormats.from_strings(input="fixed<12,4>", weight="fixed<8,4>", mid=mid,
                                        pointwise="fixed<8,4>", output="fixed<16,8>")
    x_raw = formats.input.quantize(np.full((1, 1, 1, 1), x))
    assert depthwise_mid_raw(layer, formats, x_raw)[0, 0, 0, 0] == expected


def test_pair_bias_and_activation_apply_before_mid():
    """A joined pair: dw bias and relu6 before the mid conversion, pw bias after."""
    layer = _one_channel_block(2.0, [0.5, -1.0], pw_bias=[0.25, 0.0], activation="relu",
                               dw_bias=1.0, dw_activation="relu6")
    formats = LayerFormats.from_strings(input="fixed<8,4>", weight="fixed<8,4>",
                                        bias="fixed<8,4>", mid="fixed<8,4>",
                                        pointwise="fixed<8,4>", output="fixed<10,5>")
    y = separable_forward(layer, formats, np.array([[[[3.0]]]]))
    # dw: 3*2 + 1 = 7 -> relu6 6 -> mid 6; pw: 6*0.5 + 0.25 = 3.25, 6*-1 = -6 -> relu 0
    np.testing.assert_array_equal(y, [[[[3.25, 0.0]]]])
    np.testing.assert_array_equal(fixed_forward(layer, formats, np.array([[[[3.0]]]])), y)


def test_pointwise_raw_api_and_errors():
    formats = LayerFormats.from_strings(mid="fixed<8,4>", pointwise="fixed<8,2>",
                                        bias="fixed<8,4>", output="fixed<16,8>")
    mid = np.array([[16, -32, 5]])                           # 1.0, -2.0, 0.3125
    pw = np.array([[64, 0], [32, -64], [0, 64]])             # 1, 0 / 0.5, -1 / 0, 1
    out = pointwise_raw(mid, pw, np.array([8, -8]), formats)  # bias 0.5, -0.5
    # f0: 1 - 1 + 0 + 0.5 = 0.5; f1: 0 + 2 + 0.3125 - 0.5 = 1.8125
    np.testing.assert_array_equal(formats.output.to_float(out), [[0.5, 1.8125]])
    with pytest.raises(LayerError, match="raw shapes do not fit"):
        pointwise_raw(mid, pw[:2], np.array([0, 0]), formats)
    with pytest.raises(LayerError, match="outside the mid format"):
        pointwise_raw(mid * 100, pw, np.array([0, 0]), formats)
    with pytest.raises(LayerError, match="must be integers"):
        pointwise_raw(mid * 0.5, pw, np.array([0, 0]), formats)


def test_default_formats_of_the_new_roles():
    assert DEFAULT_FORMATS["pointwise"] == DEFAULT_FORMATS["mid"] == "fixed<16,6>"
    formats = LayerFormats.from_strings()
    assert str(formats.mid) == str(formats.pointwise) == str(formats.weight)
    assert set(formats.to_dict()) == {"input", "weight", "bias", "accum", "output"}
    assert set(formats.to_dict(separable=True)) == set(DEFAULT_FORMATS)


def test_separable_layer_checks_its_weights():
    spec = LayerSpec((3, 3, 2), (1, 1), depth_multiplier=2, use_bias=False)
    dw = Layer(spec, np.ones(spec.kernel_shape))
    with pytest.raises(LayerError, match=r"pointwise kernel .* needs \[4, F\]"):
        SeparableLayer(dw, np.ones((2, 3)), np.zeros(3))
    with pytest.raises(LayerError, match="NaN or Inf"):
        SeparableLayer(dw, np.full((4, 3), np.nan), np.zeros(3))
    with pytest.raises(LayerError, match="needs a 1D depthwise part"):
        SeparableLayer(dw, np.ones((4, 3)), np.zeros(3), kind="SeparableConv1D")
    with pytest.raises(LayerError, match="use_bias false but a nonzero bias"):
        SeparableLayer(dw, np.ones((4, 3)), np.ones(3), use_bias=False)
    layer = SeparableLayer(dw, np.ones((1, 1, 4, 3)), np.zeros(3))
    assert layer.pointwise_kernel.shape == (4, 3) and layer.output_shape == (3, 3, 3)
    w, b = quantize_pointwise(layer, LayerFormats.from_strings(pointwise="fixed<4,2>"))
    np.testing.assert_array_equal(w, np.full((4, 3), 4))
