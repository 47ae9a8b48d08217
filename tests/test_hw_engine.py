"""The whole engine in Amaranth's simulator, bit-exact against the fixed golden model."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dwconv.golden.fixed_ref import quantize_weights
from dwconv.golden.spec import LayerError, LayerSpec
from dwconv.sim.amaranth_sim import run_amaranth
from dwconv.sim.beats import weight_load_values

from support.engine_cases import make_case, random_layer

SWEEP = [
    # kernels 1x1 to 7x7, rectangular and even
    dict(shape=(4, 5, 2), kernel=(1, 1)),
    dict(shape=(5, 6, 2), kernel=(2, 2), padding="same"),
    dict(shape=(6, 5, 2), kernel=(3, 3), padding="same", activation="relu"),
    dict(shape=(6, 7, 2), kernel=(3, 5), formats="trn_wrap"),
    dict(shape=(7, 6, 1), kernel=(4, 2), padding="same", formats="conv_sym"),
    dict(shape=(8, 8, 2), kernel=(5, 5), padding="same", lanes=1),
    dict(shape=(7, 9, 1), kernel=(7, 7), padding="same", activation="relu6"),
    dict(shape=(9, 8, 1), kernel=(6, 4), formats="accum"),
    dict(shape=(3, 3, 2), kernel=(7, 7), padding="same"),   # kernel wider than the image
    # strides 1-3, dilation 1-3, and both together
    dict(shape=(7, 8, 2), kernel=(3, 3), strides=2, padding="same"),
    dict(shape=(9, 9, 2), kernel=(3, 3), strides=3, padding="valid", formats="trn_wrap"),
    dict(shape=(8, 9, 2), kernel=(2, 3), strides=(3, 1), padding="same", formats="conv_sym"),
    dict(shape=(8, 8, 2), kernel=(3, 3), dilation=2, padding="same"),
    dict(shape=(9, 10, 1), kernel=(3, 2), dilation=3, padding="valid", formats="accum"),
    dict(shape=(9, 9, 2), kernel=(3, 3), strides=2, dilation=2, padding="same",
         activation="relu6"),
    dict(shape=(10, 9, 2), kernel=(2, 3), strides=(3, 2), dilation=(2, 3), padding="same"),
    dict(shape=(8, 9, 1), kernel=(3, 3), strides=(1, 2), dilation=(3, 1), padding="valid"),
    # depth multiplier 1-3, every lane count dividing C, bias or not
    dict(shape=(5, 5, 2), kernel=(3, 3), multiplier=2, padding="same"),
    dict(shape=(5, 6, 3), kernel=(3, 2), multiplier=3, lanes=1, use_bias=False),
    dict(shape=(4, 5, 6), kernel=(3, 3), multiplier=2, lanes=2, padding="same",
         formats="accum"),
    dict(shape=(4, 5, 6), kernel=(3, 3), lanes=3, activation="relu", use_bias=False),
    dict(shape=(4, 4, 6), kernel=(2, 2), lanes=6, strides=2, padding="same",
         formats="conv_sym"),
    dict(shape=(5, 4, 4), kernel=(3, 3), lanes=4, dilation=2, padding="same", multiplier=2),
    dict(shape=(5, 5, 4), kernel=(3, 3), lanes=1, strides=2, padding="same"),
]


def _id(case):
    return "-".join(f"{k}={v}" for k, v in case.items()).replace(" ", "")


@pytest.mark.parametrize("params", SWEEP, ids=[_id(c) for c in SWEEP])
def test_sweep_bit_exact(params):
    case = make_case(**params, seed=len(_id(params)))
    rng = np.random.default_rng(1)
    frames = case.frames(3, rng)
    result = run_amaranth(case.engine, frames, stall=0.25, seed=2)
    np.testing.assert_array_equal(result.outputs, case.expected(frames))
    assert result.framing == []
    assert not result.error


@pytest.mark.parametrize("formats", ["trn_wrap", "rnd_sat", "conv_sym", "accum"])
def test_format_sets_back_to_back(formats):
    """No stalls: frames back to back, so bottom padding overlaps the next frame's input."""
    case = make_case(shape=(6, 6, 2), kernel=(3, 3), padding="same", formats=formats,
                     activation="relu6" if formats == "accum" else "linear")
    frames = case.frames(3, np.random.default_rng(3))
    result = run_amaranth(case.engine, frames)
    np.testing.assert_array_equal(result.outputs, case.expected(frames))
    ideal = 3 * 6 * 6
    # the last frame's bottom row and the pipeline are the only extra cycles
    assert ideal <= result.cycles <= ideal + 6 + 2 + case.engine.latency + 4


