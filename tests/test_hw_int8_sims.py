"""The int8 engine's shipped Verilog under every simulator: Verilator and Icarus at native
speed (tb_stream.v), cocotb with random backpressure.  Constant and port weights, the three
roundings, stalls and back-to-back frames: outputs equal the interpreter's stored outputs
(``auto``: LiteRT's default interpreter, fp32; ``ref``: its reference kernels, double) bit
for bit, and the golden model's single rounding."""

import dataclasses
import importlib.util
import pathlib
import shutil

import numpy as np
import pytest

from dwconv.golden.int8_ref import predict_int8
from dwconv.models.tflite_io import load_tflite_layer
from dwconv.hw.int8 import Int8Engine
from dwconv.sim.amaranth_sim import run_amaranth
from dwconv.sim.cocotb_sim import run_cocotb
from dwconv.sim.native_sim import run_native_timed
from support.shared_build import cocotb_build_root, native_build_root

DATA = pathlib.Path(__file__).parent / "data" / "tflite"

ICARUS = pytest.mark.skipif(shutil.which("iverilog") is None,
                            reason="Icarus Verilog (iverilog) is not installed")
VERILATOR = pytest.mark.skipif(shutil.which("verilator") is None,
                               reason="Verilator is not installed")
COCOTB = pytest.mark.skipif(importlib.util.find_spec("cocotb_tools") is None,
                            reason="cocotb is not installed")


def fixture(name):
    """(layer, input frames, {rounding: expected outputs}): the interpreter's for fp32 and
    double, the golden model's for single (the interpreter has no such form)."""
    layer = load_tflite_layer(DATA / f"{name}.tflite")
    with np.load(DATA / f"{name}.npz") as data:
        x = data["x"]
        return layer, x, {"fp32": data["auto"], "double": data["ref"],
                          "single": predict_int8(layer, x, "single")}


def other_weights(layer):
    """The same layer with other kernel, bias and weight scales."""
    kernel = np.clip(-layer.kernel.astype(np.int16) + 3, -128, 127).astype(np.int8)
    return dataclasses.replace(layer, kernel=kernel[::-1].copy(), bias=layer.bias[::-1].copy(),
                               weight_scales=layer.weight_scales * np.float32(1.7))


def check(result, want):
    assert not result.error and not result.framing
    np.testing.assert_array_equal(result.outputs, want)


# fixture, lanes, rounding, native simulator: one build each
CONST = [
    pytest.param("dw3x3_m3_s2", 1, "double", "verilator", marks=VERILATOR),
    pytest.param("dw3x2_s21_same", 3, "fp32", "icarus", marks=ICARUS),
    pytest.param("dw3x3_m2", 3, "single", "icarus", marks=ICARUS),
]


@pytest.mark.parametrize("name, lanes, rounding, simulator", CONST)
def test_const_weights_native(name, lanes, rounding, simulator):
    layer, x, want = fixture(name)
    engine = Int8Engine.from_layer(layer, lanes, rounding)
    result, _ = run_native_timed(engine, x, simulator=simulator, stall=0.3, seed=5,
                                 build_dir=native_build_root())
    check(result, want[rounding])


PORT = [
    pytest.param("fp32", "verilator", marks=VERILATOR),
    pytest.param("double", "icarus", marks=ICARUS),
    pytest.param("single", "icarus", marks=ICARUS),
]


@pytest.mark.parametrize("rounding, simulator", PORT)
def test_port_weights_native(rounding, simulator):
    # built with other weights; the fixture's own are loaded before frames 0 and 2, the
    # other ones again before frame 1; then, without stalls, the Amaranth model's cycles
    layer, x, want = fixture("dw3x3_relu")
    other = other_weights(layer)
    engine = Int8Engine.from_layer(other, 4, rounding, weights="port")
    loads = {0: (engine.load_values(layer), ()), 1: (engine.load_values(other), ()),
             2: (engine.load_values(layer), ())}
    result, _ = run_native_timed(engine, x, simulator=simulator, stall=0.3, seed=7,
                                 loads=loads, build_dir=native_build_root())
    check(result, np.stack([want[rounding][0], predict_int8(other, x[1], rounding),
                            want[rounding][2]]))
    steady, _ = run_native_timed(engine, x[:2], simulator=simulator,
                                 loads={0: loads[0]}, build_dir=native_build_root())
    check(steady, want[rounding][:2])
    model = run_amaranth(engine, x[:2], loads={0: loads[0]})
    assert (steady.cycles, steady.latency_cycles) == (model.cycles, model.latency_cycles)


@COCOTB
@pytest.mark.parametrize("rounding, weights, simulator", [
    pytest.param("fp32", "const", "icarus", marks=ICARUS),
    pytest.param("double", "port", "icarus", marks=ICARUS),
    pytest.param("single", "port", "verilator", marks=VERILATOR),
])
def test_cocotb_with_backpressure(rounding, weights, simulator):
    # port weights: built with other ones, the fixture's loaded before the first frame
    layer, x, want = fixture("dw3x3_per_tensor")
    built = layer if weights == "const" else other_weights(layer)
    engine = Int8Engine.from_layer(built, 2, rounding, weights=weights)
    loads = {0: (engine.load_values(layer), ())} if weights == "port" else None
    result = run_cocotb(engine, x[:2], simulator=simulator, stall=0.3, seed=3, loads=loads,
                        build_dir=cocotb_build_root())
    check(result, want[rounding][:2])


@VERILATOR
@pytest.mark.parametrize("name, lanes, rounding, weights", [
    ("dw3x2_s21_same", 3, "fp32", "port"), ("dw3x3_m2", 1, "double", "const"),
    ("dw3x3_valid_s2", 2, "single", "port")])
def test_shipped_verilog_lints_clean(name, lanes, rounding, weights):
    from dwconv.flows.lint import lint_verilog
    from dwconv.flows.verilog import engine_verilog
    layer, _, _ = fixture(name)
    engine = Int8Engine.from_layer(layer, lanes, rounding, weights=weights)
    assert lint_verilog(engine_verilog(engine)) == []


@VERILATOR
@pytest.mark.parametrize("rounding, weights", [("fp32", "const"), ("single", "port")])
def test_one_channel_group_lints_clean(rounding, weights):
    # found by the fuzzer: with one channel group the requantizer's group count had no
    # bits, and Verilator's ASCRANGE stopped the build (a 1x1 kernel, one channel)
    from dwconv.golden.int8_ref import Int8Layer
    from dwconv.golden.spec import LayerSpec
    from dwconv.flows.lint import lint_verilog
    from dwconv.flows.verilog import engine_verilog
    spec = LayerSpec(input_shape=(2, 3, 1), kernel_size=(1, 1), padding="same")
    layer = Int8Layer(spec, np.array([[[[-77]]]], np.int8), np.array([900], np.int32),
                      np.array([0.01], np.float32), 0.05, -3, 0.3, 4)
    engine = Int8Engine.from_layer(layer, 1, rounding, weights=weights)
    assert lint_verilog(engine_verilog(engine)) == []
