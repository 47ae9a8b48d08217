"""The unchanged engine builds the new layer forms: 1D layers (one row) and explicit pads.

Each case runs in Amaranth's simulator with stalls and back-to-back frames, bit-exact
against the fixed golden model; the frames are unpadded (H*W*C/P beats).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dwconv.golden.fixed_ref import fixed_forward_raw, quantize_weights
from dwconv.golden.formats import LayerFormats
from dwconv.golden.spec import LayerError, LayerSpec
from dwconv.hw.engine import DepthwiseEngine
from dwconv.sim.amaranth_sim import run_amaranth
from dwconv.sim.simulate import simulate_layer

from support.engine_cases import FORMAT_SETS, random_layer

CASES = [
    # DepthwiseConv1D: stride, dilation, same/valid, multiplier, lanes
    dict(kind="DepthwiseConv1D", shape=(9, 2), kernel=3, padding="same"),
    dict(kind="DepthwiseConv1D", shape=(11, 2), kernel=4, strides=2, dilation=2,
         padding="same", activation="relu6", formats="trn_wrap"),
    dict(kind="DepthwiseConv1D", shape=(10, 4), kernel=2, multiplier=2, lanes=2,
         formats="accum"),
    dict(kind="Conv1D", shape=(8, 3), kernel=3, padding=[[2, 0]], lanes=1,
         formats="conv_sym"),                                       # causal
    # explicit pads: asymmetric, one side more than 'same' gives, zero on some sides
    dict(shape=(5, 6, 2), kernel=(3, 3), padding=[[2, 0], [0, 2]]),
    dict(shape=(6, 5, 2), kernel=(3, 3), padding=[[0, 1], [0, 1]], strides=2,
         formats="trn_wrap"),          # MobileNet's stride-2 ZeroPadding2D
    dict(shape=(6, 7, 4), kernel=(3, 5), padding=[[0, 2], [3, 1]], strides=(2, 1),
         multiplier=2, lanes=2, activation="relu", formats="accum"),
    dict(shape=(7, 7, 2), kernel=(3, 3), padding=[[4, 0], [1, 3]], dilation=2,
         formats="conv_sym"),
    dict(shape=(9, 9, 2), kernel=(5, 5), padding=[[2, 2], [2, 2]], strides=2),  # NASNet
    dict(shape=(8, 8, 2), kernel=(5, 5), padding=[[1, 2], [1, 2]], strides=2,
         formats="trn_wrap"),                                   # EfficientNet
]

#: Pads whose total on an axis exceeds the kernel's span - 1: more outputs than a stride-1
#: 'same' layer gives, some windows wholly in the padding.  The golden model equals Keras
#: on them (tests/test_layers_keras.py, test_layers_spec.py); the engine's output scanner
#: needs its firing targets to increase (``OutputScanner.targets``: row_step >= 1, i.e.
#: (ow-1)*sw < sh*W, and a frame's targets within its H*W beats), which these break.
BEYOND_SPAN = [
    dict(shape=(5, 6, 2), kernel=(3, 3), padding=[[0, 4], [3, 1]]),
    dict(shape=(4, 5, 2), kernel=(2, 3), padding=[[5, 2], [0, 6]], strides=2,
         formats="trn_wrap"),
    dict(shape=(6, 5, 4), kernel=(3, 3), padding=[[1, 2], [2, 1]], strides=(2, 1),
         dilation=(1, 2), multiplier=2, lanes=2, activation="relu", formats="accum"),
    dict(kind="DepthwiseConv1D", shape=(5, 2), kernel=3, padding=[[4, 3]],
         formats="conv_sym"),
    dict(shape=(5, 6, 1), kernel=(3, 3), padding=[[0, 0], [1, 2]]),
]


def _id(case):
    return "-".join(f"{k}={v}" for k, v in case.items()).replace(" ", "")


def _case(kind="DepthwiseConv2D", shape=None, kernel=None, strides=1, dilation=1,
          padding="valid", multiplier=1, lanes=None, activation="linear",
          formats="rnd_sat", seed=0):
    spec = LayerSpec(input_shape=shape, kernel_size=kernel, strides=strides,
                     dilation_rate=dilation, padding=padding, depth_multiplier=multiplier,
                     activation=activation, kind=kind)
    layer = random_layer(spec, np.random.default_rng(seed))
    return layer, LayerFormats.from_strings(**FORMAT_SETS[formats]), lanes or spec.channels


@pytest.mark.parametrize("params", BEYOND_SPAN, ids=[_id(c) for c in BEYOND_SPAN])
def test_pads_beyond_the_span_are_refused(params):
    """Pads totalling more than (k-1)*d on an axis: a one-line LayerError, never a build."""
    layer, formats, lanes = _case(**params, seed=len(_id(params)))
    kernel_raw, bias_raw = quantize_weights(layer, formats)
    with pytest.raises(LayerError, match=r"more than the engine supports .*\(kernel - 1\)"):
        DepthwiseEngine(layer.spec, formats, lanes, kernel_raw, bias_raw)


@pytest.mark.parametrize("params", CASES, ids=[_id(c) for c in CASES])
def test_engine_bit_exact(params):
    layer, formats, lanes = _case(**params, seed=len(_id(params)))
    spec = layer.spec
    kernel_raw, bias_raw = quantize_weights(layer, formats)
    engine = DepthwiseEngine(spec, formats, lanes, kernel_raw, bias_raw)
    rng = np.random.default_rng(3)
    frames = rng.integers(formats.input.raw_min, formats.input.raw_max + 1,
                          size=(3, *spec.input_shape))
    result = run_amaranth(engine, frames, stall=0.25, seed=4)
    np.testing.assert_array_equal(result.outputs, fixed_forward_raw(layer, formats, frames))
    assert result.framing == []
    assert result.outputs.shape[1:3] == spec.output_shape[:2]


@st.composite
def padded_cases(draw):
    """Any kind, pads on each axis totalling at most the kernel's span - 1."""
    rank = draw(st.sampled_from([1, 2]))
    kernel = [draw(st.integers(1, 4)) for _ in range(rank)]
    dilation = [draw(st.integers(1, 2)) for _ in range(rank)]
    pads = []
    for k, d in zip(kernel, dilation):
        total = draw(st.integers(0, (k - 1) * d))
        before = draw(st.integers(0, total))
        pads.append([before, total - before])
    sizes = [draw(st.integers(max(1, (k - 1) * d + 1 - sum(p)), 6))
             for k, d, p in zip(kernel, dilation, pads)]
    channels = draw(st.integers(1, 4))
    lanes = draw(st.sampled_from([p for p in range(1, channels + 1) if channels % p == 0]))
    return dict(kind=draw(st.sampled_from(["DepthwiseConv1D", "Conv1D"] if rank == 1 else
                                          ["DepthwiseConv2D", "Conv2D"])),
                shape=tuple(sizes) + (channels,), kernel=tuple(kernel),
                strides=tuple(draw(st.integers(1, 2)) for _ in range(rank)),
                dilation=tuple(dilation), padding=pads, multiplier=draw(st.integers(1, 2)),
                lanes=lanes, activation=draw(st.sampled_from(["linear", "relu", "relu6"])),
                formats=draw(st.sampled_from(sorted(FORMAT_SETS))),
                seed=draw(st.integers(0, 2**16)))


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(padded_cases())
def test_engine_explicit_pads_sweep(params):
    one = lambda v: v[0] if len(v) == 1 else v
    params = {k: one(v) if k in ("kernel", "strides", "dilation") else v
              for k, v in params.items()}
    layer, formats, lanes = _case(**params)
    spec = layer.spec
    kernel_raw, bias_raw = quantize_weights(layer, formats)
    engine = DepthwiseEngine(spec, formats, lanes, kernel_raw, bias_raw)
    rng = np.random.default_rng(params["seed"])
    frames = rng.integers(formats.input.raw_min, formats.input.raw_max + 1,
                          size=(2, *spec.input_shape))
    result = run_amaranth(engine, frames, stall=0.2, seed=params["seed"])
    np.testing.assert_array_equal(result.outputs, fixed_forward_raw(layer, formats, frames))
    assert result.framing == []


def test_simulate_layer_1d_and_padding_costs_no_cycles():
    """simulate_layer on a 1D layer with explicit pads: 0 mismatches, and the frame is the
    unpadded input (ideal cycles count the unpadded beats only)."""
    layer, formats, lanes = _case(kind="DepthwiseConv1D", shape=(12, 2), kernel=3,
                                  padding=[[2, 0]], strides=2)
    spec = layer.spec
    assert spec.input_shape == (1, 12, 2) and spec.output_shape == (1, 6, 2)
    x = np.random.default_rng(0).normal(0, 2, (2, *spec.input_shape))
    outputs, report = simulate_layer(layer, formats, x, lanes)
    assert report["mismatches"] == 0 and report["framing_errors"] == 0
    assert report["ideal_cycles"] == 2 * 12 * 2 // lanes
    np.testing.assert_array_equal(
        outputs, fixed_forward_raw(layer, formats, formats.input.quantize(x)))
