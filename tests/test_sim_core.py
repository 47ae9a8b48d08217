"""sim.core_sim.run_core: an engine's stream-native core in Amaranth's simulator, with the
contract of run_amaranth on the AXI top (outputs, cycles, framing, loads)."""

import numpy as np
import pytest

from dwconv.golden.fixed_ref import quantize_weights
from dwconv.hw.core import DepthwiseCore
from dwconv.hw.engine import DepthwiseEngine
from dwconv.sim.amaranth_sim import run_amaranth
from dwconv.sim.core_sim import output_framing, run_core

from support.engine_cases import make_case, random_layer
from support.separable_cases import make_block


class _EngineWithCore(DepthwiseEngine):
    """A depthwise engine that gives its core, as SeparableEngine does."""

    def core(self):
        return DepthwiseCore(self.plan)


@pytest.mark.parametrize("weights", ["const", "port"])
def test_depthwise_core_runs_as_its_engine(weights):
    case = make_case(shape=(4, 5, 4), kernel=(3, 3), padding="same", multiplier=2, lanes=2,
                     weights=weights, seed=41)
    engine = _EngineWithCore(case.layer.spec, case.formats, case.lanes, case.kernel_raw,
                             case.bias_raw, weights=weights)
    frames = case.frames(3, np.random.default_rng(42))
    other = random_layer(case.layer.spec, np.random.default_rng(43))
    loads = {1: quantize_weights(other, case.formats)} if weights == "port" else None
    core, top = (run(engine, frames, stall=0.3, seed=44, loads=loads)
                 for run in (run_core, run_amaranth))
    np.testing.assert_array_equal(core.outputs[:1], case.expected(frames[:1]))
    np.testing.assert_array_equal(core.outputs[1:], case.expected(
        frames[1:], other if weights == "port" else None))
    np.testing.assert_array_equal(core.outputs, top.outputs)
    assert (core.cycles, core.latency_cycles) == (top.cycles, top.latency_cycles)
    assert core.framing == [] and not core.error


def test_separable_core_with_a_load_and_stalls():
    """F/Q = 3 output beats per pixel against C/P = 2 input beats: the runner counts the
    block's own output beats."""
    case = make_block(shape=(4, 4, 4), kernel=(3, 3), filters=3, lanes=2, out_lanes=1,
                      weights="port", depthwise_bias=True, seed=45)
    rng = np.random.default_rng(46)
    frames = case.frames(2, rng)
    other = case.other_weights(rng)
    loads = {1: (case.load_values(other), np.zeros(0, dtype=np.int64))}
    result = run_core(case.block, frames, stall=0.3, seed=47, loads=loads)
    np.testing.assert_array_equal(result.outputs[:1], case.golden(frames[:1]))
    np.testing.assert_array_equal(result.outputs[1:], case.golden(frames[1:], other))
    assert result.framing == [] and not result.error


def test_loads_need_a_weight_port():
    case = make_block(shape=(2, 2, 1), kernel=(1, 1), filters=1)
    values = (np.zeros(2, dtype=np.int64), np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match="weights='port'"):
        run_core(case.block, case.frames(1, np.random.default_rng(0)), loads={0: values})


def test_output_framing_names_misplaced_flags():
    good = [(1, 0), (0, 1), (0, 0), (0, 1)]          # one frame of two rows of two beats
    assert output_framing(good, 2, 4) == []
    assert output_framing([(0, 0), (0, 1), (1, 0), (0, 0)], 2, 4) == [
        "beat 0: tuser=0, expected 1", "beat 2: tuser=1, expected 0",
        "beat 3: tlast=0, expected 1"]
