"""DepthwiseCore inside a user's own Amaranth module, driven through its stream ports; and
EnginePlan, whose figures need no hardware built."""

import numpy as np
import pytest
from amaranth._unused import MustUse
from amaranth.hdl import Fragment, Module, Value, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dwconv.golden.fixed_ref import fixed_forward_raw, quantize_weights
from dwconv.golden.formats import LayerFormats
from dwconv.golden.spec import LayerError, LayerSpec
from dwconv.hw.activation import Activation
from dwconv.hw.core import DepthwiseCore, lane_beat, load_layout
from dwconv.hw.engine import DepthwiseEngine
from dwconv.hw.folded_mac import FoldedMacArray
from dwconv.hw.mac import MacArray, mac_signature
from dwconv.hw.multiplier import Multiplier
from dwconv.hw.output_queue import OutputQueue
from dwconv.hw.plan import EnginePlan
from dwconv.hw.requantizer import Requantizer
from dwconv.sim.amaranth_sim import run_amaranth
from dwconv.sim.beats import weight_load_values

from support.engine_cases import FORMAT_SETS, random_layer


class UserTop(wiring.Component):
    """What a user writes: their own component with the core inside, its streams forwarded."""

    def __init__(self, plan):
        self.plan = plan
        self.core = core = DepthwiseCore(plan)
        members = {"i": In(stream.Signature(core.beat_in)),
                   "o": Out(stream.Signature(core.beat_out)), "error": Out(1)}
        if plan.weights == "port":
            members["w"] = In(stream.Signature(load_layout(plan)))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        wiring.connect(m, wiring.flipped(self.i), core.i)
        wiring.connect(m, core.o, wiring.flipped(self.o))
        if self.plan.weights == "port":
            wiring.connect(m, wiring.flipped(self.w), core.w)
        m.d.comb += self.error.eq(core.error)
        return m


async def stream_put(ctx, port, payload, rng, stall):
    """Offer ``payload`` on ``port`` after a random number of idle cycles; returns once it
    is taken."""
    ctx.set(port.valid, 0)
    while rng.random() < stall:
        await ctx.tick()
    ctx.set(port.payload, payload)
    ctx.set(port.valid, 1)
    await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


async def stream_get(ctx, port, rng, stall):
    """Take one beat from ``port``, ready held low for random cycles first."""
    ctx.set(port.ready, 0)
    while rng.random() < stall:
        await ctx.tick()
    ctx.set(port.ready, 1)
    payload, = await ctx.tick().sample(port.payload).until(port.valid)
    ctx.set(port.ready, 0)
    return payload


def make_layer(shape, kernel, *, seed=0, **options):
    spec = LayerSpec(input_shape=shape, kernel_size=kernel, **options)
    return random_layer(spec, np.random.default_rng(seed))


def run_core(plan, frames_raw, *, stall, seed, loads=None):
    """Frames through ``UserTop(plan)``, back to back, with random valid/ready stalls;
    ``loads`` maps a frame index to (kernel_raw, bias_raw) loaded through ``w`` before it.
    Returns (outputs (N, oh, ow, C*M), (first, last) per output beat, error, cycle
    numbers: ``first_in``, ``last_in`` (input beats taken), ``last_out``)."""
    spec, lanes, groups = plan.spec, plan.lanes, plan.groups
    dut = UserTop(plan)
    row_beats = spec.width * groups
    out_beats = len(frames_raw) * plan.out_frame_beats
    rng_in, rng_out = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    now = [0]
    taken, seen = [], {}

    async def clock(ctx):
        while "last_out" not in seen:
            await ctx.tick()
            now[0] += 1

    async def source(ctx):
        for k, frame in enumerate(frames_raw):
            if loads and k in loads:
                values = weight_load_values(spec, *loads[k], plan.store.load_width)
                for n, value in enumerate(values):
                    await stream_put(ctx, dut.w, {"value": value,
                                                  "last": n == len(values) - 1},
                                     rng_in, stall)
            beats = frame.reshape(spec.height * spec.width * groups, lanes)
            for n, beat in enumerate(beats):
                await stream_put(ctx, dut.i, {"data": [int(v) for v in beat],
                                              "first": n == 0,
                                              "last": (n + 1) % row_beats == 0},
                                 rng_in, stall)
                seen.setdefault("first_in", now[0])
                seen["last_in"] = now[0]

    async def sink(ctx):
        for _ in range(out_beats):
            payload = await stream_get(ctx, dut.o, rng_out, stall)
            taken.append(([payload.data[q] for q in range(plan.out_lanes)],
                          payload.first, payload.last))
        seen["last_out"] = now[0]
        seen["error"] = ctx.get(dut.error)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    # all three run to their end: an output frame may be complete before the last input
    # beats are taken (valid padding, strides), and a coroutine left waiting would warn
    for bench in (clock, source, sink):
        sim.add_testbench(bench)
    sim.run()
    values = np.array([lane_values for lane_values, _, _ in taken], dtype=np.int64)
    outputs = values.reshape(len(frames_raw), spec.out_height, spec.out_width,
                             spec.out_channels)
    flags = [(int(first), int(last)) for _, first, last in taken]
    return outputs, flags, seen["error"], seen


