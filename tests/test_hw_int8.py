"""The int8 stream stages in the Amaranth simulator against plain-integer references.

The references are the exact-rational ones of test_tflite_int8_ref (written from the
definitions, not from the hardware's pipeline), with the zero point and the clamp.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings, strategies as st

from dwconv.hw.int8_offset import InputOffset
from dwconv.hw.requantize_int8 import Fp32Requantizer, PerChannelRequantizer
from test_tflite_int8_ref import ref_double, ref_single


def run_stream(dut, beats, *, stall_seed=None, lanes):
    """Push ``beats`` [(values, first, last)] through ``dut`` with random valid gaps and
    ready stalls (none when stall_seed is None); return the beats that came out."""
    rng = np.random.default_rng(stall_seed)
    stall = stall_seed is not None
    out = []

    async def source(ctx):
        for values, first, last in beats:
            while stall and rng.random() < 0.3:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            ctx.set(dut.i.payload.data, list(int(v) for v in values))
            ctx.set(dut.i.payload.first, first)
            ctx.set(dut.i.payload.last, last)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        sink_rng = np.random.default_rng(None if stall_seed is None else stall_seed + 1)
        while len(out) < len(beats):
            ready = not (stall and sink_rng.random() < 0.3)
            ctx.set(dut.o.ready, ready)
            *_, valid, data, first, last = await ctx.tick().sample(
                dut.o.valid, dut.o.payload.data, dut.o.payload.first, dut.o.payload.last)
            if ready and valid:
                out.append(([int(v) for v in data], int(first), int(last)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run_until(1e-8 * (len(beats) * 8 + 50))
    assert len(out) == len(beats), "the stage lost or held beats"
    return out


def _flags(n):
    return [(i == 0, i % 3 == 2) for i in range(n)]


@pytest.mark.parametrize("zero_point", [-128, -1, 0, 5, 127])
def test_input_offset_every_value(zero_point):
    lanes = 4
    values = np.arange(-128, 128).reshape(-1, lanes)
    beats = [(v, f, l) for v, (f, l) in zip(values, _flags(len(values)))]
    out = run_stream(InputOffset(lanes, zero_point), beats, stall_seed=zero_point + 200,
                     lanes=lanes)
    np.testing.assert_array_equal([o[0] for o in out], values - zero_point)
    assert [o[1:] for o in out] == [(int(f), int(l)) for f, l in _flags(len(values))]


def test_input_offset_checks():
    with pytest.raises(ValueError, match="zero_point"):
        InputOffset(2, 128)
    with pytest.raises(ValueError, match="lanes"):
        InputOffset(0, 0)


def reference(acc, m0, shift, zp, lo, hi, rounding):
    acc = (int(acc) + (1 << 31)) % (1 << 32) - (1 << 31)       # TFLite's int32 accumulator
    value = (ref_double if rounding == "double" else ref_single)(acc, int(m0), int(shift))
    return min(max(value + zp, lo), hi)


ACC = st.one_of(st.integers(-(1 << 31), (1 << 31) - 1), st.integers(-5000, 5000),
                st.sampled_from([-(1 << 31), (1 << 31) - 1, 0, -1, 1 << 30]))
M0 = st.one_of(st.integers(1 << 30, (1 << 31) - 1),
               st.sampled_from([0, 1, 1 << 30, (1 << 31) - 1]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), rounding=st.sampled_from(["double", "single"]))
def test_requantizer_against_integer_reference(data, rounding):
    lanes = data.draw(st.integers(1, 3), label="lanes")
    groups = data.draw(st.integers(1, 3), label="groups")
    channels = lanes * groups
    m0 = data.draw(st.lists(M0, min_size=channels, max_size=channels), label="m0")
    shifts = data.draw(st.lists(st.one_of(st.integers(-31, 30), st.sampled_from([-31, 30, 0])),
                                min_size=channels, max_size=channels), label="shifts")
    zp = data.draw(st.integers(-128, 127), label="zp")
    lo = data.draw(st.integers(-128, 127), label="lo")
    hi = data.draw(st.integers(lo, 127), label="hi")
    pixels = data.draw(st.integers(1, 6), label="pixels")
    acc = data.draw(st.lists(ACC, min_size=pixels * channels, max_size=pixels * channels),
                    label="acc")
    dut = PerChannelRequantizer(acc_width=32, lanes=lanes, groups=groups, multipliers=m0,
                                shifts=shifts, output_zero_point=zp, act_min=lo, act_max=hi,
                                rounding=rounding)
    # beats in group order, a new frame's first beat after every 2 pixels
    beats = []
    for i in range(pixels * groups):
        g = i % groups
        values = acc[i * lanes:(i + 1) * lanes]
        beats.append((values, i % (2 * groups) == 0, g == groups - 1))
    out = run_stream(dut, beats, stall_seed=data.draw(st.integers(0, 1000)), lanes=lanes)
    for i, ((values, first, last), (got, got_first, got_last)) in enumerate(zip(beats, out)):
        g = i % groups
        want = [reference(v, m0[g * lanes + q], shifts[g * lanes + q], zp, lo, hi, rounding)
                for q, v in enumerate(values)]
        assert got == want, f"beat {i} (group {g}), rounding {rounding}"
        assert (got_first, got_last) == (int(first), int(last))


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_requantizer_corners_every_shift(rounding):
    # every shift once, against accumulators at the int32 corners and around a half
    shifts = list(range(-31, 31))
    lanes = len(shifts)
    m0 = [(1 << 31) - 1 if s % 2 else 1 << 30 for s in shifts]
    accs = [[-(1 << 31)] * lanes, [(1 << 31) - 1] * lanes, [-1] * lanes, [1] * lanes,
            [3 << 20] * lanes, [-(3 << 20)] * lanes, [0] * lanes]
    dut = PerChannelRequantizer(acc_width=32, lanes=lanes, groups=1, multipliers=m0,
                                shifts=shifts, output_zero_point=-3, rounding=rounding)
    beats = [(a, i == 0, True) for i, a in enumerate(accs)]
    out = run_stream(dut, beats, lanes=lanes)
    for values, (got, _, _) in zip(accs, out):
        assert got == [reference(v, m, s, -3, -128, 127, rounding)
                       for v, m, s in zip(values, m0, shifts)]


def test_requantizer_full_rate_and_wide_accumulators():
    # without stalls one beat leaves per cycle after the latency; a 40-bit accumulator is
    # taken modulo 2**32 like TFLite's int32
    acc = [(1 << 35) + 77, -(1 << 33) - 5, 12345, -(1 << 39)]
    dut = PerChannelRequantizer(acc_width=40, lanes=1, groups=2, multipliers=[1 << 30,
                                1518500250], shifts=[-2, 1], output_zero_point=10)
    beats = [([a], i == 0, i % 2 == 1) for i, a in enumerate(acc)]
    cycles = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for values, first, last in beats:
            ctx.set(dut.i.payload.data, values)
            ctx.set(dut.i.payload.first, first)
            ctx.set(dut.i.payload.last, last)
            ctx.set(dut.i.valid, 1)
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for n in range(12):
            *_, valid, data = await ctx.tick().sample(dut.o.valid, dut.o.payload.data)
            if valid:
                cycles.append((n, int(data[0])))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # the first beat entered 4 ticks before this loop: outputs on consecutive cycles
    assert [c for c, _ in cycles] == [dut.latency - 4 + k for k in range(4)]
    m0, shifts = [1 << 30, 1518500250], [-2, 1]
    assert [v for _, v in cycles] == [reference(a, m0[i % 2], shifts[i % 2], 10, -128, 127,
                                                "double") for i, a in enumerate(acc)]


def test_requantizer_checks():
    kw = dict(acc_width=32, lanes=2, groups=1, output_zero_point=0)
    with pytest.raises(ValueError, match="2 values"):
        PerChannelRequantizer(**kw, multipliers=[1], shifts=[0, 0])
    with pytest.raises(ValueError, match=r"shifts must be in \[-31, 30\]"):
        PerChannelRequantizer(**kw, multipliers=[1, 1], shifts=[0, 31])
    with pytest.raises(ValueError, match="rounding"):
        PerChannelRequantizer(**kw, multipliers=[1, 1], shifts=[0, 0], rounding="fp32")
    with pytest.raises(ValueError, match="clamp"):
        PerChannelRequantizer(**kw, multipliers=[1, 1], shifts=[0, 0], act_min=3, act_max=2)
    with pytest.raises(ValueError, match="subnormal"):
        Fp32Requantizer(**kw, scales=[0.5, 2.0 ** -140])
    with pytest.raises(ValueError, match="finite"):
        Fp32Requantizer(**kw, scales=[0.5, float("inf")])


def fp32_reference(acc, scale, zp, lo, hi):
    """XNNPACK's rule in NumPy float32: rint(float32(acc) * scale), ties to even."""
    acc = (int(acc) + (1 << 31)) % (1 << 32) - (1 << 31)
    with np.errstate(over="ignore"):
        product = np.float32(acc) * np.float32(scale)
    value = int(np.rint(np.clip(np.float64(product), -2.0 ** 40, 2.0 ** 40)))
    return min(max(value + zp, lo), hi)


