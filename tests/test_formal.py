"""Formal proofs of the engine's stream protocol (SymbiYosys + yices), on two small layers.

What each run proves, and why its depth, is in docs/verification-formal.md and in
dwconv.flows.formal.  k-induction proofs hold for all time; BMC depths cover at least one
full frame in and out.
"""

import numpy as np
import pytest

from dwconv.golden.fixed_ref import quantize_weights
from dwconv.golden.formats import LayerFormats
from dwconv.golden.layer import Layer
from dwconv.golden.spec import LayerSpec
from dwconv.hw.engine import DepthwiseEngine
from dwconv.flows.formal import StreamProperties, drain_cycles, run_sby

SMALL = "fixed<4,2>"

#: (input shape, kernel, lanes): 12 input beats per frame each, so a frame and its drain
#: fit in a BMC depth of under 40 cycles.
CONFIGS = {
    "3x4x2_k3x3_P2": ((3, 4, 2), (3, 3), 2),
    "2x3x2_k2x2_P1": ((2, 3, 2), (2, 2), 1),
}

#: k of the k-induction proofs of the framing properties: the smallest that closes with the
#: invariants of dwconv.flows.formal_invariants (at 2, registers worked out a cycle ahead, the
#: scanner's firing decisions and the credit flag, start unreachable and survive).
INDUCTION_DEPTH = 3


def make_engine(config):
    shape, kernel, lanes = CONFIGS[config]
    spec = LayerSpec(input_shape=shape, kernel_size=kernel, padding="same")
    formats = LayerFormats.from_strings(input=SMALL, weight=SMALL, bias=SMALL, output=SMALL)
    rng = np.random.default_rng(6)
    layer = Layer(spec, rng.normal(size=spec.kernel_shape).astype("float32"),
                  rng.normal(size=spec.out_channels).astype("float32"))
    kernel_raw, bias_raw = quantize_weights(layer, formats)
    return DepthwiseEngine(spec, formats, lanes, kernel_raw, bias_raw)


def check(result, expect_pass=True):
    assert result.passed == expect_pass, (
        f"sby {result.mode} depth {result.depth}: {result.status} {result.failed}\n{result.log}")


@pytest.fixture(params=list(CONFIGS))
def engine(request):
    return make_engine(request.param)


def test_m_axis_holds_by_induction(engine, tmp_path):
    """m_axis keeps valid and its payload until taken, from any state: closes by induction."""
    wrapper = StreamProperties(engine, framing="any", properties=["m_hold"])
    check(run_sby(wrapper, mode="prove", depth=4, workdir=tmp_path))


def test_output_framed_whatever_the_input(engine, tmp_path):
    """Any tuser/tlast on the input, any stalls and resets: the output stays framed, for
    all time (k-induction, closed by the engine's reachable-state invariants)."""
    wrapper = StreamProperties(engine, framing="any", properties=["m_framing"])
    check(run_sby(wrapper, mode="prove", depth=INDUCTION_DEPTH, workdir=tmp_path))


def test_well_formed_input_with_stalls(engine, tmp_path):
    """Well-formed frames, free stalls on both sides: no error and no extra beat, for all
    time (framed output follows from the proof above, which allows any input)."""
    wrapper = StreamProperties(engine, framing="well_formed",
                               properties=["in_framing", "no_extra"])
    check(run_sby(wrapper, mode="prove", depth=INDUCTION_DEPTH, workdir=tmp_path))


def test_early_tlast_fails(tmp_path):
    """Negative control: expecting tlast a beat early, the framing proof does not close,
    and a trace from reset breaks the check (a frame in and out, the sink ready: the
    shortest way to a row's end)."""
    engine = make_engine("2x3x2_k2x2_P1")
    wrapper = StreamProperties(engine, framing="any", properties=["m_framing"],
                               early_tlast=True)
    result = run_sby(wrapper, mode="prove", depth=INDUCTION_DEPTH, workdir=tmp_path / "prove")
    check(result, expect_pass=False)
    trace = StreamProperties(engine, framing="well_formed", sink="ready",
                             properties=["m_framing"], early_tlast=True, invariants=False)
    result = run_sby(trace, mode="bmc", depth=trace.in_frame + trace.drain + 2,
                     workdir=tmp_path / "bmc")
    check(result, expect_pass=False)
    assert result.status == "FAIL" and result.failed


def test_induction_needs_the_invariants(tmp_path):
    """Without the invariants the framing proof's induction does not close (the reason they
    exist): from an unreachable state the output counter and the queue disagree."""
    wrapper = StreamProperties(make_engine("2x3x2_k2x2_P1"), framing="any",
                               properties=["m_framing"], invariants=False)
    result = run_sby(wrapper, mode="prove", depth=INDUCTION_DEPTH, workdir=tmp_path)
    check(result, expect_pass=False)
    assert result.status == "UNKNOWN"


def test_frames_complete_when_the_sink_is_ready(engine, tmp_path):
    """Sink always ready: no beat waits too long, every output owed is delivered in time."""
    wrapper = StreamProperties(engine, framing="well_formed", sink="ready",
                               properties=["complete", "in_live"])
    depth = wrapper.in_frame + wrapper.drain + 2
    check(run_sby(wrapper, mode="bmc", depth=depth, workdir=tmp_path / "bmc"))
    # not vacuous: a trace exists in which a whole frame goes in, comes out, and the
    # drain bound is reached, within the same depth
    cover = StreamProperties(engine, framing="well_formed", sink="ready", properties=[],
                             cover_frames=1)
    check(run_sby(cover, mode="cover", depth=depth, workdir=tmp_path / "cover"))


def test_error_flag_is_reachable(tmp_path):
    """Negative control: with malformed input the no-error assertion must fail."""
    wrapper = StreamProperties(make_engine("2x3x2_k2x2_P1"), framing="any",
                               properties=["in_framing"])
    result = run_sby(wrapper, mode="bmc", depth=8, workdir=tmp_path)
    check(result, expect_pass=False)
    assert result.status == "FAIL" and result.failed


def test_short_drain_bound_fails(tmp_path):
    """Negative control: half the computed drain bound is too short, so ``complete`` fails."""
    engine = make_engine("2x3x2_k2x2_P1")
    wrapper = StreamProperties(engine, framing="well_formed", sink="ready",
                               properties=["complete"], drain=drain_cycles(engine) // 2)
    result = run_sby(wrapper, mode="bmc", depth=wrapper.in_frame + wrapper.drain + 2,
                     workdir=tmp_path)
    check(result, expect_pass=False)
    assert result.status == "FAIL" and result.failed