def _expected_flags(plan, frames):
    spec = plan.spec
    row = spec.out_width * plan.groups
    return [(int(n == 0), int((n + 1) % row == 0)) for _ in range(frames)
            for n in range(plan.out_frame_beats)]


def raw_frames(formats, spec, count, rng):
    fmt = formats.input
    return rng.integers(fmt.raw_min, fmt.raw_max + 1, size=(count, *spec.input_shape))


def check_core(layer, formats, lanes, *, stall=0.3, seed=0, frames=3, **plan_options):
    formats = LayerFormats.from_strings(**FORMAT_SETS[formats])
    kernel_raw, bias_raw = quantize_weights(layer, formats)
    plan = EnginePlan(layer.spec, formats, lanes, kernel_raw, bias_raw, **plan_options)
    x = raw_frames(formats, layer.spec, frames, np.random.default_rng(seed))
    outputs, flags, error, cycles = run_core(plan, x, stall=stall, seed=seed)
    np.testing.assert_array_equal(outputs, fixed_forward_raw(layer, formats, x))
    assert flags == _expected_flags(plan, frames)
    assert not error
    return cycles


@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_core_in_a_user_module_lanes_and_multiplier(stall):
    """P=2 lanes of C=4, M=2: beats of 4 output lanes, back-to-back frames, stalls."""
    layer = make_layer((5, 6, 4), (3, 3), padding="same", depth_multiplier=2, seed=1)
    check_core(layer, "rnd_sat", 2, stall=stall, seed=3)


@pytest.mark.parametrize("formats", ["trn_wrap", "conv_sym", "accum"])
def test_core_formats_strides_dilation(formats):
    layer = make_layer((7, 6, 2), (3, 2), strides=(2, 1), dilation_rate=(1, 2),
                       padding="same", activation="relu6", seed=2)
    check_core(layer, formats, 1, stall=0.25, seed=4)


def test_core_with_reuse():
    layer = make_layer((5, 5, 2), (3, 3), padding="valid", depth_multiplier=2, seed=5)
    check_core(layer, "rnd_sat", 2, stall=0.2, seed=6, reuse=4)


def test_core_weight_port_loads_through_w():
    """Frame 0 uses the weights the core was built with; a load through ``w`` before frame 1
    gives frames 1 and 2 the loaded ones."""
    layer = make_layer((4, 5, 4), (3, 3), padding="same", depth_multiplier=2, seed=7)
    formats = LayerFormats.from_strings(**FORMAT_SETS["rnd_sat"])
    kernel_raw, bias_raw = quantize_weights(layer, formats)
    plan = EnginePlan(layer.spec, formats, 2, kernel_raw, bias_raw, weights="port")
    other = random_layer(layer.spec, np.random.default_rng(8))
    rng = np.random.default_rng(9)
    x = raw_frames(formats, layer.spec, 3, rng)
    outputs, flags, error, _ = run_core(plan, x, stall=0.3, seed=10,
                                        loads={1: quantize_weights(other, formats)})
    expected = np.concatenate([fixed_forward_raw(layer, formats, x[:1]),
                               fixed_forward_raw(other, formats, x[1:])])
    np.testing.assert_array_equal(outputs, expected)
    assert flags == _expected_flags(plan, 3)
    assert not error


