"""The separable block (depthwise engine -> pointwise stage), in Amaranth's simulator and
as Verilog under Verilator and Icarus: exact against the depthwise golden model (mid as its
output format) and the pointwise reference, with stalls, back-to-back frames, folding, port
weights and malformed input."""

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dwconv.golden.spec import LayerError
from dwconv.hw.engine import DepthwiseEngine
from dwconv.hw.core import lane_beat
from dwconv.hw.separable import SeparableCore, SeparableEngine, default_out_lanes
from dwconv.sim.amaranth_sim import run_amaranth
from dwconv.sim.native_sim import run_native_timed
from dwconv.flows.verilog import engine_verilog

from support.malformed_streams import CASES as MALFORMED_CASES, build_case, check_answer
from support.separable_cases import make_block
from support.shared_build import native_build_root
from support.stream_bench import axi_ports, beats_to_frames, expected_flags, frame_beats, run_stream
from support.stream_bench import stream_ports as stream_ports_of
from test_hw_malformed import play


def run_block(case, frames, *, stall=0.0, seed=0, beats=None, out_frames=None,
              sink_stall=None):
    block = case.block
    if beats is None:
        beats = frame_beats(frames, block.lanes, case.formats.input.width)
    n = len(frames) if out_frames is None else out_frames
    oh, ow, _ = case.spec.output_shape
    out_count = n * oh * ow * block.out_groups
    run = run_stream(block, axi_ports(block), beats, out_count, stall=stall, seed=seed,
                     sink_stall=sink_stall)
    assert len(run.taken) == out_count, f"{len(run.taken)} of {out_count} output beats"
    outputs = beats_to_frames(run.data(), (n, oh, ow, block.filters), block.out_lanes,
                              case.formats.output)
    return run, outputs


def check_block(case, frames, *, stall, seed=0, sink_stall=None):
    run, outputs = run_block(case, frames, stall=stall, seed=seed, sink_stall=sink_stall)
    oh, ow, _ = case.spec.output_shape
    np.testing.assert_array_equal(outputs, case.expected(frames))
    assert run.flags() == expected_flags(len(frames), oh, ow, case.block.out_groups)
    assert run.held and not run.error
    return run


SWEEP = [
    dict(shape=(5, 6, 2), kernel=(3, 3), filters=3),
    dict(shape=(4, 5, 4), kernel=(3, 3), filters=4, lanes=2, formats="trn_wrap",
         activation="relu"),
    dict(shape=(5, 5, 2), kernel=(3, 2), filters=5, multiplier=2, lanes=1, formats="accum",
         activation="relu6"),
    dict(shape=(6, 7, 3), kernel=(3, 3), filters=2, strides=2, padding="valid"),
    dict(shape=(5, 6, 2), kernel=(3, 3), filters=4, dilation=2, reuse=3, formats="accum"),
    dict(shape=(4, 4, 4), kernel=(2, 2), filters=6, lanes=4, out_lanes=2, reuse=2,
         pointwise_reuse=3),
    # a joined DepthwiseConv2D+Conv2D pair: the depthwise part has its own bias and relu
    dict(shape=(5, 5, 2), kernel=(3, 3), filters=3, depthwise_bias=True,
         depthwise_activation="relu", activation="relu6", formats="trn_wrap"),
    dict(shape=(1, 9, 4), kernel=(1, 3), filters=4, lanes=2, pointwise_bias=False),  # 1D
]


def _id(params):
    return "-".join(f"{k}={v}" for k, v in params.items()).replace(" ", "")


@pytest.mark.parametrize("params", SWEEP, ids=[_id(p) for p in SWEEP])
def test_block_bit_exact_with_stalls(params):
    case = make_block(**params, seed=len(_id(params)))
    check_block(case, case.frames(3, np.random.default_rng(1)), stall=0.25, seed=2)


