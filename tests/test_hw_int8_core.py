"""Int8Core inside a user's own Amaranth module and Int8Engine, its AXI wrapper, in the
Amaranth simulator: port weights (loads, loads racing the frames, malformed loads), reuse,
cycle counts equal to the depthwise engine's plus the int8 stages', and Int8Plan's figures.
The expected values are the golden model's (``predict_int8``) and the interpreter's stored
outputs (``auto``: LiteRT's default interpreter, fp32; ``ref``: its reference kernels,
double)."""

import dataclasses
import pathlib

import numpy as np
import pytest
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.hdl import Module
from amaranth.sim import Simulator

from dwconv.golden.int8_ref import Int8Layer, accumulate, predict_int8
from dwconv.golden.spec import LayerError, LayerSpec
from dwconv.models.tflite_io import load_tflite_layer
from dwconv.hw.engine import DepthwiseEngine
from dwconv.hw.int8 import Int8Engine
from dwconv.hw.int8_core import Int8Core
from dwconv.hw.int8_offset import int8_beat
from dwconv.hw.int8_plan import Int8Plan
from dwconv.hw.int8_table import table_load_layout
from dwconv.hw.requantize_int8 import LATENCY
from dwconv.sim.amaranth_sim import run_amaranth
from test_hw_core import stream_put

DATA = pathlib.Path(__file__).parent / "data" / "tflite"
INTERPRETER = {"fp32": "auto", "double": "ref"}


def fixture(name):
    """(layer, input frames, {rounding: the interpreter's outputs})."""
    layer = load_tflite_layer(DATA / f"{name}.tflite", 0 if name == "dw_pw" else None)
    with np.load(DATA / f"{name}.npz") as data:
        return layer, data["x"], {r: data[k] for r, k in INTERPRETER.items()}


def other_weights(layer):
    """The same layer with other kernel, bias and weight scales (so other factors)."""
    kernel = np.clip(-layer.kernel.astype(np.int16) + 3, -128, 127).astype(np.int8)
    return dataclasses.replace(layer, kernel=kernel[::-1].copy(), bias=layer.bias[::-1].copy(),
                               weight_scales=layer.weight_scales * np.float32(1.7))


class UserTop(wiring.Component):
    """What a user writes: their own component with the int8 core inside, streams forwarded."""

    def __init__(self, core):
        self.core = core
        members = {"i": In(stream.Signature(int8_beat(8, core.plan.lanes))),
                   "o": Out(stream.Signature(int8_beat(8, core.plan.out_lanes))),
                   "error": Out(1)}
        if core.plan.weights == "port":
            members["w"] = In(stream.Signature(table_load_layout()))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        wiring.connect(m, wiring.flipped(self.i), core.i)
        wiring.connect(m, core.o, wiring.flipped(self.o))
        if self.core.plan.weights == "port":
            wiring.connect(m, wiring.flipped(self.w), core.w)
        m.d.comb += self.error.eq(core.error)
        return m


def run_user_top(core, frames, *, stall, seed, loads=()):
    """Frames through ``UserTop(core)`` back to back with random stalls; ``loads``, pairs
    (gap, weight port values), are sent concurrently with the frames, one after the other,
    each ``gap`` cycles after the one before (the first: after the start).  Returns
    (outputs (N, oh, ow, C*M), flags per output beat, error)."""
    plan = core.plan
    spec, lanes, groups = plan.spec, plan.lanes, plan.groups
    dut = UserTop(core)
    row_beats = spec.width * groups
    out_beats = len(frames) * spec.out_height * spec.out_width * groups
    rngs = [np.random.default_rng(seed + k) for k in range(3)]
    taken, state = [], {}

    async def source(ctx):
        for frame in frames:
            beats = frame.reshape(-1, lanes)
            for n, beat in enumerate(beats):
                await stream_put(ctx, dut.i, {"data": [int(v) for v in beat], "first": n == 0,
                                              "last": (n + 1) % row_beats == 0},
                                 rngs[0], stall)

    async def loader(ctx):
        for gap, load in loads:
            if gap:
                await ctx.tick().repeat(gap)
            for n, value in enumerate(load):
                await stream_put(ctx, dut.w, {"value": int(value),
                                              "last": n == len(load) - 1}, rngs[1], stall)

    # the source and the loader run in the background: a design that stops taking beats
    # ends the run at the sink's cycle budget, and the test fails on the missing outputs
    budget = 20 * (len(frames) * spec.height * row_beats + sum(len(v) + g for g, v in loads)
                   + 200) / (1 - stall)

    async def sink(ctx):
        cycles = 0
        while len(taken) < out_beats and cycles < budget:
            ready = rngs[2].random() >= stall
            ctx.set(dut.o.ready, ready)
            *_, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            cycles += 1
            if ready and valid:
                taken.append(([payload.data[q] for q in range(plan.out_lanes)],
                              (int(payload.first), int(payload.last))))
        state["error"] = ctx.get(dut.error)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source, background=True)
    sim.add_testbench(loader, background=True)
    sim.add_testbench(sink)
    sim.run()
    assert len(taken) == out_beats, f"{len(taken)} of {out_beats} output beats came out"
    values = np.array([v for v, _ in taken], dtype=np.int64)
    return (values.reshape(len(frames), *spec.output_shape), [f for _, f in taken],
            state["error"])


