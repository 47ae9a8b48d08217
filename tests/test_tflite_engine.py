"""Int8Engine in the Amaranth simulator equals the int8 golden model on every fixture.

Every rounding the hardware builds ("fp32": LiteRT's default interpreter; "double": its
reference kernels; "single"), back-to-back frames, random valid/ready stalls, several lane
counts.
"""

import pathlib

import numpy as np
import pytest

from dwconv.golden.int8_ref import predict_int8
from dwconv.models.tflite_io import load_tflite_layer
from dwconv.hw.int8 import Int8Engine
from dwconv.sim.amaranth_sim import run_amaranth
from support.malformed_streams import CASES as MALFORMED, build_case, check_answer
from test_hw_malformed import play

DATA = pathlib.Path(__file__).parent / "data" / "tflite"

# fixture, lanes, frames
CASES = [
    ("dw3x3_same", 2, 2), ("dw3x3_valid_s2", 4, 2), ("dw3x2_s21_same", 3, 2),
    ("dw5x5_valid_nobias", 1, 2), ("dw3x3_m2", 3, 2), ("dw3x3_m3_s2", 1, 2),
    ("dw3x3_relu", 8, 2), ("dw3x3_relu6", 4, 2), ("dw3x3_dil2_same_nobias", 2, 2),
    ("dw3x3_dil2_valid_nobias", 4, 2), ("dw3x3_per_tensor", 2, 2), ("dw_pw", 8, 2),
]
SINGLE = ("dw3x3_same", "dw3x3_m3_s2", "dw3x3_dil2_same_nobias", "dw3x3_per_tensor")
ROUNDED = [(*case, r) for case in CASES for r in ("fp32", "double", "single")
           if r != "single" or case[0] in SINGLE] + [
    # the big one with the interpreters' two forms: its design takes most of the time
    ("dscnn_25x5x64", 16, 1, "fp32"), ("dscnn_25x5x64", 16, 1, "double")]


@pytest.mark.parametrize("name, lanes, frames, rounding", ROUNDED)
def test_fixture_in_amaranth(name, lanes, frames, rounding):
    layer = load_tflite_layer(DATA / f"{name}.tflite", 0 if name == "dw_pw" else None)
    with np.load(DATA / f"{name}.npz") as data:
        x = data["x"][:frames]
        interpreter = {"fp32": data["auto"][:frames], "double": data["ref"][:frames]}
    engine = Int8Engine.from_layer(layer, lanes, rounding)
    result = run_amaranth(engine, x, stall=0.2, seed=len(name))
    assert not result.error and not result.framing
    np.testing.assert_array_equal(result.outputs, predict_int8(layer, x, rounding))
    if rounding in interpreter:
        # and so LiteRT's default interpreter (fp32) or its reference kernels (double)
        np.testing.assert_array_equal(result.outputs, interpreter[rounding])


def test_full_rate_without_stalls():
    layer = load_tflite_layer(DATA / "dw3x3_same.tflite")
    with np.load(DATA / "dw3x3_same.npz") as data:
        x = data["x"]
    result = run_amaranth(Int8Engine.from_layer(layer, 8, "double"), x)
    beats = len(x) * 8 * 8
    # one input beat per cycle: the run takes the frames plus about one latency
    assert result.cycles <= beats + result.latency_cycles + 2
    np.testing.assert_array_equal(result.outputs, predict_int8(layer, x, "double"))


def test_zero_points_at_the_extremes():
    # zp_in = -128 puts every offset value at 0..255 (the 9-bit range's top), zp_out the clamp
    layer = load_tflite_layer(DATA / "dw3x3_relu6.tflite")
    import dataclasses
    layer = dataclasses.replace(layer, input_zero_point=-128, output_zero_point=127,
                                act_min=-128, act_max=127)
    x = np.full((1, 6, 6, 8), 127, np.int8)
    x[0, ::2, ::3] = -128
    result = run_amaranth(Int8Engine.from_layer(layer, 4, "single"), x, stall=0.3, seed=3)
    np.testing.assert_array_equal(result.outputs, predict_int8(layer, x, "single"))


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_streams(name):
    # three channel groups (C = 3, P = 1): the requantizer's group count must follow the
    # frames the inner engine completes or drops
    layer = load_tflite_layer(DATA / "dw3x3_m2.tflite")
    engine = Int8Engine.from_layer(layer, 1)
    seed = sorted(MALFORMED).index(name)
    case = build_case(name, engine, np.random.default_rng(seed))
    outputs, error, accepted = play(engine, case.events, stall=0.3, seed=seed)
    expected = predict_int8(layer, case.frames.astype(np.int8))
    check_answer(case, engine, outputs, expected, error, accepted)


@pytest.mark.parametrize("rounding", ["fp32", "double"])
def test_verilog_has_the_axi_ports(rounding):
    from amaranth.back import verilog
    layer = load_tflite_layer(DATA / "dw3x3_m3_s2.tflite")
    engine = Int8Engine.from_layer(layer, 2, rounding)
    text = verilog.convert(engine, name="dwconv_int8")
    for port in ("s_axis_tdata", "s_axis_tready", "m_axis_tdata", "m_axis_tlast", "error"):
        assert port in text
    assert "input [15:0] s_axis_tdata" in text.replace("wire ", "")
    assert "output [47:0] m_axis_tdata" in text.replace("wire ", "")


def test_engine_checks():
    layer = load_tflite_layer(DATA / "dw3x3_same.tflite")
    with pytest.raises(ValueError, match="rounding must be fp32, double or single"):
        Int8Engine.from_layer(layer, 2, "nearest")
    with pytest.raises(ValueError, match="the fp32 rounding needs the float32 scales"):
        Int8Engine(layer.spec, 2, layer.kernel, layer.bias, input_zero_point=0,
                   output_zero_point=0)
    from dwconv.golden.spec import LayerError
    with pytest.raises(LayerError, match="lanes must divide"):
        Int8Engine.from_layer(layer, 3)