def test_full_rate_block_keeps_one_beat_per_cycle():
    """P = 2 of C = 4 (two beats per pixel), F = 4 in two beats of two: back-to-back
    frames at one input beat per cycle, as fast as the depthwise engine alone, and the
    first output comes the pointwise stage's latency after the depthwise engine's."""
    case = make_block(shape=(8, 8, 4), kernel=(3, 3), filters=4, lanes=2)
    block = case.block
    assert block.out_lanes == 2 and block.cycles_per_input_beat == 1
    frames = case.frames(3, np.random.default_rng(3))
    run = check_block(case, frames, stall=0.0)
    alone = run_amaranth(DepthwiseEngine(case.spec, case.depthwise_formats, block.lanes,
                                         case.kernel_raw, case.bias_raw), frames)
    np.testing.assert_array_equal(alone.outputs, case.mid_values(frames))
    groups = block.groups
    # the pointwise stage takes the depthwise engine's beats as they come: its first output
    # follows the depthwise engine's first pixel (G beats) by the stage's latency
    assert run.first_out - run.first_in + 1 == (alone.latency_cycles + groups - 1
                                                + block.pointwise.latency)
    # the last output likewise; the stream in between runs at the depthwise engine's pace
    assert run.cycles == alone.cycles + block.pointwise.latency + block.out_groups - 1
    # the input never paused: one beat per cycle over the three frames
    assert run.last_in - run.first_in + 1 == block.ideal_cycles(3)


def test_slow_sink_holds_both_parts_back():
    """A source that never pauses, a sink ready 15% of the cycles: more pixels than the
    pointwise stage's queue holds, so its credits stop the depthwise engine's output,
    whose credits stop the input."""
    case = make_block(shape=(5, 6, 2), kernel=(3, 3), filters=4, out_lanes=2)
    frames = case.frames(3, np.random.default_rng(12))
    assert 3 * 5 * 6 > 2 * case.block.pointwise.queue_depth
    check_block(case, frames, stall=0.0, sink_stall=0.85, seed=13)


def test_output_bound_block_runs_at_its_figure():
    """F/Q = 4 output beats per pixel, G = 2 input beats: the pointwise stage sets the
    pace, one output beat every cycle from the first to the last, ``cycles_per_frame``
    per frame."""
    case = make_block(shape=(8, 8, 4), kernel=(3, 3), filters=8, lanes=2, out_lanes=2)
    block = case.block
    run = check_block(case, case.frames(2, np.random.default_rng(14)), stall=0.0)
    assert run.last_out - run.first_out + 1 == 2 * 8 * 8 * block.out_groups
    assert run.last_out - run.first_out + 1 == 2 * block.cycles_per_frame


def test_default_out_lanes_keep_the_input_rate():
    assert default_out_lanes(16, 1) == 16
    assert default_out_lanes(16, 4) == 4
    assert default_out_lanes(6, 4) == 2       # 3 beats of 2 fit in 4 cycles
    assert default_out_lanes(7, 3) == 7


def test_figures_without_hardware():
    case = make_block(shape=(32, 32, 8), kernel=(3, 3), filters=16, formats="int8")
    block = case.block
    assert (block.filters, block.out_lanes, block.out_groups) == (16, 16, 1)
    assert block.multipliers == 9 * 8 + 8 * 16
    assert block.real_multipliers == 0       # one channel group: all constant products
    assert block.ideal_cycles(2) == 2 * 32 * 32 == 2 * block.cycles_per_frame
    # output bound: F/Q = 4 beats per pixel against G = 2 input beats
    slow = make_block(shape=(8, 8, 4), kernel=(3, 3), filters=8, lanes=2, out_lanes=2).block
    assert slow.cycles_per_input_beat == 2 and slow.cycles_per_frame == 8 * 8 * 2 * 2
    assert block.spec.output_shape == (32, 32, 16)


