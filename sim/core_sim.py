"""Runs an engine's stream-native core (``engine.core()``: ports ``i``, ``o``, ``w``) in
Amaranth's simulator: frames back to back, random stalls, weight loads.

The same contract as ``amaranth_sim.run_amaranth`` on the AXI4-Stream top, for any engine
with a ``core()``, also one whose output beats per pixel differ from its input's (a
separable block's F/Q, ``engine.out_groups``).
"""

import numpy as np
from amaranth.sim import Simulator

from .amaranth_sim import StreamResult, _wide_constants, run_cycles
from .beats import pack_beats, unpack_beats, weight_load_values
from ..flows.build_cache import cycle_budget

__all__ = ["run_core", "output_framing"]


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


def run_core(engine, frames_raw, *, stall=0.0, seed=0, loads=None):
    """Drive a fresh ``engine.core()`` with ``frames_raw`` (N, H, W, C raw ints).

    ``stall`` is the probability, each cycle, that the source holds valid low and,
    independently, that the sink holds ready low.  ``loads`` maps a frame index to
    ``(kernel_raw, bias_raw)`` (a separable block's: ``(engine.load_values(...), ())``),
    sent through ``w`` after the previous frame's beats and before that frame's first.
    Returns a ``StreamResult``; cycles as ``amaranth_sim.run_cycles`` counts them.
    """
    if loads and getattr(engine, "weights", "const") != "port":
        raise ValueError("weight loads need an engine built with weights='port'")
    core = engine.core()
    spec, lanes = engine.spec, engine.lanes
    frames_raw = np.asarray(frames_raw, dtype=np.int64)
    count = len(frames_raw)
    groups = spec.channels // lanes
    out_groups = getattr(engine, "out_groups", groups)
    row_beats, frame_beats = spec.width * groups, spec.height * spec.width * groups
    out_row_beats = spec.out_width * out_groups
    out_frame_beats = spec.out_height * out_row_beats
    in_beats = [pack_beats(frame[None], lanes, engine.formats.input.width)
                for frame in frames_raw]
    load_width = (getattr(engine, "load_width", None) or engine.store.load_width) if loads \
        else None
    load_values = {k: weight_load_values(spec, kernel, bias, load_width)
                   for k, (kernel, bias) in (loads or {}).items()}
    reuse = getattr(engine, "reuse", 1)
    max_cycles = cycle_budget(count * frame_beats * reuse,
                              sum(map(len, load_values.values())), stall, engine.latency,
                              frame_beats * reuse)
    rng = np.random.default_rng(seed)
    state = {"taken": [], "flags": [], "first_in": None, "last_in": None, "first_out": None,
             "last_out": None, "error": False}
    i_data, o_data = core.i.payload.data.as_value(), core.o.payload.data.as_value()

    async def bench(ctx):
        frame, beat, load_pos, cycle = 0, 0, 0, 0
        expected = count * out_frame_beats
        # until every input beat is in too: the last outputs may come before the last inputs
        while (len(state["taken"]) < expected or frame < count) and cycle < max_cycles:
            load = load_values.get(frame, []) if beat == 0 else []
            loading = frame < count and load_pos < len(load)
            offer = frame < count and not loading and rng.random() >= stall
            offer_w = loading and rng.random() >= stall
            ready = rng.random() >= stall
            if offer:
                ctx.set(i_data, in_beats[frame][beat])
                ctx.set(core.i.payload.first, beat == 0)
                ctx.set(core.i.payload.last, (beat + 1) % row_beats == 0)
            ctx.set(core.i.valid, offer)
            if "w" in core.signature.members:
                if offer_w:
                    ctx.set(core.w.payload.value, load[load_pos])
                    ctx.set(core.w.payload.last, load_pos == len(load) - 1)
                ctx.set(core.w.valid, offer_w)
            ctx.set(core.o.ready, ready)
            sampled = await ctx.tick().sample(
                core.i.ready, core.o.valid, o_data, core.o.payload.first, core.o.payload.last,
                *([core.w.ready] if "w" in core.signature.members else []))
            i_ready, o_valid, data, first, last = sampled[2:7]
            if offer and i_ready:
                if state["first_in"] is None:
                    state["first_in"] = cycle
                state["last_in"] = cycle
                beat += 1
                if beat == frame_beats:
                    frame, beat, load_pos = frame + 1, 0, 0
            if offer_w and sampled[7]:
                load_pos += 1
            if ready and o_valid:
                if state["first_out"] is None:
                    state["first_out"] = cycle
                state["last_out"] = cycle
                state["taken"].append(data)
                state["flags"].append((first, last))
            cycle += 1
        state["error"] = bool(ctx.get(core.error))

    with _wide_constants():        # as run_amaranth: wide weight ports in decimal
        sim = Simulator(core)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.run()

    taken = state["taken"]
    if len(taken) < count * out_frame_beats:
        raise RuntimeError(f"the core produced {len(taken)} of {count * out_frame_beats} "
                           f"output beats within {max_cycles} cycles")
    first_in = state["first_in"]
    return StreamResult(
        outputs=unpack_beats(taken, (count, *spec.output_shape), engine.out_lanes,
                             engine.formats.output),
        cycles=run_cycles(engine, first_in, state["last_in"], state["last_out"]),
        latency_cycles=state["first_out"] - first_in + 1, frames=count,
        framing=output_framing(state["flags"], out_row_beats, out_frame_beats),
        error=state["error"])
