"""cocotb on the Verilog we ship, under Verilator and Icarus: bit-exact, stalls, loads."""

import shutil

import numpy as np
import pytest

from dwconv.golden.fixed_ref import quantize_weights
from dwconv.sim.amaranth_sim import run_amaranth
from dwconv.sim.cocotb_sim import run_cocotb
from support.engine_cases import make_case, random_layer

ICARUS = pytest.mark.skipif(shutil.which("iverilog") is None,
                            reason="Icarus Verilog (iverilog) is not installed")
SIMULATORS = ["verilator", pytest.param("icarus", marks=ICARUS)]

#: Small but varied: padding, strides, dilation, multiplier, lanes, activations, formats.
CONFIGS = {
    "same_m2_lanes2": dict(shape=(5, 6, 4), kernel=(3, 3), padding="same", multiplier=2,
                           lanes=2, formats="rnd_sat"),
    "valid_stride2_relu6": dict(shape=(7, 8, 3), kernel=(3, 2), strides=2, padding="valid",
                                activation="relu6", formats="trn_wrap"),
    "same_dilation2_stride": dict(shape=(6, 7, 2), kernel=(3, 3), strides=(1, 2), dilation=2,
                                  padding="same", lanes=1, activation="relu",
                                  formats="conv_sym"),
    "valid_5x1_accum": dict(shape=(7, 4, 2), kernel=(5, 1), padding="valid", lanes=2,
                            use_bias=False, formats="accum"),
}


@pytest.fixture(scope="module")
def build_root(tmp_path_factory):
    """One build cache for the module: a design is built once per simulator."""
    return tmp_path_factory.mktemp("cocotb")


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", CONFIGS)
def test_frames_with_stalls_match_golden(name, simulator, build_root):
    case = make_case(**CONFIGS[name], seed=3)
    frames = case.frames(3, np.random.default_rng(7))
    result = run_cocotb(case.engine, frames, simulator=simulator, stall=0.3, seed=11,
                        build_dir=build_root)
    np.testing.assert_array_equal(result.outputs, case.expected(frames))
    assert result.framing == []
    assert not result.error


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_cycles_count_like_the_amaranth_simulator(simulator, build_root):
    """Without stalls the Verilog takes exactly the cycles the Amaranth model takes."""
    case = make_case(**CONFIGS["same_m2_lanes2"], seed=3)
    frames = case.frames(2, np.random.default_rng(8))
    rtl = run_cocotb(case.engine, frames, simulator=simulator, build_dir=build_root)
    model = run_amaranth(case.engine, frames)
    np.testing.assert_array_equal(rtl.outputs, case.expected(frames))
    assert (rtl.cycles, rtl.latency_cycles) == (model.cycles, model.latency_cycles)


def test_weight_load_between_frames(build_root):
    """weights="port": frame 0 runs on the built-in weights, frames 1-2 on a loaded set."""
    case = make_case(shape=(5, 5, 4), kernel=(3, 3), padding="same", lanes=2,
                     formats="rnd_sat", weights="port", seed=5)
    other = random_layer(case.layer.spec, np.random.default_rng(99))
    kernel_raw, bias_raw = quantize_weights(other, case.formats)
    frames = case.frames(3, np.random.default_rng(9))
    result = run_cocotb(case.engine, frames, simulator="verilator", stall=0.25, seed=4,
                        loads={1: (kernel_raw, bias_raw)}, build_dir=build_root)
    np.testing.assert_array_equal(result.outputs[:1], case.expected(frames[:1]))
    np.testing.assert_array_equal(result.outputs[1:], case.expected(frames[1:], other))
    assert result.framing == []
    assert not result.error


def test_same_design_builds_once(build_root):
    """A second run of the same design reuses the cached simulator build."""
    case = make_case(**CONFIGS["valid_stride2_relu6"], seed=3)
    frames = case.frames(1, np.random.default_rng(1))
    run_cocotb(case.engine, frames, simulator="verilator", build_dir=build_root)
    builds = sorted(p.name for p in build_root.iterdir())
    stamps = {p: (p / "built").stat().st_mtime_ns for p in build_root.iterdir()}
    result = run_cocotb(case.engine, frames, simulator="verilator", build_dir=build_root)
    np.testing.assert_array_equal(result.outputs, case.expected(frames))
    assert sorted(p.name for p in build_root.iterdir()) == builds
    assert {p: (p / "built").stat().st_mtime_ns for p in build_root.iterdir()} == stamps