@pytest.mark.parametrize("name", list(MALFORMED_CASES))
def test_malformed_streams_of_the_engine_suite(name):
    """The depthwise engine's malformed-stream cases (tlast early, late or missing, start
    of frame missing or mid-frame, garbage between frames, reset mid-frame) played into
    the block: flagged, never a hang, output framed, well-formed frames exact."""
    case = make_block(shape=(4, 5, 2), kernel=(3, 3), filters=3, lanes=1, seed=15)
    block = case.block
    rng = np.random.default_rng(sorted(MALFORMED_CASES).index(name))
    bad = build_case(name, block, rng)
    outputs, error, accepted = play(block, bad.events, stall=0.3, seed=16)
    # the checker counts output rows in beats of the block's output: F/Q per pixel
    view = SimpleNamespace(spec=block.spec, groups=block.out_groups,
                           out_lanes=block.out_lanes, formats=block.formats)
    check_answer(bad, view, outputs, case.expected(bad.frames), error, accepted)


def test_synthesis_rebuilds_the_block_for_its_target():
    from dwconv.flows.synth import retarget
    case = make_block(shape=(4, 4, 4), kernel=(3, 3), filters=4, lanes=2, reuse=2)
    block = case.block
    for target in ("ecp5", "ice40", None):
        built = retarget(block, target)
        assert isinstance(built, SeparableEngine) and built.target == target
        assert (built.multipliers, built.out_lanes, built.spec.output_shape) == (
            block.multipliers, block.out_lanes, block.spec.output_shape)