def expected_flags(spec, groups, frames):
    row = spec.out_width * groups
    beats = spec.out_height * row
    return [(int(k % beats == 0), int((k + 1) % row == 0)) for k in range(frames * beats)]


@pytest.mark.parametrize("name, lanes, rounding", [
    ("dw3x3_m3_s2", 1, "fp32"), ("dw3x3_relu6", 4, "double"), ("dw3x3_m2", 3, "single")])
def test_core_in_a_user_module(name, lanes, rounding):
    layer, x, interpreter = fixture(name)
    engine = Int8Engine.from_layer(layer, lanes, rounding)
    core = engine.core()
    assert isinstance(core, Int8Core) and core.plan is engine.plan
    outputs, flags, error = run_user_top(core, x[:2], stall=0.3, seed=4)
    np.testing.assert_array_equal(outputs, predict_int8(layer, x[:2], rounding))
    if rounding in interpreter:
        np.testing.assert_array_equal(outputs, interpreter[rounding][:2])
    assert flags == expected_flags(layer.spec, engine.groups, 2) and not error


@pytest.mark.parametrize("rounding", ["fp32", "double", "single"])
def test_port_weights_load_between_frames(rounding):
    # built with other weights: the fixture's own, loaded, give the interpreter's outputs
    layer, x, interpreter = fixture("dw3x3_relu")
    other = other_weights(layer)
    engine = Int8Engine.from_layer(other, 4, rounding, weights="port")
    assert engine.load_width == 32
    assert engine.load_words == 8 * (1 if rounding == "fp32" else 2) + 8 * 9 + 8
    loads = {0: (engine.load_values(layer), ()), 1: (engine.load_values(other), ()),
             2: (engine.load_values(layer), ())}
    result = run_amaranth(engine, x[:3], stall=0.2, seed=9, loads=loads)
    assert not result.error and not result.framing
    want = np.stack([predict_int8(layer, x[0], rounding), predict_int8(other, x[1], rounding),
                     predict_int8(layer, x[2], rounding)])
    np.testing.assert_array_equal(result.outputs, want)
    if rounding in interpreter:
        np.testing.assert_array_equal(result.outputs[[0, 2]], interpreter[rounding][[0, 2]])


def test_port_weights_start_with_the_built_in_ones():
    layer, x, interpreter = fixture("dw3x3_m2")
    result = run_amaranth(Int8Engine.from_layer(layer, 1, "double", weights="port"), x[:2])
    np.testing.assert_array_equal(result.outputs, interpreter["double"][:2])


@pytest.mark.parametrize("rounding, seed, after", [
    ("fp32", 1, 0), ("fp32", 2, 90), ("double", 3, 40), ("double", 4, 150),
    ("single", 5, 20), ("single", 6, 110)])
def test_load_racing_the_frames(rounding, seed, after):
    # a load sent while frames stream in: every output frame is wholly the old weights' or
    # wholly the new ones', old before new, and the frames after the load has gone in are new
    layer, x, _ = fixture("dw3x3_m2")
    other = other_weights(layer)
    plan = Int8Plan.from_layer(layer, 1, rounding, weights="port")
    frames = np.concatenate([x, x[:1]])
    outputs, flags, error = run_user_top(Int8Core(plan), frames, stall=0.3, seed=seed,
                                         loads=[(after, plan.load_values(other))])
    old, new = predict_int8(layer, frames, rounding), predict_int8(other, frames, rounding)
    kinds = []
    for k in range(len(frames)):
        is_old = np.array_equal(outputs[k], old[k])
        is_new = np.array_equal(outputs[k], new[k])
        assert is_old or is_new, f"frame {k} mixes the two weight sets ({rounding})"
        kinds.append("old" if is_old and not is_new else "new")
    assert kinds == sorted(kinds, reverse=True) and kinds[-1] == "new", kinds
    assert flags == expected_flags(layer.spec, plan.groups, len(frames)) and not error