SCALE = st.one_of(st.floats(2.0 ** -30, 300, width=32),
                  st.sampled_from([0.0, 2.0 ** -126, 0.5, 1.0, 2.0 ** -4,
                                   float(np.float32(1 - 2.0 ** -24)), 2.0 ** 24, 3.4e38]))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fp32_requantizer_against_float32(data):
    lanes = data.draw(st.integers(1, 2), label="lanes")
    groups = data.draw(st.integers(1, 3), label="groups")
    channels = lanes * groups
    scales = data.draw(st.lists(SCALE, min_size=channels, max_size=channels), label="scales")
    zp = data.draw(st.integers(-128, 127), label="zp")
    lo = data.draw(st.integers(-128, 127), label="lo")
    hi = data.draw(st.integers(lo, 127), label="hi")
    pixels = data.draw(st.integers(1, 6), label="pixels")
    # accumulators near halves of the scale too: the ties and the float32 roundings
    near = st.builds(lambda k, s, d: int(round((k + 0.5) / max(s, 1e-30))) + d,
                     st.integers(-300, 300), SCALE, st.integers(-2, 2)).filter(
                         lambda v: -(1 << 31) <= v < 1 << 31)
    acc = data.draw(st.lists(st.one_of(ACC, near), min_size=pixels * channels,
                             max_size=pixels * channels), label="acc")
    dut = Fp32Requantizer(acc_width=32, lanes=lanes, groups=groups, scales=scales,
                          output_zero_point=zp, act_min=lo, act_max=hi)
    beats = [(acc[i * lanes:(i + 1) * lanes], i % (2 * groups) == 0, i % groups == groups - 1)
             for i in range(pixels * groups)]
    out = run_stream(dut, beats, stall_seed=data.draw(st.integers(0, 1000)), lanes=lanes)
    for i, ((values, first, last), (got, got_first, got_last)) in enumerate(zip(beats, out)):
        g = i % groups
        want = [fp32_reference(v, scales[g * lanes + q], zp, lo, hi)
                for q, v in enumerate(values)]
        assert got == want, f"beat {i} (group {g})"
        assert (got_first, got_last) == (int(first), int(last))