def test_malformed_input_resynchronizes():
    """A start of frame in the middle of the second frame: the depthwise engine completes
    the cut frame, so the block still gives three frames; the first and the third are
    exact, and the error flag is set."""
    case = make_block(shape=(4, 5, 2), kernel=(3, 3), filters=2, lanes=1)
    frames = case.frames(3, np.random.default_rng(8))
    beats = [frame_beats(f[None], 1, case.formats.input.width) for f in frames]
    cut = beats[0] + beats[1][:len(beats[1]) // 2] + beats[2]
    run, outputs = run_block(case, frames, stall=0.2, seed=4, beats=cut, out_frames=3)
    expected = case.expected(frames)
    np.testing.assert_array_equal(outputs[0], expected[0])
    np.testing.assert_array_equal(outputs[2], expected[2])
    oh, ow, _ = case.spec.output_shape
    assert run.flags() == expected_flags(3, oh, ow, case.block.out_groups)
    assert run.error


def _load_beats(case, weights, width):
    values = case.load_values(weights)
    return [(int(v) & ((1 << width) - 1), int(n == len(values) - 1))
            for n, v in enumerate(values)]


PORT_CASES = [
    dict(shape=(4, 5, 2), kernel=(3, 3), filters=3),
    dict(shape=(4, 4, 4), kernel=(2, 2), filters=4, lanes=2, out_lanes=2, reuse=2,
         formats="accum", activation="relu"),
    dict(shape=(3, 5, 2), kernel=(3, 3), filters=2, multiplier=2, lanes=1,
         depthwise_bias=True, depthwise_activation="relu", pointwise_bias=False),
]


@pytest.mark.parametrize("params", PORT_CASES, ids=[_id(p) for p in PORT_CASES])
def test_port_weights_one_load_for_both_parts(params):
    """Loads between back-to-back frames change the depthwise and the pointwise weights of
    the same frame."""
    case = make_block(**params, weights="port", seed=3)
    block = case.block
    rng = np.random.default_rng(4)
    frames = case.frames(4, rng)
    first, second = case.other_weights(rng), case.other_weights(rng)
    per_frame = case.spec.height * case.spec.width * block.groups
    loads = {per_frame: _load_beats(case, first, block.load_width),
             2 * per_frame: _load_beats(case, second, block.load_width)}
    oh, ow, _ = case.spec.output_shape
    out_count = 4 * oh * ow * block.out_groups
    run = run_stream(block, axi_ports(block), frame_beats(frames, block.lanes,
                                                          case.formats.input.width),
                     out_count, stall=0.2, seed=5, loads=loads)
    assert len(run.taken) == out_count and not run.error
    assert run.flags() == expected_flags(4, oh, ow, block.out_groups)
    outputs = beats_to_frames(run.data(), (4, oh, ow, block.filters), block.out_lanes,
                              case.formats.output)
    np.testing.assert_array_equal(outputs[:1], case.expected(frames[:1]))
    np.testing.assert_array_equal(outputs[1:2], case.expected(frames[1:2], first))
    np.testing.assert_array_equal(outputs[2:], case.expected(frames[2:], second))


@pytest.mark.parametrize("shape,kernel,stall", [((2, 3, 1), (1, 1), 0.7),
                                                 ((3, 2, 2), (3, 3), 0.6)])
def test_port_loads_before_every_frame_under_backpressure(shape, kernel, stall):
    """Tiny frames, a load before each, a sink that stalls most cycles: a frame's first
    pixel may still wait in the depthwise engine when the next load comes, and every frame
    still gets its own weights in both parts (a 1x1 kernel on one channel: the depthwise
    part is a single value)."""
    case = make_block(shape=shape, kernel=kernel, filters=2, weights="port", seed=6)
    block = case.block
    rng = np.random.default_rng(7)
    count = 5
    frames = case.frames(count, rng)
    weights = [None] + [case.other_weights(rng) for _ in range(count - 1)]
    per_frame = case.spec.height * case.spec.width * block.groups
    loads = {k * per_frame: _load_beats(case, weights[k], block.load_width)
             for k in range(1, count)}
    oh, ow, _ = case.spec.output_shape
    out_count = count * oh * ow * block.out_groups
    run = run_stream(block, axi_ports(block), frame_beats(frames, block.lanes,
                                                          case.formats.input.width),
                     out_count, stall=stall, seed=8, loads=loads)
    assert len(run.taken) == out_count and not run.error
    outputs = beats_to_frames(run.data(), (count, oh, ow, block.filters), block.out_lanes,
                              case.formats.output)
    for k in range(count):
        np.testing.assert_array_equal(outputs[k:k + 1], case.expected(frames[k:k + 1],
                                                                      weights[k]))


@pytest.mark.parametrize("damage", ["early_last", "missing_last", "last_at_depthwise_end"])
def test_malformed_block_load(damage):
    """A load with tlast misplaced sets the error flag; one inside the depthwise part is
    discarded whole (misplaced later, only the pointwise part is); the next good load is
    taken whole by the frame after it, and nothing hangs."""
    case = make_block(shape=(3, 3, 2), kernel=(2, 2), filters=2, weights="port", seed=9)
    block = case.block
    rng = np.random.default_rng(10)
    frames = case.frames(3, rng)
    bad_weights, good = case.other_weights(rng), case.other_weights(rng)
    bad = _load_beats(case, bad_weights, block.load_width)
    if damage == "early_last":
        bad = bad[:3] + [(bad[3][0], 1)]
    elif damage == "missing_last":
        bad = bad[:-1] + [(bad[-1][0], 0)]
    else:
        cut = block.depthwise_values
        bad = bad[:cut - 1] + [(bad[cut - 1][0], 1)]
    per_frame = case.spec.height * case.spec.width * block.groups
    loads = {per_frame: bad, 2 * per_frame: _load_beats(case, good, block.load_width)}
    oh, ow, _ = case.spec.output_shape
    out_count = 3 * oh * ow * block.out_groups
    run = run_stream(block, axi_ports(block), frame_beats(frames, block.lanes,
                                                          case.formats.input.width),
                     out_count, stall=0.2, seed=11, loads=loads)
    assert len(run.taken) == out_count and run.error
    outputs = beats_to_frames(run.data(), (3, oh, ow, block.filters), block.out_lanes,
                              case.formats.output)
    np.testing.assert_array_equal(outputs[:1], case.expected(frames[:1]))
    if damage == "early_last":
        np.testing.assert_array_equal(outputs[1:2], case.expected(frames[1:2]))
    np.testing.assert_array_equal(outputs[2:], case.expected(frames[2:], good))


def test_bad_weights_mode_is_refused():
    case = make_block(shape=(3, 3, 1), kernel=(1, 1), filters=1)
    with pytest.raises(LayerError, match="weights must be 'const' or 'port'"):
        SeparableEngine(case.spec, case.formats, 1, case.kernel_raw, case.bias_raw,
                        case.pw_raw, case.pw_bias_raw, mid=case.mid, pointwise=case.pointwise,
                        weights="rom")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), formats=st.sampled_from(["rnd_sat", "trn_wrap", "accum"]),
       channels=st.sampled_from([1, 2, 4]), multiplier=st.integers(1, 2),
       filters=st.integers(1, 5), kernel=st.sampled_from([(1, 1), (2, 2), (3, 3), (3, 2)]),
       strides=st.integers(1, 2), padding=st.sampled_from(["same", "valid"]),
       activation=st.sampled_from(["linear", "relu", "relu6"]),
       stall=st.sampled_from([0.0, 0.3]), seed=st.integers(0, 2 ** 16))