def tiny_layer(seed):
    """A small random int8 layer (4x5x2, 3x3 same, M = 2): short frames, many of them."""
    rng = np.random.default_rng(seed)
    spec = LayerSpec(input_shape=(4, 5, 2), kernel_size=(3, 3), padding="same",
                     depth_multiplier=2)
    return Int8Layer(spec, rng.integers(-128, 128, (3, 3, 2, 2)).astype(np.int8),
                     rng.integers(-3000, 3000, 4).astype(np.int32),
                     rng.uniform(0.002, 0.02, 4).astype(np.float32), 0.05, -3, 0.3, 4)


@pytest.mark.parametrize("rounding, stall", [("fp32", 0.0), ("double", 0.0),
                                             ("single", 0.25)])
def test_loads_racing_frame_starts_at_every_phase(rounding, stall):
    # short frames back to back and loads of alternating weight sets at irregular gaps,
    # so loads end at every phase of a frame (also right at a frame start): every output
    # frame is wholly one set, and after the last load the frames are its set
    layer = tiny_layer(1)
    other = other_weights(layer)
    plan = Int8Plan.from_layer(layer, 2, rounding, weights="port")
    rng = np.random.default_rng(2)
    # a load may wait for the frame that takes the one before; past that wait, without
    # stalls, 20 gaps a cycle apart put its end at each of a frame's 20 beats
    gaps = range(60, 80) if stall == 0 else rng.integers(0, 40, 8)
    sets = [other, layer] * (len(gaps) // 2)
    frames = rng.integers(-128, 128, (7 * len(gaps), 4, 5, 2))
    loads = [(int(gap), plan.load_values(w)) for gap, w in zip(gaps, sets)]
    outputs, flags, error = run_user_top(Int8Core(plan), frames, stall=stall, seed=3,
                                         loads=loads)
    wants = [predict_int8(w, frames, rounding) for w in (layer, other)]
    kinds = []
    for k in range(len(frames)):
        assert not np.array_equal(wants[0][k], wants[1][k])
        matches = [n for n in (0, 1) if np.array_equal(outputs[k], wants[n][k])]
        assert matches, f"frame {k} mixes two weight sets ({rounding})"
        kinds.append(matches[0])
    switches = sum(a != b for a, b in zip(kinds, kinds[1:]))
    assert kinds[0] == 0 and kinds[-1] == 0 and switches >= len(gaps) - 1, kinds
    assert flags == expected_flags(layer.spec, plan.groups, len(frames)) and not error


def _malformed(engine, values, kind):
    """A load with its ``last`` misplaced, as (value, last) beats."""
    table = engine.plan.table_values
    if kind == "early_in_table":
        cut = values[:3]
    elif kind == "at_table_end":
        cut = values[:table]
    elif kind == "early_in_depthwise":
        cut = values[:table + 5]
    else:                                # "late": no last on the final value, two more after
        return [(int(v), False) for v in values] + [(7, False), (8, True)]
    return [(int(v), n == len(cut) - 1) for n, v in enumerate(cut)]


@pytest.mark.parametrize("kind, rounding", [
    ("early_in_table", "fp32"), ("at_table_end", "double"), ("early_in_depthwise", "single"),
    ("late", "fp32"), ("late", "double")])
def test_malformed_load_is_discarded(kind, rounding):
    # the bad load (new weights) is dropped whole: the next frame keeps the built-in ones;
    # the error flag rises, nothing hangs, and a good load after it is taken
    layer, x, _ = fixture("dw3x3_relu6")
    other = other_weights(layer)
    engine = Int8Engine.from_layer(layer, 8, rounding, weights="port")
    bad = _malformed(engine, engine.load_values(other), kind)
    result = run_amaranth(engine, x[:3], stall=0.2, seed=2, load_beats={1: bad},
                          loads={2: (engine.load_values(other), ())})
    assert result.error and not result.framing
    want = np.stack([predict_int8(layer, x[0], rounding), predict_int8(layer, x[1], rounding),
                     predict_int8(other, x[2], rounding)])
    np.testing.assert_array_equal(result.outputs, want)


@pytest.mark.parametrize("weights", ["const", "port"])
def test_reuse_folds_through_the_int8_engine(weights):
    layer, x, interpreter = fixture("dw3x3_same")
    engine = Int8Engine.from_layer(layer, 4, "fp32", reuse=3, weights=weights)
    assert engine.reuse == 3 and engine.plan.depthwise.multipliers == 3 * 4
    result = run_amaranth(engine, x[:2])
    np.testing.assert_array_equal(result.outputs, interpreter["fp32"][:2])
    beats = 2 * 8 * 8 * 2
    # one input beat every 3 cycles, and not much more
    assert beats * 3 <= result.cycles <= beats * 3 + result.latency_cycles + 3 * 8 * 2


@pytest.mark.parametrize("name, lanes, rounding, reuse", [
    ("dw3x3_same", 2, "fp32", 1), ("dw3x3_m3_s2", 1, "double", 1),
    ("dw3x3_relu", 4, "single", 3)])
def test_cycles_are_the_depthwise_engines_plus_the_int8_stages(name, lanes, rounding, reuse):
    # the depthwise engine alone, fed the offset values, gives the int32 sums; the int8
    # engine takes the same cycles plus the offset's register and the requantizer's stages
    layer, x, _ = fixture(name)
    x = x[:2]
    engine = Int8Engine.from_layer(layer, lanes, rounding, reuse=reuse)
    inner = engine.plan.depthwise
    alone = DepthwiseEngine(inner.spec, inner.formats, lanes, inner.kernel_raw, inner.bias_raw,
                            reuse=reuse)
    sums = run_amaranth(alone, x.astype(np.int64) - layer.input_zero_point)
    np.testing.assert_array_equal(sums.outputs, accumulate(layer, x))
    result = run_amaranth(engine, x)
    np.testing.assert_array_equal(result.outputs, predict_int8(layer, x, rounding))
    stages = 1 + LATENCY[rounding]
    assert result.cycles == sums.cycles + stages
    assert result.latency_cycles == sums.latency_cycles + stages
    assert engine.latency == alone.latency + stages


def test_plan_figures_and_checks():
    layer, _, _ = fixture("dw3x3_m3_s2")
    plan = Int8Plan.from_layer(layer, 2, "double", weights="port")
    assert (plan.groups, plan.out_lanes, plan.table_values, plan.depthwise_values) == (
        1, 6, 12, 6 * 9 + 6)
    values = plan.load_values(layer)
    m0, shifts = layer.quantized_multipliers("double")
    assert list(values[:4]) == [m0[0], shifts[0] & 0xFFFFFFFF, m0[1], shifts[1] & 0xFFFFFFFF]
    assert list(values[12:18]) == [int(v) & 0xFFFFFFFF for v in layer.kernel.reshape(-1)[:6]]
    assert list(values[-6:]) == [int(v) & 0xFFFFFFFF for v in layer.bias]
    fp32 = Int8Plan.from_layer(layer, 2, "fp32", weights="port")
    assert list(fp32.load_values(layer)[:6]) == list(layer.float_scales().view(np.uint32))
    with pytest.raises(LayerError, match="input_zero_point"):
        plan.load_values(dataclasses.replace(layer, input_zero_point=3))
    with pytest.raises(ValueError, match="shifts must be in"):
        plan.load_values({"kernel": layer.kernel, "bias": layer.bias, "multipliers": m0,
                          "shifts": [40] * 6})
    with pytest.raises(LayerError, match="kernel_raw"):
        plan.load_values({"kernel": layer.kernel.astype(float), "bias": layer.bias,
                          "multipliers": m0, "shifts": shifts})
    with pytest.raises(ValueError, match="subnormal"):
        fp32.load_values({"kernel": layer.kernel, "bias": layer.bias,
                          "scales": [2.0 ** -140] * 6})
    with pytest.raises(ValueError, match="weights must be"):
        Int8Plan.from_layer(layer, 2, "double", weights="ports")
    with pytest.raises(TypeError, match="takes a plan"):
        Int8Core(plan, 2)
    engine = Int8Engine.from_layer(layer, 2, "double", weights="port")
    retargeted = engine.retargeted("ecp5")
    assert retargeted.plan.depthwise.target == "ecp5" and retargeted.weights == "port"
    assert engine.retargeted(None) is engine
    assert engine.multipliers == engine.plan.depthwise.multipliers + 4 * 6


def test_verilog_has_the_weight_port():
    from amaranth.back import verilog
    layer, _, _ = fixture("dw3x3_m3_s2")
    engine = Int8Engine.from_layer(layer, 2, "single", weights="port")
    text = verilog.convert(engine, name="dwconv_int8").replace("wire ", "")
    for port in ("input [31:0] w_axis_tdata", "output w_axis_tready", "input w_axis_tlast",
                 "input [15:0] s_axis_tdata", "output [47:0] m_axis_tdata"):
        assert port in text