def test_core_output_complete_before_the_input_frame_ends():
    """Valid padding with stride 2 on odd sizes: the last row and column are never used,
    so the last output beat leaves before the frame's last input beats are taken (found by
    the sweep below: the testbench then ended with its source still waiting)."""
    layer = make_layer((9, 30, 1), (2, 2), strides=6, padding="valid", seed=13)
    cycles = check_core(layer, "trn_wrap", 1, stall=0.3, seed=14, frames=2)
    assert cycles["last_out"] < cycles["last_in"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_core_random_configurations(data):
    kh, kw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    channels = data.draw(st.sampled_from([1, 2, 4]))
    lanes = data.draw(st.sampled_from([p for p in (1, 2, 4) if channels % p == 0]))
    layer = make_layer((data.draw(st.integers(kh, kh + 2)), data.draw(st.integers(kw, kw + 2)),
                        channels), (kh, kw),
                       strides=data.draw(st.integers(1, 2)),
                       padding=data.draw(st.sampled_from(["same", "valid"])),
                       depth_multiplier=data.draw(st.integers(1, 2)),
                       use_bias=data.draw(st.booleans()),
                       activation=data.draw(st.sampled_from(["linear", "relu"])),
                       seed=data.draw(st.integers(0, 99)))
    check_core(layer, data.draw(st.sampled_from(sorted(FORMAT_SETS))), lanes,
               stall=data.draw(st.sampled_from([0.0, 0.3])), seed=data.draw(st.integers(0, 9)),
               frames=2, weights=data.draw(st.sampled_from(["const", "port"])),
               reuse=data.draw(st.integers(1, kh * kw)))


def test_core_takes_as_many_cycles_as_the_engine():
    """The AXI4-Stream engine is the core with renamed ports: the same cycle count."""
    layer = make_layer((6, 6, 2), (3, 3), padding="same", seed=11)
    formats = LayerFormats.from_strings(**FORMAT_SETS["trn_wrap"])
    kernel_raw, bias_raw = quantize_weights(layer, formats)
    plan = EnginePlan(layer.spec, formats, 1, kernel_raw, bias_raw)
    x = raw_frames(formats, layer.spec, 3, np.random.default_rng(12))
    outputs, _, _, seen = run_core(plan, x, stall=0.0, seed=0)
    engine = DepthwiseEngine(layer.spec, formats, 1, kernel_raw, bias_raw)
    result = run_amaranth(engine, x)
    np.testing.assert_array_equal(outputs, result.outputs)
    assert seen["last_out"] - seen["first_in"] + 1 == result.cycles


def _built(elaboratable):
    """``elaboratable`` elaborated with its whole hierarchy: {path: component}."""
    found = {}

    def walk(fragment, path):
        found[path] = fragment.origins[0] if fragment.origins else fragment   # an Instance
        for sub, name, _ in fragment.subfragments:
            walk(sub, f"{path}.{name}")

    walk(Fragment.get(elaboratable, None), "top")
    return found


def _count_components(monkeypatch):
    """Patch MustUse.__new__ to count every Elaboratable made; returns the count box."""
    made = []
    original = MustUse.__new__

    def counting(cls, *args, src_loc_at=0, **kwargs):
        made.append(cls.__name__)
        return original(cls, *args, src_loc_at=src_loc_at + 1, **kwargs)

    monkeypatch.setattr(MustUse, "__new__", staticmethod(counting))
    return made


def plan_for(spec, formats, lanes, **options):
    layer = random_layer(spec, np.random.default_rng(0))
    formats = LayerFormats.from_strings(**FORMAT_SETS[formats])
    return EnginePlan(spec, formats, lanes, *quantize_weights(layer, formats), **options)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_plan_figures_equal_the_built_core(data):
    kh, kw = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    dh, dw = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    padding = data.draw(st.sampled_from(["same", "valid"]))
    min_h = (kh - 1) * dh + 1 if padding == "valid" else 1
    min_w = (kw - 1) * dw + 1 if padding == "valid" else 1
    channels = data.draw(st.sampled_from([1, 2, 3, 4, 6]))
    spec = LayerSpec(input_shape=(data.draw(st.integers(min_h, min_h + 5)),
                                  data.draw(st.integers(min_w, min_w + 12)), channels),
                     kernel_size=(kh, kw), strides=(data.draw(st.integers(1, 3)),
                                                    data.draw(st.integers(1, 3))),
                     dilation_rate=(dh, dw), padding=padding,
                     depth_multiplier=data.draw(st.integers(1, 3)),
                     use_bias=data.draw(st.booleans()))
    lanes = data.draw(st.sampled_from([p for p in range(1, channels + 1)
                                       if channels % p == 0]))
    plan = plan_for(spec, data.draw(st.sampled_from(sorted(FORMAT_SETS))), lanes,
                    weights=data.draw(st.sampled_from(["const", "port"])),
                    reuse=data.draw(st.integers(1, kh * kw)),
                    target=data.draw(st.sampled_from([None, "ecp5", "ice40"])))
    check_plan_figures(plan)


def check_plan_figures(plan):
    """The plan's figures against the core built from it, and the engine's."""
    spec, lanes = plan.spec, plan.lanes
    core = DepthwiseCore(plan)
    built = _built(core)
    macs = [c for path, c in built.items() if isinstance(c, (MacArray, FoldedMacArray))]
    assert len(macs) == plan.out_lanes == lanes * spec.depth_multiplier
    assert plan.multipliers == sum(mac.multipliers if isinstance(mac, FoldedMacArray)
                                   else mac.taps for mac in macs)
    assert plan.real_multipliers == sum(isinstance(c, Multiplier) for c in built.values())
    natural = [mac.bias_delay + (mac.reuse if isinstance(mac, FoldedMacArray) else 1)
               for mac in macs]
    assert plan.mac_latency == max(natural)
    assert {mac.latency for mac in macs} == {plan.mac_latency}
    assert {len(mac.acc) for mac in macs} == {plan.accumulator.width}
    stages = {path.rsplit(".", 1)[1]: c for path, c in built.items() if path.count(".") == 1}
    accum = stages["accum0"].latency if "accum0" in stages else 0
    assert ("accum0" in stages) == (plan.formats.accum is not None)
    assert plan.latency == 3 + 1 + plan.mac_latency + accum + stages["act0"].latency \
        + stages["out0"].latency
    assert plan.line_buffer_words == stages["line_buffer"].depth * lanes
    assert plan.queue_depth == stages["out_queue"].depth
    assert plan.frames_in_flight + 1 == stages["starts"].depth
    assert plan.counter_width == stages["scanner"].counter_width
    assert plan.groups == stages["scanner"].groups
    assert plan.store.constant == stages["store"].constant
    assert len(core.i.payload.data) == lanes
    assert len(Value.cast(core.i.payload.data)) == lanes * plan.formats.input.width
    assert len(core.o.payload.data) == plan.out_lanes
    assert len(Value.cast(core.o.payload.data)) == plan.out_lanes * plan.formats.output.width
    if plan.weights == "port":
        assert plan.store.load_width == len(core.w.payload.value) == stages["store"].load_width
    else:
        assert not hasattr(core, "w")
    engine = DepthwiseEngine(spec, plan.formats, lanes, plan.kernel_raw, plan.bias_raw,
                             weights=plan.weights, reuse=plan.reuse, target=plan.target)
    assert engine.plan == plan
    for name in ("latency", "mac_latency", "multipliers", "real_multipliers",
                 "line_buffer_words", "out_lanes", "groups", "counter_width",
                 "frames_in_flight", "queue_depth", "reuse", "lanes", "weights", "target"):
        assert getattr(engine, name) == getattr(plan, name), name


def test_a_plan_builds_no_component(monkeypatch):
    made = _count_components(monkeypatch)
    spec = LayerSpec(input_shape=(8, 8, 4), kernel_size=(3, 3), padding="same",
                     depth_multiplier=2)
    plan = plan_for(spec, "rnd_sat", 2, weights="port", reuse=3, target="ecp5")
    assert plan.latency > 0 and plan.multipliers == 3 * 4
    assert plan.replace(lanes=4).out_lanes == 8
    assert made == []
    # an engine is its plan and its ports: the core is built when it is elaborated
    engine = DepthwiseEngine(spec, plan.formats, 2, plan.kernel_raw, plan.bias_raw)
    assert made == ["DepthwiseEngine"]
    Fragment.get(engine, None)
    assert "DepthwiseCore" in made and "LineBuffer" in made


def test_the_core_takes_a_plan_or_its_arguments():
    spec = LayerSpec(input_shape=(4, 4, 2), kernel_size=(2, 2))
    plan = plan_for(spec, "trn_wrap", 2, weights="port")
    core = DepthwiseCore(spec, plan.formats, 2, plan.kernel_raw, plan.bias_raw,
                         weights="port")
    assert core.plan == plan
    other = DepthwiseCore(plan)
    assert core.signature == other.signature
    assert set(core.signature.members) == {"i", "o", "w", "error"}
    with pytest.raises(TypeError, match="takes a plan, or the arguments of EnginePlan"):
        DepthwiseCore(plan, 2)
    with pytest.raises(LayerError, match="lanes must divide"):
        DepthwiseCore(spec, plan.formats, 3, plan.kernel_raw, plan.bias_raw)
    for built in (core, other):
        Fragment.get(built, None)


def test_plans_compare_by_value():
    spec = LayerSpec(input_shape=(4, 4, 2), kernel_size=(2, 2))
    plan = plan_for(spec, "trn_wrap", 1)
    same = plan_for(spec, "trn_wrap", 1)
    assert plan == same and hash(plan) == hash(same)
    assert plan != plan.replace(reuse=2)
    assert plan != plan.replace(kernel_raw=plan.kernel_raw + (plan.kernel_raw < 100))
    with pytest.raises(ValueError):
        plan.kernel_raw[0, 0, 0, 0] = 1        # read-only: a plan does not change


_SPEC = LayerSpec(input_shape=(4, 4, 2), kernel_size=(2, 2), depth_multiplier=1)
_FORMATS = LayerFormats.from_strings(**FORMAT_SETS["trn_wrap"])   # weight fixed<8,2>
_KERNEL = np.arange(8, dtype=np.int64).reshape(2, 2, 2, 1) - 4
_BIAS = np.array([3, -3])


@pytest.mark.parametrize("changes, error, match", [
    (dict(kernel_raw=_KERNEL.astype(np.float64)), LayerError, "raw integers of the weight"),
    (dict(kernel_raw=_KERNEL * 1e9), LayerError, "raw integers of the weight"),
    (dict(kernel_raw=np.full((2, 2, 2, 1), np.nan)), LayerError, "NaN or infinite"),
    (dict(bias_raw=np.array([0.5, 1.0])), LayerError, "raw integers of the bias"),
    (dict(kernel_raw=_KERNEL * 10 ** 9), LayerError, r"from -4000000000 to 3000000000, outside"),
    (dict(kernel_raw=_KERNEL.astype(bool)), LayerError, "not bool values"),
    (dict(kernel_raw=_KERNEL + 200), LayerError, r"outside the weight format fixed<8,2"),
    (dict(bias_raw=np.array([128, 0])), LayerError, r"outside the bias format"),
    (dict(kernel_raw=_KERNEL.reshape(2, 2, 1, 2)), LayerError, r"shape \(2, 2, 2, 1\)"),
    (dict(bias_raw=np.array([1, 2, 3])), LayerError, r"shape \(2,\)"),
    (dict(bias_raw=None), LayerError, "bias_raw is needed"),
    (dict(lanes=3), LayerError, "use one of 1, 2"),
    (dict(lanes=True), LayerError, "use one of 1, 2"),
    (dict(reuse=5), ValueError, "reuse must be a whole number from 1 to 4"),
    (dict(reuse=0), ValueError, "reuse must be"),
    (dict(reuse=2.0), ValueError, "reuse must be"),
    (dict(weights="rom"), ValueError, "weights must be 'const' or 'port'"),
    (dict(target="xc7"), ValueError, "target must be one of"),
])
def test_bad_parameters_are_refused_before_anything_is_built(changes, error, match,
                                                            monkeypatch):
    made = _count_components(monkeypatch)
    args = dict(spec=_SPEC, formats=_FORMATS, lanes=1, kernel_raw=_KERNEL, bias_raw=_BIAS)
    args.update(changes)
    options = {k: args.pop(k) for k in ("weights", "reuse", "target") if k in args}
    with pytest.raises(error, match=match):
        EnginePlan(*args.values(), **options)
    assert made == []
    # the engine checks through its plan: nothing inside it is built
    with pytest.raises(error, match=match):
        DepthwiseEngine(*args.values(), **options)
    assert made == ["DepthwiseEngine"]


def test_a_layer_without_bias_takes_no_bias_or_zeros():
    spec = LayerSpec(input_shape=(4, 4, 2), kernel_size=(2, 2), use_bias=False)
    plan = EnginePlan(spec, _FORMATS, 2, _KERNEL, None)
    np.testing.assert_array_equal(plan.bias_raw, [0, 0])
    assert plan == EnginePlan(spec, _FORMATS, 2, _KERNEL, np.zeros(2, dtype=np.int64))
    with pytest.raises(LayerError, match="must be all zeros: the layer has no bias"):
        EnginePlan(spec, _FORMATS, 2, _KERNEL, _BIAS)


def test_mac_arrays_share_one_signature():
    full = MacArray(9, signed(8), signed(6), signed(10), 24)
    folded = FoldedMacArray(9, 1, signed(8), signed(6), signed(10), 24)
    assert full.signature == folded.signature == mac_signature(9, signed(8), signed(6),
                                                               signed(10), 24)
    folded_3 = FoldedMacArray(9, 3, signed(8), signed(6), signed(10), 24)
    assert folded_3.signature == mac_signature(9, signed(8), signed(6), signed(10), 24,
                                               reuse=3)
    for mac in (full, folded, folded_3):
        Fragment.get(mac, None)


def test_every_stage_is_a_component():
    stages = [Activation("relu", signed(12), 4), Requantizer(signed(12), 4,
                                                               _FORMATS.output)]
    for stage in stages:
        assert isinstance(stage, wiring.Component)
        assert set(stage.signature.members) == {"i", "o"}
        Fragment.get(stage, None)
    assert stages[1].o.shape() == signed(8)
    assert lane_beat(_FORMATS.input, 3).size == 3 * 8 + 2
    assert lane_beat(LayerFormats.from_strings(input="ufixed<6,2>").input, 2)["data"].shape \
        .elem_shape == unsigned(6)


@pytest.mark.parametrize("build, match", [
    (lambda: Activation("gelu", signed(8), 0), "activation must be linear, relu or relu6"),
    (lambda: FoldedMacArray(9, 10, signed(8), signed(6), signed(10), 24), "reuse must be"),
    (lambda: FoldedMacArray(9, 3, signed(8), signed(6), signed(10), 24, weights=[1, 2]),
     "2 weights given for 9 taps"),
    (lambda: OutputQueue(8, 6), "depth must be a power of 2"),
    (lambda: Multiplier(signed(8), signed(8), target="xc7"), "target must be one of"),
])
def test_refused_components_leave_nothing_unused(build, match, monkeypatch):
    """Each check runs before the component exists (a half-built one would warn, an error
    under PYTHONWARNINGS=error)."""
    made = _count_components(monkeypatch)
    with pytest.raises(ValueError, match=match):
        build()
    assert made == []
