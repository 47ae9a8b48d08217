"""The integer pieces of the int8 golden model against plain-integer references.

Each reference is written from the definition (exact rationals), not from the C++ code's
shape, so a slip in the vectorized NumPy (a wrong shift, a sign) shows up.
"""

from fractions import Fraction
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dwconv.golden.int8_ref import (Int8Layer, quantize_multiplier, requantize,
                                    requantize_fp32, predict_int8, activation_range)
from dwconv.golden.spec import LayerError, LayerSpec

INT32 = st.integers(-(1 << 31), (1 << 31) - 1)
MULTIPLIER = st.one_of(st.integers(1 << 30, (1 << 31) - 1), st.integers(0, (1 << 31) - 1),
                       st.sampled_from([0, 1, 1 << 30, (1 << 31) - 1]))
SHIFT = st.integers(-31, 30)


def _wrap32(v):
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


def ref_double(acc, m, shift):
    """gemmlowp: high-mul rounds half toward +inf (its nudge), then divide halves away."""
    a = _wrap32(acc * (1 << max(shift, 0)))
    if a == m == -(1 << 31):
        high = (1 << 31) - 1
    else:
        q = Fraction(a * m, 1 << 31)
        high = math.floor(q + Fraction(1, 2)) if q >= 0 else -math.floor(-q + Fraction(1, 2) -
                                                                          Fraction(1, 1 << 62))
    e = max(-shift, 0)
    q = Fraction(high, 1 << e)
    return int(math.copysign(math.floor(abs(q) + Fraction(1, 2)), q)) if q else 0


def ref_single(acc, m, shift):
    return math.floor(Fraction(acc * m, 1 << (31 - shift)) + Fraction(1, 2))


@settings(max_examples=400, deadline=None)
@given(acc=INT32, m=MULTIPLIER, shift=SHIFT)
def test_requantize_double(acc, m, shift):
    assert int(requantize(acc, m, shift, "double")) == ref_double(acc, m, shift)


@settings(max_examples=400, deadline=None)
@given(acc=INT32, m=MULTIPLIER, shift=SHIFT)
def test_requantize_single(acc, m, shift):
    assert int(requantize(acc, m, shift, "single")) == ref_single(acc, m, shift)


@pytest.mark.parametrize("acc", [-(1 << 31), -(1 << 31) + 1, -1, 0, 1, (1 << 31) - 1,
                                 1 << 30, -(1 << 30)])
@pytest.mark.parametrize("m", [0, 1, 1 << 30, (1 << 31) - 1])
@pytest.mark.parametrize("shift", [-31, -30, -1, 0, 1, 30])
def test_requantize_corners(acc, m, shift):
    assert int(requantize(acc, m, shift, "double")) == ref_double(acc, m, shift)
    assert int(requantize(acc, m, shift, "single")) == ref_single(acc, m, shift)


def test_requantize_arrays_per_channel():
    acc = np.array([[100, -100, 12345], [-7, 7, 0]])
    m = np.array([1 << 30, 1518500250, (1 << 31) - 1])
    shift = np.array([-3, 0, -31])
    for rounding, ref in (("double", ref_double), ("single", ref_single)):
        got = requantize(acc, m, shift, rounding)
        want = [[ref(int(a), int(mm), int(s)) for a, mm, s in zip(row, m, shift)]
                for row in acc]
        np.testing.assert_array_equal(got, want)


@settings(max_examples=500, deadline=None)
@given(real=st.floats(2.0 ** -40, 2.0 ** 40, allow_nan=False))
def test_quantize_multiplier_represents_the_scale(real):
    q, shift = quantize_multiplier(real, "double")
    if real < 2.0 ** -32:
        assert (q, shift) in ((0, 0),) or 1 << 30 <= q < 1 << 31
        return
    assert 1 << 30 <= q < 1 << 31
    exact = Fraction(real) * (1 << 31) / Fraction(2) ** shift      # the mantissa times 2**31
    assert abs(exact - q) <= Fraction(1, 2)
    # half away from zero, as std::round: a tie goes up
    if exact - math.floor(exact) == Fraction(1, 2) and q != 1 << 30:
        assert q == math.floor(exact) + 1


