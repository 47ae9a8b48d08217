"""InputFramer on its own, against a beat-level model of the framing rules: frame starts,
framing errors (tlast early or missing, start of frame inside a frame, beats outside any
frame), the fill that completes a malformed frame, and the resynchronization on the next
start of frame; with random source pauses, shift permission and frame-start room."""

import numpy as np
from amaranth.sim import Simulator
from hypothesis import given, settings, strategies as st

from dwconv.golden.spec import LayerSpec
from dwconv.hw.framer import InputFramer

SPEC = LayerSpec(input_shape=(2, 3, 4), kernel_size=(2, 2), name="dw")
LANES = 2
LINE_BEATS = 3 * 4 // LANES          # 6
FRAME_BEATS = 2 * LINE_BEATS         # 12
WIDTH = 8


def good_frame():
    """(first, last) of a well-formed frame's beats."""
    return [(n == 0, (n + 1) % LINE_BEATS == 0) for n in range(FRAME_BEATS)]


def model(flags):
    """What the framer must do with beats ``flags`` (a list of (first, last)), whatever the
    timing: (frames started, framing errors, shifts, indexes of the beats shifted in)."""
    starts = errors = shifts = 0
    shifted = []
    position = None                 # inside a frame: the next beat's position
    i = 0
    while i < len(flags):
        first, last = flags[i]
        if position is None and not first:
            errors += 1             # a beat outside any frame: dropped
            i += 1
            continue
        if position is not None and first:
            errors += 1             # a start of frame inside a frame: fill, then take it
            shifts += FRAME_BEATS - position
            position = None
            continue
        if position is None:
            starts, position = starts + 1, 0
        shifts += 1
        shifted.append(i)
        i += 1
        if position == FRAME_BEATS - 1:
            errors += not last
            position = None
        elif last != ((position + 1) % LINE_BEATS == 0):
            errors += 1             # tlast early or missing: the frame is filled up
            shifts += FRAME_BEATS - position - 1
            position = None
        else:
            position += 1
    return starts, errors, shifts, shifted


def run_framer(flags, *, seed=0, pause=0.2, deny=0.2, no_room=0.1, drain=3 * FRAME_BEATS):
    """Stream beats ``flags`` (beat n carries data n) into the framer with random source
    pauses, ``allow`` low and ``start_room`` low, then ``drain`` cycles with no input.
    Returns (starts, errors, shifts, data of the beats shifted in, every cycle's
    (shift, start) when no beat was on offer after the end)."""
    dut = InputFramer(SPEC, LANES, WIDTH)
    rng = np.random.default_rng(seed)
    seen = {"starts": 0, "errors": 0, "shifts": 0, "shifted": []}

    async def bench(ctx):
        beat, cycle = 0, 0
        offering = False
        while beat < len(flags) or cycle < drain:
            if beat >= len(flags):
                cycle += 1
            offering = beat < len(flags) and (offering or rng.random() >= pause)
            if offering:
                first, last = flags[beat]
                ctx.set(dut.i.payload, {"data": beat % (1 << WIDTH), "first": first,
                                        "last": last})
            ctx.set(dut.i.valid, offering)
            ctx.set(dut.allow, beat >= len(flags) or rng.random() >= deny)
            ctx.set(dut.start_room, beat >= len(flags) or rng.random() >= no_room)
            ctx.set(dut.flush, 0)
            _, _, ready, shift, start, error, data = await ctx.tick().sample(
                dut.i.ready, dut.shift, dut.start, dut.error, dut.data)
            seen["starts"] += start
            seen["errors"] += error
            seen["shifts"] += shift
            taken = offering and ready
            if taken and shift:
                seen["shifted"].append(data)
            if taken:
                beat, offering = beat + 1, False

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return seen


def check(flags, **options):
    starts, errors, shifts, shifted = model(flags)
    seen = run_framer(flags, **options)
    assert (seen["starts"], seen["errors"], seen["shifts"]) == (starts, errors, shifts)
    assert seen["shifted"] == [n % (1 << WIDTH) for n in shifted]