def test_hypothesis_blocks(data, formats, channels, multiplier, filters, kernel, strides,
                           padding, activation, stall, seed):
    lanes = data.draw(st.sampled_from([p for p in (1, 2, 4) if channels % p == 0]))
    out_lanes = data.draw(st.sampled_from([q for q in range(1, filters + 1)
                                           if filters % q == 0]))
    taps = kernel[0] * kernel[1]
    reuse = data.draw(st.integers(1, min(taps, 3)))
    pointwise_reuse = data.draw(st.integers(1, lanes * multiplier))
    case = make_block(shape=(4, 4, channels), kernel=kernel, filters=filters,
                      strides=strides, padding=padding, multiplier=multiplier, lanes=lanes,
                      out_lanes=out_lanes, reuse=reuse, pointwise_reuse=pointwise_reuse,
                      formats=formats, activation=activation, seed=seed,
                      depthwise_bias=data.draw(st.booleans()))
    check_block(case, case.frames(2, np.random.default_rng(seed)), stall=stall, seed=seed)


# -- the block's Verilog, compiled (tb_stream.v under Verilator and Icarus) ---------------

ICARUS = pytest.mark.skipif(shutil.which("iverilog") is None,
                            reason="Icarus Verilog (iverilog) is not installed")
NATIVE = [
    ("verilator", dict(shape=(6, 7, 4), kernel=(3, 3), filters=6, lanes=2, formats="accum",
                       activation="relu")),
    ("verilator", dict(shape=(5, 6, 2), kernel=(3, 3), filters=4, strides=2, reuse=2,
                       out_lanes=1, formats="trn_wrap")),
    pytest.param("icarus", dict(shape=(5, 5, 2), kernel=(3, 3), filters=3, multiplier=2,
                                lanes=1, activation="relu6"), marks=ICARUS),
]


@pytest.mark.parametrize("simulator,params", NATIVE)
def test_block_verilog_native_with_stalls(simulator, params):
    case = make_block(**params, seed=5)
    block = case.block
    frames = case.frames(3, np.random.default_rng(6))
    expected = case.expected(frames)
    result, _ = run_native_timed(block, frames, simulator=simulator, stall=0.3, seed=9,
                                 build_dir=native_build_root())
    np.testing.assert_array_equal(result.outputs, expected)
    assert result.framing == [] and not result.error
    # without stalls: the same cycle count as Amaranth's simulator of the same design
    fast, _ = run_native_timed(block, frames, simulator=simulator,
                               build_dir=native_build_root())
    np.testing.assert_array_equal(fast.outputs, expected)
    run, _ = run_block(case, frames)
    assert fast.cycles == run.last_out - run.first_in + 1


def test_block_verilog_has_the_engine_ports():
    case = make_block(shape=(3, 4, 2), kernel=(3, 3), filters=4, out_lanes=2)
    verilog = engine_verilog(case.block)
    for port in ("clk", "rst", "s_axis_tdata", "s_axis_tvalid", "s_axis_tready",
                 "s_axis_tuser", "s_axis_tlast", "m_axis_tvalid", "m_axis_tready",
                 "m_axis_tuser", "m_axis_tlast", "error"):
        assert f"  input {port};" in verilog or f"  output {port};" in verilog or \
            f" {port};" in verilog, port
    assert "output [19:0] m_axis_tdata;" in verilog     # Q = 2 lanes of fixed<10,5>
    assert "module dwconv(" in verilog


