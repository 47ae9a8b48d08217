"""golden/fixed_ref.py: against hls4ml 1.3's C++ emulation (io_stream, Vivado backend), and
against an independent exact-fraction model for the options hls4ml does not have."""

import contextlib
import io
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dwconv.golden.fixed import MAX_ACCUM_WIDTH, QFormat
from dwconv.golden.fixed_ref import (accumulate_raw, fixed_forward, fixed_forward_raw,
                                     quantize_weights)
from dwconv.golden.formats import LayerFormats
from dwconv.golden.layer import Layer
from dwconv.golden.spec import LayerError, LayerSpec


def _random_layer(rng, spec, scale=1.0):
    kernel = rng.normal(0, scale, spec.kernel_shape).astype(np.float32)
    bias = rng.normal(0, scale, spec.out_channels).astype(np.float32) if spec.use_bias else None
    return Layer(spec, kernel, bias)


def _input(rng, spec, batch, scale):
    h, w, c = spec.input_shape
    shape = (batch, c, h, w) if spec.data_format == "channels_first" else (batch, h, w, c)
    return rng.normal(0, scale, shape).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# hls4ml

HLS4ML_CASES = [
    # (layer options, formats (input, weight, bias, output), input scale)
    (dict(kernel_size=3),
     ("fixed<16,6>", "fixed<16,6>", "fixed<16,6>", "fixed<16,6>"), 2.0),
    (dict(kernel_size=3, padding="same", strides=2),
     ("fixed<8,3,RND,SAT>", "fixed<8,2,RND,SAT>", "fixed<10,4,RND,SAT>", "fixed<8,3,RND,SAT>"),
     3.0),
    (dict(kernel_size=2, padding="same"),
     ("fixed<10,4,RND_CONV,SAT>", "fixed<6,1,RND_CONV,WRAP>", "fixed<12,5,TRN,SAT>",
      "fixed<6,2,RND_CONV,WRAP>"), 3.0),
    (dict(kernel_size=(3, 2), strides=(1, 2), use_bias=False),
     ("ufixed<8,2,RND,SAT>", "fixed<8,1,TRN,WRAP>", "fixed<8,2>", "fixed<7,2,TRN,SAT>"), 2.0),
    (dict(kernel_size=3, padding="same"),
     ("fixed<12,4,TRN,WRAP>", "fixed<9,3,RND,WRAP>", "fixed<14,6,RND_CONV,SAT>",
      "ufixed<9,3,RND_CONV,SAT>"), 4.0),
]


def _hls4ml_predict(layer, formats, x, outdir):
    """Build, compile and run the layer as a one-layer hls4ml model."""
    keras = pytest.importorskip("keras")
    hls4ml = pytest.importorskip("hls4ml")
    from support.keras_models import keras_layer

    spec = layer.spec
    model = keras.Sequential([keras.Input(spec.input_shape),
                              keras_layer(spec, layer.kernel, layer.bias)])
    # hls4ml's accumulator is exact for these formats: the exact accumulator's own format,
    # so that it neither rounds products nor overflows.
    exact = str(formats.exact_accumulator(spec.taps))
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vivado")
    # Layers hls4ml inserts (ZeroPadding2D for same padding) take the model default: the
    # input format, so they pass the input through unchanged.
    cfg["Model"]["Precision"] = str(formats.input)
    for name, layer_cfg in cfg["LayerName"].items():
        if name == spec.name:
            layer_cfg["Precision"] = {"weight": str(formats.weight), "bias": str(formats.bias),
                                      "accum": exact, "result": str(formats.output)}
        else:
            layer_cfg["Precision"] = {"result": str(formats.input)}
    with contextlib.redirect_stdout(io.StringIO()):
        hls_model = hls4ml.converters.convert_from_keras_model(
            model, hls_config=cfg, output_dir=str(outdir), backend="Vivado",
            io_type="io_stream")
        hls_model.compile()
        y = hls_model.predict(np.ascontiguousarray(x.astype(np.float32)))
    return np.asarray(y, dtype=np.float64).reshape((x.shape[0],) + spec.output_shape)


@pytest.mark.hls4ml
@pytest.mark.parametrize("options, texts, scale", HLS4ML_CASES,
                         ids=[c[1][0] + "|" + c[1][3] for c in HLS4ML_CASES])
