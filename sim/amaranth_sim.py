"""Runs the engine in Amaranth's simulator: frames back to back, random stalls, weight loads."""

import sys
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator

from .beats import pack_beats, unpack_beats, weight_load_values
from ..flows.build_cache import cycle_budget

__all__ = ["StreamResult", "run_amaranth", "run_cycles", "load_width", "output_framing"]


@dataclass(frozen=True)
class _Ports:
    """The signals a bench drives and samples: an AXI top's flat ports or a stream core's
    (``w_*`` None without a weight port)."""

    i_data: object
    i_first: object
    i_last: object
    i_valid: object
    i_ready: object
    o_data: object
    o_first: object
    o_last: object
    o_valid: object
    o_ready: object
    w_value: object
    w_last: object
    w_valid: object
    w_ready: object
    error: object

    @classmethod
    def of_top(cls, top):
        port = "w_axis_tdata" in top.signature.members
        w = (top.w_axis_tdata, top.w_axis_tlast, top.w_axis_tvalid, top.w_axis_tready) \
            if port else (None,) * 4
        return cls(top.s_axis_tdata, top.s_axis_tuser, top.s_axis_tlast, top.s_axis_tvalid,
                   top.s_axis_tready, top.m_axis_tdata, top.m_axis_tuser, top.m_axis_tlast,
                   top.m_axis_tvalid, top.m_axis_tready, *w, top.error)

    @classmethod
    def of_core(cls, core):
        w = (core.w.payload.value, core.w.payload.last, core.w.valid, core.w.ready) \
            if "w" in core.signature.members else (None,) * 4
        return cls(core.i.payload.data.as_value(), core.i.payload.first, core.i.payload.last,
                   core.i.valid, core.i.ready, core.o.payload.data.as_value(),
                   core.o.payload.first, core.o.payload.last, core.o.valid, core.o.ready, *w,
                   core.error)


def load_width(engine):
    """Bits of a weight port value: the engine's ``load_width`` where it has one (a block or
    an int8 engine, whose loads hold more than a depthwise store's), else its store's."""
    return engine.load_width if hasattr(engine, "load_width") else engine.store.load_width


def run_cycles(engine, first_in, last_in, last_out):
    """Cycles a run occupies the engine: from the first input beat accepted to the later of
    the last input beat's end and the last output beat taken, inclusive.

    With reuse R a beat holds the multipliers for R cycles (the engine takes the next at
    least R cycles later), so the last input beat ends R - 1 cycles after it is accepted:
    then N beats take at least N * R cycles, the ideal, and efficiency never exceeds 1.
    """
    return max(last_in + getattr(engine, "reuse", 1) - 1, last_out) - first_in + 1


