"""cocotb on the separable block's shipped Verilog (``engine_verilog``), under Verilator and
Icarus with cocotbext-axi's source and sink and random backpressure: constant and port
weights, back-to-back frames, exact against golden.separable_ref."""

import importlib.util
import shutil

import numpy as np
import pytest

from support.separable_cases import make_block

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("cocotb") is None
                       or importlib.util.find_spec("cocotbext.axi") is None,
                       reason="cocotb and cocotbext-axi are not installed"),
    pytest.mark.skipif(shutil.which("verilator") is None and shutil.which("iverilog") is None,
                       reason="neither Verilator nor Icarus Verilog is installed"),
]


def _simulator(name, *values):
    tool = {"verilator": "verilator", "icarus": "iverilog"}[name]
    return pytest.param(*values, name, marks=pytest.mark.skipif(
        shutil.which(tool) is None, reason=f"{tool} is not installed"))


def _simulators():
    return [_simulator("verilator"), _simulator("icarus")]


@pytest.fixture(scope="module")
def build_root(tmp_path_factory):
    """One build cache for the module: a design is built once per simulator."""
    return tmp_path_factory.mktemp("cocotb-separable")


def _run(*args, **kwargs):
    from dwconv.sim.cocotb_sim import run_cocotb
    return run_cocotb(*args, **kwargs)


CONST_CASES = {
    # two beats in and two out per pixel, an accumulator format, relu
    "lanes2_accum": dict(shape=(4, 5, 4), kernel=(3, 3), filters=4, lanes=2, out_lanes=2,
                         formats="accum", activation="relu"),
    # stride 2, folded depthwise and pointwise parts, one filter per output beat
    "stride2_reuse2": dict(shape=(5, 6, 2), kernel=(3, 3), filters=3, strides=2, reuse=2,
                           out_lanes=1, formats="trn_wrap"),
    # a joined pair: depthwise bias and activation, M = 2, no pointwise bias
    "pair_m2": dict(shape=(4, 4, 2), kernel=(2, 2), filters=2, multiplier=2, lanes=1,
                    depthwise_bias=True, depthwise_activation="relu", pointwise_bias=False,
                    activation="relu6"),
}


# every case under Icarus (quick builds), one under Verilator too (its builds take longest)
@pytest.mark.parametrize("name,simulator", [_simulator("verilator", "lanes2_accum")] + [
    _simulator("icarus", name) for name in CONST_CASES])
def test_const_weights_back_to_back_with_stalls(name, simulator, build_root):
    case = make_block(**CONST_CASES[name], seed=31)
    frames = case.frames(3, np.random.default_rng(32))
    expected = case.golden(frames)
    np.testing.assert_array_equal(expected, case.expected(frames))   # two references agree
    result = _run(case.block, frames, simulator=simulator, stall=0.3, seed=33,
                  build_dir=build_root)
    np.testing.assert_array_equal(result.outputs, expected)
    assert result.framing == [] and not result.error


@pytest.mark.parametrize("simulator", _simulators())
def test_port_weights_one_load_for_both_parts(simulator, build_root):
    """Frame 0 on the built-in weights; a load (both kernels and biases) before frame 1,
    another before frame 2, each taken by its frame in both parts."""
    case = make_block(shape=(4, 5, 2), kernel=(3, 3), filters=4, out_lanes=2,
                      weights="port", depthwise_bias=True, formats="wide_pw", seed=34)
    rng = np.random.default_rng(35)
    frames = case.frames(3, rng)
    first, second = case.other_weights(rng), case.other_weights(rng)
    empty = np.zeros(0, dtype=np.int64)
    loads = {1: (case.load_values(first), empty), 2: (case.load_values(second), empty)}
    result = _run(case.block, frames, simulator=simulator, stall=0.3, seed=36, loads=loads,
                  build_dir=build_root)
    assert result.framing == [] and not result.error
    np.testing.assert_array_equal(result.outputs[:1], case.golden(frames[:1]))
    np.testing.assert_array_equal(result.outputs[1:2], case.golden(frames[1:2], first))
    np.testing.assert_array_equal(result.outputs[2:], case.golden(frames[2:], second))


def test_cycles_equal_the_amaranth_simulator(build_root):
    """Without stalls the Verilog takes the cycles the Amaranth model of the block takes."""
    from test_hw_separable import run_block

    case = make_block(**CONST_CASES["lanes2_accum"], seed=31)
    frames = case.frames(2, np.random.default_rng(37))
    simulator = "verilator" if shutil.which("verilator") else "icarus"
    rtl = _run(case.block, frames, simulator=simulator, build_dir=build_root)
    run, outputs = run_block(case, frames)
    np.testing.assert_array_equal(rtl.outputs, outputs)
    assert rtl.cycles == run.cycles
    assert rtl.latency_cycles == run.first_out - run.first_in + 1