def test_matches_hls4ml(options, texts, scale, tmp_path):
    spec = LayerSpec(input_shape=(6, 6, 3), name="dw", **options)
    rng = np.random.default_rng(sum(map(ord, "".join(texts))))
    layer = _random_layer(rng, spec)
    formats = LayerFormats.from_strings(input=texts[0], weight=texts[1], bias=texts[2],
                                        output=texts[3])
    x = _input(rng, spec, batch=3, scale=scale)
    ours = fixed_forward(layer, formats, x)
    theirs = _hls4ml_predict(layer, formats, x, tmp_path / "hls")
    np.testing.assert_array_equal(ours, theirs)
    # the case is not trivial: outputs vary, and saturating/wrapping formats are exercised
    assert len(np.unique(ours)) > 10


# ---------------------------------------------------------------------------------------------
# Independent model: one output at a time with exact fractions, and the rounding and overflow
# rules written from their definitions (not from golden/fixed.py's bit tricks).

def _round(value, fmt):
    """Exact rational ``value`` to a raw integer of ``fmt`` (rounding, then overflow)."""
    scaled = value * (1 << fmt.frac)
    floor = math.floor(scaled)
    rest = scaled - floor
    q = fmt.rounding
    if rest == 0 or q == "TRN":
        raw = floor
    elif q == "TRN_ZERO":
        raw = floor if scaled > 0 else floor + 1
    elif rest != Fraction(1, 2):
        raw = floor + (rest > Fraction(1, 2))
    else:  # a tie
        raw = {"RND": floor + 1, "RND_ZERO": floor + (scaled < 0),
               "RND_INF": floor + (scaled > 0), "RND_MIN_INF": floor,
               "RND_CONV": floor + (floor % 2)}[q]
    lo, hi = fmt.raw_min, fmt.raw_max
    if lo <= raw <= hi:
        return -hi if fmt.overflow == "SAT_SYM" and fmt.signed and raw == lo else raw
    if fmt.overflow == "WRAP":
        raw %= 1 << fmt.width
        return raw - (1 << fmt.width) if fmt.signed and raw > hi else raw
    if fmt.overflow == "SAT_ZERO":
        return 0
    if fmt.overflow == "SAT_SYM" and fmt.signed:
        lo = -hi
    return lo if raw < lo else hi


def _slow_fixed(layer, formats, x):
    """Channels_last (H, W, C) float input, one image, to output values as Fractions."""
    spec = layer.spec
    kh, kw = spec.kernel_size
    xq = {(r, c, ch): Fraction(_round(Fraction(float(x[r, c, ch])), formats.input),
                               1 << formats.input.frac)
          for r in range(spec.height) for c in range(spec.width) for ch in range(spec.channels)}
    out = np.empty(spec.output_shape, dtype=object)
    for oy in range(spec.out_height):
        for ox in range(spec.out_width):
            for ch in range(spec.channels):
                for m in range(spec.depth_multiplier):
                    acc = Fraction(0)
                    for i in range(kh):
                        for j in range(kw):
                            r = oy * spec.strides[0] + i * spec.dilation_rate[0] - spec.pad_top
                            c = ox * spec.strides[1] + j * spec.dilation_rate[1] - spec.pad_left
                            if 0 <= r < spec.height and 0 <= c < spec.width:
                                w = Fraction(_round(Fraction(float(layer.kernel[i, j, ch, m])),
                                                    formats.weight), 1 << formats.weight.frac)
                                acc += xq[r, c, ch] * w
                    if spec.use_bias:
                        b = float(layer.bias[ch * spec.depth_multiplier + m])
                        acc += Fraction(_round(Fraction(b), formats.bias),
                                        1 << formats.bias.frac)
                    if formats.accum is not None:
                        acc = Fraction(_round(acc, formats.accum), 1 << formats.accum.frac)
                    if spec.activation in ("relu", "relu6"):
                        acc = max(acc, Fraction(0))
                    if spec.activation == "relu6":
                        acc = min(acc, Fraction(6))
                    out[oy, ox, ch * spec.depth_multiplier + m] = Fraction(
                        _round(acc, formats.output), 1 << formats.output.frac)
    return out


_MODES = st.sampled_from(["TRN", "RND", "RND_CONV", "RND_ZERO", "RND_INF", "RND_MIN_INF",
                          "TRN_ZERO"])
_OVERFLOWS = st.sampled_from(["WRAP", "SAT", "SAT_ZERO", "SAT_SYM"])


@st.composite
def _formats(draw, max_width=12, accum=False):
    width = draw(st.integers(2, max_width))
    signed = draw(st.booleans())
    return QFormat(signed, width, draw(st.integers(0, width)), draw(_MODES), draw(_OVERFLOWS),
                   max_width=MAX_ACCUM_WIDTH if accum else 32)