@dataclass
class StreamResult:
    """What a simulated stream run produced and how long it took.

    Members
    -------
    outputs : ndarray of int64, (N, oh, ow, C*M)
        Raw output values, channels last.
    cycles : int
        From the first input beat accepted to the later of the last input beat accepted and
        the last output beat taken, both inclusive (``run_cycles``): the time the run
        occupies the engine, so the efficiency ``frames * beats * R / cycles`` is never above
        1, also when a frame's last outputs come before its last input beats (a stride past
        the last window).
    latency_cycles : int
        From the first input beat accepted to the first output beat taken.
    frames : int
    framing : list of str
        Output framing problems seen (tuser/tlast misplaced); empty when well formed.
    error : bool
        The engine's sticky error flag at the end.
    """

    outputs: np.ndarray
    cycles: int
    latency_cycles: int
    frames: int
    framing: list = field(default_factory=list)
    error: bool = False

    @classmethod
    def from_beats(cls, engine, frames, taken, flags, *, first_in, last_in, first_out,
                   last_out, error, cycles_run):
        """The result of a run that took the output beats ``taken`` with their (tuser,
        tlast) ``flags``; cycle numbers are those of the accepting clock edges."""
        spec = engine.spec
        out_groups = _out_groups(engine)
        expected = frames * spec.out_height * spec.out_width * out_groups
        if len(taken) < expected:
            raise RuntimeError(f"the engine produced {len(taken)} of {expected} output beats "
                               f"within {cycles_run} cycles")
        outputs = unpack_beats(taken, (frames, *spec.output_shape), engine.out_lanes,
                               engine.formats.output)
        return cls(outputs=outputs, cycles=run_cycles(engine, first_in, last_in, last_out),
                   latency_cycles=first_out - first_in + 1, frames=frames,
                   framing=output_framing(flags, spec.out_width * out_groups,
                                          expected // frames if frames else 1),
                   error=bool(error))


@contextmanager
def _wide_constants():
    """Amaranth's simulator writes its Python code with constants in decimal: a wide signal
    (the kernel of P*M lanes, kh*kw taps and 32-bit weights is over 14,000 bits) goes past
    Python's limit of 4300 digits for int-to-string conversion.  Lift it while simulating."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(limit)


def run_amaranth(engine, frames_raw, *, stall=0.0, seed=0, loads=None, load_beats=None,
                 max_cycles=None, core=False):
    """Drive ``engine`` with ``frames_raw`` (N, H, W, C raw ints) and collect its outputs.

    ``core``: drive a fresh ``engine.core()`` through its stream ports instead of the
    engine's AXI ports (the same beats, so the same results and cycles).

    ``stall`` is the probability, each cycle, that the source holds valid low and,
    independently, that the sink holds ready low.  ``loads`` maps a frame index to a
    ``(kernel_raw, bias_raw)`` pair loaded through the weight port just before that frame;
    ``load_beats`` maps a frame index to the weight port's beats, ``(value, last)`` pairs,
    sent as they are (malformed loads) before that frame and its ``loads``.
    """
    spec, lanes = engine.spec, engine.lanes
    frames_raw = np.asarray(frames_raw, dtype=np.int64)
    count = len(frames_raw)
    in_beats = [pack_beats(frame[None], lanes, engine.formats.input.width)
                for frame in frames_raw]
    groups = spec.channels // lanes
    beats_per_frame = spec.height * spec.width * groups
    out_per_frame = spec.out_height * spec.out_width * _out_groups(engine)
    load_values = {k: list(beats) for k, beats in (load_beats or {}).items()}
    for k, (kernel, bias) in (loads or {}).items():
        values = weight_load_values(spec, kernel, bias, load_width(engine))
        load_values.setdefault(k, []).extend(
            (value, n == len(values) - 1) for n, value in enumerate(values))
    if max_cycles is None:
        # reuse R: the engine takes one beat every R cycles
        max_cycles = cycle_budget(count * beats_per_frame * engine.reuse,
                                  sum(map(len, load_values.values())), stall, engine.latency,
                                  beats_per_frame * engine.reuse)
    rng = np.random.default_rng(seed)
    state = {"taken": [], "flags": [], "first_in": None, "last_in": None, "first_out": None,
             "last_out": None, "error": False}

    dut = engine.core() if core else engine
    ports = _Ports.of_core(dut) if core else _Ports.of_top(dut)
    weight_port = ports.w_value is not None

    async def bench(ctx):
        frame, beat, load_pos, cycle = 0, 0, 0, 0
        expected = count * out_per_frame
        # until every input beat is in too: the last outputs may come before the last inputs
        while (len(state["taken"]) < expected or frame < count) and cycle < max_cycles:
            loading = frame < count and beat == 0 and frame in load_values and \
                load_pos < len(load_values[frame])
            offer = frame < count and not loading and rng.random() >= stall
            offer_w = loading and rng.random() >= stall
            ready = rng.random() >= stall
            if offer:
                ctx.set(ports.i_data, in_beats[frame][beat])
                ctx.set(ports.i_first, beat == 0)
                ctx.set(ports.i_last, (beat + 1) % (spec.width * groups) == 0)
            ctx.set(ports.i_valid, offer)
            if weight_port:
                values = load_values.get(frame, [])
                if offer_w:
                    ctx.set(ports.w_value, values[load_pos][0])
                    ctx.set(ports.w_last, values[load_pos][1])
                ctx.set(ports.w_valid, offer_w)
            ctx.set(ports.o_ready, ready)
            sampled = await ctx.tick().sample(
                ports.i_ready, ports.o_valid, ports.o_data, ports.o_first, ports.o_last,
                *([ports.w_ready] if weight_port else []))
            i_ready, o_valid, o_data, o_first, o_last = sampled[2:7]
            if offer and i_ready:
                if state["first_in"] is None:
                    state["first_in"] = cycle
                state["last_in"] = cycle
                beat += 1
                if beat == beats_per_frame:
                    frame, beat, load_pos = frame + 1, 0, 0
            if offer_w and sampled[7]:
                load_pos += 1
            if ready and o_valid:
                if state["first_out"] is None:
                    state["first_out"] = cycle
                state["last_out"] = cycle
                state["taken"].append(o_data)
                state["flags"].append((o_first, o_last))
            cycle += 1
        state["error"] = bool(ctx.get(ports.error))

    with _wide_constants():
        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.run()

    return StreamResult.from_beats(
        engine, count, state["taken"], state["flags"], first_in=state["first_in"],
        last_in=state["last_in"], first_out=state["first_out"], last_out=state["last_out"],
        error=state["error"], cycles_run=max_cycles)


def _out_groups(engine):
    """Output beats per output pixel: C/P, or a separable block's F/Q."""
    return getattr(engine, "out_groups", engine.spec.channels // engine.lanes)


def output_framing(flags, row_beats, frame_beats):
    """Each output beat's (first, last) against where it sits in its frame of
    ``frame_beats`` beats, rows of ``row_beats``: the problems seen (empty when well
    formed)."""
    problems = []
    for n, (first, last) in enumerate(flags):
        k = n % frame_beats
        if bool(first) != (k == 0):
            problems.append(f"beat {n}: tuser={first}, expected {int(k == 0)}")
        if bool(last) != ((k + 1) % row_beats == 0):
            problems.append(f"beat {n}: tlast={last}, expected {int((k + 1) % row_beats == 0)}")
    return problems