def test_quantize_multiplier_edges():
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(1.0, "double") == (1 << 30, 1)
    assert quantize_multiplier(0.5, "double") == (1 << 30, 0)
    # the mantissa rounds up to 2**31: one more power of two instead
    assert quantize_multiplier(1 - 2.0 ** -33, "double") == (1 << 30, 1)
    assert quantize_multiplier(2.0 ** -40, "double") == (0, 0)
    assert quantize_multiplier(2.0 ** 40, "double") == (1 << 30, 41)
    assert quantize_multiplier(2.0 ** 40, "single") == ((1 << 31) - 1, 30)
    with pytest.raises(LayerError):
        quantize_multiplier(-1.0)
    with pytest.raises(LayerError, match="float32 scale"):
        quantize_multiplier(0.5, "fp32")
    with pytest.raises(LayerError, match="rounding must be one of"):
        requantize(1, 1 << 30, 0, "nearest")


@settings(max_examples=300, deadline=None)
@given(acc=st.integers(-(1 << 24), 1 << 24), scale=st.floats(2.0 ** -20, 200, width=32))
def test_requantize_fp32_small_accumulators(acc, scale):
    # float32(acc) is exact here; the product rounds once to float32, then ties to even
    product = np.float32(acc) * np.float32(scale)
    want = round(Fraction(float(product)))          # Python rounds halves to even
    want = min(max(want, -(1 << 31)), (1 << 31) - 128)   # saturated (int8 clamps it later)
    assert int(requantize_fp32(acc, scale)) == want


def test_activation_ranges():
    assert activation_range("NONE", 0.1, 5) == (-128, 127)
    assert activation_range("RELU", 0.1, 5) == (5, 127)
    assert activation_range("RELU6", 0.1, -100) == (-100, -40)
    assert activation_range("RELU6", 0.01, -100) == (-100, 127)
    assert activation_range("RELU_N1_TO_1", 0.25, 0) == (-4, 4)
    # 6 / 0.08 = 75 (float32 75.0); a half: 0.5 / 0.2 = 2.5 rounds away from zero
    assert activation_range("RELU6", 0.08, 0)[1] == 75
    with pytest.raises(LayerError, match="TANH"):
        activation_range("TANH", 0.1, 0)


def _layer(**kw):
    spec = LayerSpec((3, 3, 2), (1, 1), padding="valid")
    args = dict(spec=spec, kernel=np.ones((1, 1, 2, 1), np.int8),
                bias=np.zeros(2, np.int32), weight_scales=np.array([0.5, 0.25], np.float32),
                input_scale=1.0, input_zero_point=0, output_scale=1.0, output_zero_point=0)
    args.update(kw)
    return Int8Layer(**args)


def test_int8_layer_checks():
    with pytest.raises(LayerError, match="int8 of shape"):
        _layer(kernel=np.ones((1, 1, 2, 1), np.int16))
    with pytest.raises(LayerError, match="int32 of shape"):
        _layer(bias=np.zeros(3, np.int32))
    with pytest.raises(LayerError, match="zero point"):
        _layer(input_zero_point=128)
    with pytest.raises(LayerError, match="clamp"):
        _layer(act_min=5, act_max=4)
    layer = _layer()
    assert layer.multiplier.tolist() == [1 << 30, 1 << 30]
    assert layer.shift.tolist() == [0, -1]
    with pytest.raises(LayerError, match="outside"):
        predict_int8(layer, np.full((3, 3, 2), 300))
    with pytest.raises(LayerError, match="has shape"):
        predict_int8(layer, np.zeros((3, 4, 2), np.int8))


def test_padded_taps_add_nothing():
    # x = zp everywhere: every tap, padded or not, adds 0; the output is the bias alone
    spec = LayerSpec((4, 4, 1), (3, 3), padding="same")
    layer = Int8Layer(spec, np.full((3, 3, 1, 1), 127, np.int8), np.array([40], np.int32),
                      np.array([0.25], np.float32), 1.0, -7, 1.0, 3)
    y = predict_int8(layer, np.full((4, 4, 1), -7, np.int8), "double")
    np.testing.assert_array_equal(y, np.full((4, 4, 1), 10 + 3))