@st.composite
def _cases(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    spec = LayerSpec(
        input_shape=(draw(st.integers(3, 5)), draw(st.integers(3, 5)), draw(st.integers(1, 2))),
        kernel_size=(kh, kw), strides=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
        dilation_rate=(draw(st.integers(1, 2)), draw(st.integers(1, 2))), padding="same",
        depth_multiplier=draw(st.integers(1, 2)), use_bias=draw(st.booleans()),
        activation=draw(st.sampled_from(["linear", "relu", "relu6"])),
        data_format=draw(st.sampled_from(["channels_last", "channels_first"])))
    formats = LayerFormats(input=draw(_formats()), weight=draw(_formats()),
                           bias=draw(_formats()),
                           accum=draw(st.none() | _formats(max_width=24, accum=True)),
                           output=draw(_formats()))
    return spec, formats


@given(_cases(), st.integers(0, 2**32 - 1))
@settings(max_examples=40, deadline=None)
def test_matches_exact_fraction_model(case, seed):
    spec, formats = case
    rng = np.random.default_rng(seed)
    layer = _random_layer(rng, spec, scale=2.0)
    x = _input(rng, spec, batch=1, scale=4.0)
    ours = fixed_forward(layer, formats, x)[0]
    nhwc = x[0].transpose(1, 2, 0) if spec.data_format == "channels_first" else x[0]
    slow = _slow_fixed(layer, formats, nhwc).astype(np.float64)
    if spec.data_format == "channels_first":
        slow = slow.transpose(2, 0, 1)
    np.testing.assert_array_equal(ours, slow)


# ---------------------------------------------------------------------------------------------
# API details

def test_raw_api_shapes_and_types():
    spec = LayerSpec(input_shape=(5, 4, 2), kernel_size=3, padding="same", depth_multiplier=2,
                     data_format="channels_first")
    layer = _random_layer(np.random.default_rng(3), spec)
    formats = LayerFormats.from_strings()
    kernel_raw, bias_raw = quantize_weights(layer, formats)
    assert kernel_raw.shape == (3, 3, 2, 2) and kernel_raw.dtype == np.int64
    assert bias_raw.shape == (4,) and bias_raw.dtype == np.int64
    x = np.random.default_rng(4).normal(size=(2, 2, 5, 4))
    x_raw = formats.input.quantize(x.transpose(0, 2, 3, 1))
    out_raw = fixed_forward_raw(layer, formats, x_raw)
    assert out_raw.shape == (2, 5, 4, 4) and out_raw.dtype == np.int64
    np.testing.assert_array_equal(formats.output.to_float(out_raw).transpose(0, 3, 1, 2),
                                  fixed_forward(layer, formats, x))


def test_bias_is_zero_without_use_bias():
    spec = LayerSpec(input_shape=(3, 3, 2), kernel_size=1, use_bias=False)
    layer = Layer(spec, np.ones((1, 1, 2, 1), np.float32))
    _, bias_raw = quantize_weights(layer, LayerFormats.from_strings())
    np.testing.assert_array_equal(bias_raw, [0, 0])


def test_accumulator_is_exact_by_default_and_rounds_when_given():
    spec = LayerSpec(input_shape=(1, 2, 1), kernel_size=(1, 2), use_bias=False)
    layer = Layer(spec, np.array([0.25, 0.25], np.float32).reshape(1, 2, 1, 1))
    x = np.array([0.5, 0.25]).reshape(1, 1, 2, 1)    # sum = 0.1875 = 3/16
    exact = LayerFormats.from_strings(output="fixed<16,6>")
    assert fixed_forward(layer, exact, x).item() == 0.1875
    coarse = LayerFormats.from_strings(accum="fixed<8,4,RND>", output="fixed<16,6>")
    acc, frac = accumulate_raw(layer, coarse, exact.input.quantize(x))
    assert frac == 4 and acc.item() == 3      # 3/16 stays 3/16 at 4 fractional bits
    coarser = LayerFormats.from_strings(accum="fixed<8,6,RND>", output="fixed<16,6>")
    assert fixed_forward(layer, coarser, x).item() == 0.25


def test_raw_input_checks():
    spec = LayerSpec(input_shape=(3, 3, 1), kernel_size=1)
    layer = Layer(spec, np.ones((1, 1, 1, 1), np.float32), np.zeros(1, np.float32))
    formats = LayerFormats.from_strings(input="fixed<4,2>")
    with pytest.raises(LayerError, match="shape"):
        fixed_forward_raw(layer, formats, np.zeros((3, 3, 1), np.int64))
    with pytest.raises(LayerError, match="outside"):
        fixed_forward_raw(layer, formats, np.full((1, 3, 3, 1), 8, np.int64))
    with pytest.raises(LayerError, match="integers"):
        fixed_forward_raw(layer, formats, np.zeros((1, 3, 3, 1)))