def test_fp32_requantizer_hand_picked():
    # ties both ways, the float32 product's own rounding (8841 * s is 129.4999936, its float32
    # 129.5, to even 130), accumulators past 2**24 (float32(acc) rounds), the int32 corners
    s = float(np.float32(np.float32(0.040538933128118515) * np.float32(0.008613117039203644))
              / np.float32(0.023837696760892868))
    cases = [(8841, s), (24, 2.0 ** -4), (40, 2.0 ** -4), (-24, 2.0 ** -4), (-40, 2.0 ** -4),
             ((1 << 24) + 1, 2.0 ** -17), ((1 << 24) + 3, 2.0 ** -17), (-(1 << 31), 2.0 ** -24),
             ((1 << 31) - 1, 2.0 ** -24), (3, 0.0), (1, 2.0 ** 30), (-1, 2.0 ** 30),
             # found by the sweep: a magnitude whose top bit index has bit 4 set (20) was
             # read as a negative exponent
             (-1391364, 2.0 ** -30), (1391364, 2.0 ** -20), (-1391364, 2.0 ** -20)]
    dut = Fp32Requantizer(acc_width=32, lanes=len(cases), groups=1,
                          scales=[c[1] for c in cases], output_zero_point=-29)
    out = run_stream(dut, [([c[0] for c in cases], True, True)], lanes=len(cases))
    assert out[0][0] == [fp32_reference(a, sc, -29, -128, 127) for a, sc in cases]
    assert out[0][0][0] == 101