def test_well_formed_frames_back_to_back():
    flags = good_frame() * 3
    assert model(flags) == (3, 0, 3 * FRAME_BEATS, list(range(3 * FRAME_BEATS)))
    check(flags, pause=0.0, deny=0.0, no_room=0.0)
    check(flags, seed=1)


def test_early_tlast_fills_the_frame_and_resynchronizes():
    bad = good_frame()[:4]
    bad[-1] = (False, True)           # tlast on the 4th beat of a 6-beat row
    flags = bad + good_frame()
    assert model(flags)[:3] == (2, 1, 2 * FRAME_BEATS)
    check(flags)


def test_missing_tlast():
    bad = good_frame()
    bad[LINE_BEATS - 1] = (False, False)
    flags = bad[:LINE_BEATS] + good_frame()
    # the first frame ends at its first row (filled); the rest of its beats never came
    assert model(flags)[:3] == (2, 1, 2 * FRAME_BEATS)
    check(flags)


def test_missing_tlast_on_the_last_beat_is_an_error_but_the_frame_ends():
    bad = good_frame()
    bad[-1] = (False, False)
    flags = bad + good_frame()
    assert model(flags)[:3] == (2, 1, 2 * FRAME_BEATS)
    check(flags)


def test_start_of_frame_inside_a_frame():
    flags = good_frame()[:5] + good_frame()
    assert model(flags)[:3] == (2, 1, 2 * FRAME_BEATS)
    check(flags)


def test_beats_outside_any_frame_are_dropped():
    flags = [(False, False), (False, True)] + good_frame() + [(False, False)] + good_frame()
    assert model(flags)[:3] == (2, 3, 2 * FRAME_BEATS)
    check(flags)


def test_no_shift_without_allow_and_no_start_without_room():
    """A start of frame waits for ``start_room`` (and is not a flush shift): without room it
    is neither taken nor shifted, whatever ``allow`` and ``flush`` say."""
    dut = InputFramer(SPEC, LANES, WIDTH)
    seen = []

    async def bench(ctx):
        for cycle in range(20):
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, {"data": 7, "first": 1, "last": 0})
            ctx.set(dut.allow, cycle % 2)      # allowed every other cycle, no room ever
            ctx.set(dut.start_room, 0)
            ctx.set(dut.flush, 1)
            _, _, ready, shift, start = await ctx.tick().sample(dut.i.ready, dut.shift,
                                                                dut.start)
            seen.append((ready, shift, start))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # a start of frame on offer: no flush shift, and no start without room
    assert set(seen) == {(0, 0, 0)}


def test_flush_shifts_between_frames_only_when_allowed():
    dut = InputFramer(SPEC, LANES, WIDTH)
    seen = []

    async def bench(ctx):
        for cycle in range(10):
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.flush, 1)
            ctx.set(dut.allow, cycle % 3 != 0)
            ctx.set(dut.start_room, 1)
            _, _, allow, shift, start, error = await ctx.tick().sample(
                dut.allow, dut.shift, dut.start, dut.error)
            seen.append((allow, shift, start, error))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert all(shift == allow and not start and not error for allow, shift, start, error
               in seen)


@st.composite
def streams(draw):
    """Frames, some of them malformed (a beat's flags changed, beats cut, stray beats)."""
    flags = []
    for _ in range(draw(st.integers(1, 4))):
        frame = good_frame()
        kind = draw(st.sampled_from(["good", "flags", "cut", "stray"]))
        if kind == "flags":
            n = draw(st.integers(0, FRAME_BEATS - 1))
            frame[n] = draw(st.tuples(st.booleans(), st.booleans()))
        elif kind == "cut":
            frame = frame[:draw(st.integers(1, FRAME_BEATS - 1))]
        elif kind == "stray":
            flags += draw(st.lists(st.tuples(st.just(False), st.booleans()), min_size=1,
                                   max_size=3))
        flags += frame
    return flags


@settings(max_examples=40, deadline=None)
@given(flags=streams(), seed=st.integers(0, 2**16))
def test_any_stream_matches_the_model(flags, seed):
    check(flags, seed=seed)