@pytest.mark.parametrize("simulator,formats", [
    ("verilator", "wide_pw"), pytest.param("icarus", "accum", marks=ICARUS)])
def test_block_verilog_native_port_weights(simulator, formats):
    case = make_block(shape=(4, 5, 2), kernel=(3, 3), filters=4, out_lanes=2,
                      weights="port", depthwise_bias=True, formats=formats, seed=12)
    block = case.block
    if formats == "wide_pw":     # the load is as wide as the widest part needs
        assert block.load_width == 12 > block.store.load_width
    rng = np.random.default_rng(13)
    frames = case.frames(3, rng)
    other = case.other_weights(rng)
    loads = {1: (case.load_values(other), np.zeros(0, dtype=np.int64))}
    result, _ = run_native_timed(block, frames, simulator=simulator, stall=0.3, seed=14,
                                 loads=loads, build_dir=native_build_root())
    assert result.framing == [] and not result.error
    np.testing.assert_array_equal(result.outputs[:1], case.expected(frames[:1]))
    np.testing.assert_array_equal(result.outputs[1:], case.expected(frames[1:], other))


# -- the stream-native core -------------------------------------------------------------------

def _core_ports(core):
    """The core's stream ports for ``run_stream`` (its weight port is ``w``)."""
    ports = stream_ports_of(core)
    if "w" in core.signature.members:
        ports.load = (core.w.valid, core.w.ready, core.w.payload.value, core.w.payload.last)
    return ports


@pytest.mark.parametrize("weights", ["const", "port"])
def test_core_streams_equal_the_engine(weights):
    """``SeparableEngine.core()`` driven through its stream ports: the same outputs and
    cycles as the AXI top, payloads as the signature says (P lanes of the input format in,
    Q lanes of the output format out), a load through ``w`` taken by the next frame."""
    case = make_block(shape=(4, 5, 4), kernel=(3, 3), filters=4, lanes=2, out_lanes=2,
                      weights=weights, depthwise_bias=True, seed=21)
    block = case.block
    core = block.core()
    assert core.i.payload.shape() == lane_beat(case.formats.input, 2)
    assert core.o.payload.shape() == lane_beat(case.formats.output, 2)
    assert ("w" in core.signature.members) == (weights == "port")
    rng = np.random.default_rng(22)
    frames = case.frames(3, rng)
    beats = frame_beats(frames, block.lanes, case.formats.input.width)
    per_frame = case.spec.height * case.spec.width * block.groups
    weights_1 = case.other_weights(rng) if weights == "port" else None
    loads = {per_frame: _load_beats(case, weights_1, block.load_width)} if weights_1 else None
    oh, ow, _ = case.spec.output_shape
    out_count = 3 * oh * ow * block.out_groups
    runs = [run_stream(dut, ports, beats, out_count, loads=loads)
            for dut, ports in ((core, _core_ports(core)), (block, axi_ports(block)))]
    for run in runs:
        assert len(run.taken) == out_count and not run.error
        assert run.flags() == expected_flags(3, oh, ow, block.out_groups)
        outputs = beats_to_frames(run.data(), (3, oh, ow, block.filters), block.out_lanes,
                                  case.formats.output)
        np.testing.assert_array_equal(outputs[:1], case.expected(frames[:1]))
        np.testing.assert_array_equal(outputs[1:], case.expected(frames[1:], weights_1))
    assert runs[0].cycles == runs[1].cycles
    assert (runs[0].first_out, runs[0].last_in) == (runs[1].first_out, runs[1].last_in)


def test_core_refuses_parts_that_do_not_fit():
    case = make_block(shape=(3, 3, 2), kernel=(1, 1), filters=2)
    other = make_block(shape=(3, 3, 4), kernel=(1, 1), filters=2).block
    with pytest.raises(LayerError, match="the pointwise stage takes 4 lanes"):
        SeparableCore(case.block.depthwise, other.pointwise)
    with pytest.raises(TypeError, match="an EnginePlan and a PointwisePlan"):
        SeparableCore(case.block, case.block.pointwise)