def run_loaded(dut, words, beats):
    """Load ``words`` through the table port of ``dut`` (weights="port"), then push
    ``beats`` (the first one a frame's first) with the sink always ready; returns the
    output values per beat."""
    out = []

    async def bench(ctx):
        ctx.set(dut.apply, 1)
        ctx.set(dut.o.ready, 1)
        for n, word in enumerate(words):
            ctx.set(dut.load.payload.value, word)
            ctx.set(dut.load.payload.last, n == len(words) - 1)
            ctx.set(dut.load.valid, 1)
            await ctx.tick().until(dut.load.ready)
        ctx.set(dut.load.valid, 0)
        for values, first, last in beats:
            ctx.set(dut.i.payload.data, [int(v) for v in values])
            ctx.set(dut.i.payload.first, first)
            ctx.set(dut.i.payload.last, last)
            ctx.set(dut.i.valid, 1)
            *_, valid, data = await ctx.tick().sample(dut.o.valid, dut.o.payload.data)
            if valid:
                out.append([int(v) for v in data])
        ctx.set(dut.i.valid, 0)
        while len(out) < len(beats):
            *_, valid, data = await ctx.tick().sample(dut.o.valid, dut.o.payload.data)
            if valid:
                out.append([int(v) for v in data])
        assert not ctx.get(dut.error)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), rounding=st.sampled_from(["fp32", "double", "single"]))
def test_loaded_factors_equal_the_reference(data, rounding):
    # built with factors that are not the drawn ones, then loaded with them through the
    # port: the float32 bits (zero, subnormal bits as 0) or M0 and shift words decode in
    # hardware to the values the references use
    lanes = data.draw(st.integers(1, 2), label="lanes")
    groups = data.draw(st.integers(1, 3), label="groups")
    channels = lanes * groups
    common = dict(acc_width=32, lanes=lanes, groups=groups, output_zero_point=-7,
                  weights="port")
    pixels = 3
    acc = data.draw(st.lists(ACC, min_size=pixels * channels, max_size=pixels * channels),
                    label="acc")
    beats = [(acc[i * lanes:(i + 1) * lanes], i == 0, i % groups == groups - 1)
             for i in range(pixels * groups)]
    if rounding == "fp32":
        scales = data.draw(st.lists(SCALE, min_size=channels, max_size=channels),
                           label="scales")
        words = [int(np.float32(s).view(np.uint32)) for s in scales]
        dut = Fp32Requantizer(**common, scales=[1.0] * channels)
        want = lambda a, o: fp32_reference(a, scales[o], -7, -128, 127)
    else:
        m0 = data.draw(st.lists(M0, min_size=channels, max_size=channels), label="m0")
        shifts = data.draw(st.lists(st.integers(-31, 30), min_size=channels,
                                    max_size=channels), label="shifts")
        words = [v & 0xFFFFFFFF for pair in zip(m0, shifts) for v in pair]
        dut = PerChannelRequantizer(**common, multipliers=[1 << 30] * channels,
                                    shifts=[0] * channels, rounding=rounding)
        want = lambda a, o: reference(a, m0[o], shifts[o], -7, -128, 127, rounding)
    out = run_loaded(dut, words, beats)
    for i, ((values, _, _), got) in enumerate(zip(beats, out)):
        g = i % groups
        assert got == [want(v, g * lanes + q) for q, v in enumerate(values)], f"beat {i}"


def test_subnormal_scale_bits_load_as_zero():
    dut = Fp32Requantizer(acc_width=32, lanes=2, groups=1, scales=[1.0, 1.0],
                          output_zero_point=5, weights="port")
    words = [1, int(np.float32(0.5).view(np.uint32))]       # a subnormal's bits, 0.5
    assert run_loaded(dut, words, [([1 << 30, 1 << 30], True, True)]) == [[5, 127]]