def test_loaded_weights_swap_between_frames():
    case = make_case(shape=(5, 6, 4), kernel=(3, 3), padding="same", multiplier=2, lanes=2,
                     weights="port")
    rng = np.random.default_rng(4)
    other = random_layer(case.layer.spec, rng)
    loads = {1: quantize_weights(other, case.formats),
             3: (case.kernel_raw, case.bias_raw)}
    frames = case.frames(4, rng)
    result = run_amaranth(case.engine, frames, stall=0.3, seed=5, loads=loads)
    expected = np.concatenate([case.expected(frames[:1]), case.expected(frames[1:3], other),
                               case.expected(frames[3:])])
    np.testing.assert_array_equal(result.outputs, expected)
    assert not result.error


def test_loaded_weights_with_one_group_and_no_bias():
    case = make_case(shape=(4, 4, 2), kernel=(2, 3), padding="same", use_bias=False,
                     weights="port", formats="conv_sym")
    rng = np.random.default_rng(6)
    other = random_layer(case.layer.spec, rng)
    frames = case.frames(2, rng)
    result = run_amaranth(case.engine, frames, loads={0: quantize_weights(other, case.formats)})
    np.testing.assert_array_equal(result.outputs, case.expected(frames, other))


def _malformed_load(kind, values):
    """A weight load with ``last`` misplaced: early, or missing on the final value (the
    values after it start another load)."""
    if kind == "early_last":
        # 4k + 3 values: with 2 lanes and 2 channel groups, both counts stop past their first
        cut = len(values) // 8 * 4 + 3
        return [(v, n == cut - 1) for n, v in enumerate(values[:cut])]
    return [(v, False) for v in values]


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("same_gap", [True, False])
@pytest.mark.parametrize("kind", ["early_last", "no_last"])
def test_malformed_weight_loads_are_discarded(kind, same_gap, use_bias):
    """A load with ``last`` misplaced sets the error flag and is dropped: frames keep the
    weights they had, and the next well-formed load (right after it, or a frame later)
    is taken whole."""
    case = make_case(shape=(4, 5, 4), kernel=(3, 3), padding="same", lanes=2,
                     use_bias=use_bias, weights="port")
    rng = np.random.default_rng(8)
    bad, good = (random_layer(case.layer.spec, rng) for _ in range(2))
    values = weight_load_values(case.layer.spec, *quantize_weights(bad, case.formats),
                                case.engine.store.load_width)
    frames = case.frames(3, rng)
    good_at = 1
    result = run_amaranth(case.engine, frames, stall=0.3, seed=9,
                          load_beats={good_at if same_gap else 0: _malformed_load(kind, values)},
                          loads={good_at: quantize_weights(good, case.formats)})
    expected = np.concatenate([case.expected(frames[:good_at]),
                               case.expected(frames[good_at:], good)])
    np.testing.assert_array_equal(result.outputs, expected)
    assert result.error


def test_lanes_must_divide_channels():
    # checked on the spec, before an engine exists (a half-built Elaboratable would warn)
    spec = LayerSpec(input_shape=(4, 4, 6), kernel_size=(3, 3))
    with pytest.raises(LayerError, match="use one of 1, 2, 3, 6"):
        spec.check_lanes(4)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_configurations(data):
    kh, kw = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    dh, dw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    padding = data.draw(st.sampled_from(["same", "valid"]))
    min_h = (kh - 1) * dh + 1 if padding == "valid" else 1
    min_w = (kw - 1) * dw + 1 if padding == "valid" else 1
    h = data.draw(st.integers(min_h, min_h + 4))
    w = data.draw(st.integers(min_w, min_w + 4))
    channels = data.draw(st.sampled_from([1, 2, 3, 4]))
    lanes = data.draw(st.sampled_from([p for p in (1, 2, 3, 4) if channels % p == 0]))
    case = make_case(
        shape=(h, w, channels), kernel=(kh, kw),
        strides=(data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))),
        dilation=(dh, dw), padding=padding, multiplier=data.draw(st.integers(1, 3)),
        lanes=lanes, activation=data.draw(st.sampled_from(["linear", "relu", "relu6"])),
        use_bias=data.draw(st.booleans()),
        formats=data.draw(st.sampled_from(["trn_wrap", "rnd_sat", "conv_sym", "accum"])),
        seed=data.draw(st.integers(0, 1000)))
    frames = case.frames(2, np.random.default_rng(7))
    result = run_amaranth(case.engine, frames, stall=data.draw(st.sampled_from([0.0, 0.3])),
                          seed=8)
    np.testing.assert_array_equal(result.outputs, case.expected(frames))
    assert result.framing == []
