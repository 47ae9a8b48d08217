"""Malformed input streams in Amaranth's simulator: flagged, never a hang, output framed,
the next well-formed frame bit-exact (cases and checks in malformed_streams.py)."""

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from support.engine_cases import make_case
from support.malformed_streams import CASES, Beat, Gap, Reset, build_case, check_answer

LAYERS = {
    "same_P2_M2": dict(shape=(4, 5, 4), kernel=(3, 3), padding="same", multiplier=2, lanes=2),
    "valid_stride2_P1": dict(shape=(5, 6, 2), kernel=(3, 3), strides=2, lanes=1,
                             formats="trn_wrap"),
}


def play(engine, events, *, stall, seed):
    """Play ``events`` into the engine (sink ready with probability 1 - ``stall``).

    Returns (output beats per segment between resets, sticky error at the end, whether
    every offered beat was taken within its bound).
    """
    spec = engine.spec
    frame_beats = spec.height * spec.width * engine.groups
    # a beat may wait for a whole frame's flush and pipeline, slowed by the sink's stalls
    wait_bound = int((frame_beats + engine.latency + engine.queue_depth) * 4 / (1 - stall))
    m = Module()
    m.domains.sync = domain = ClockDomain()
    m.submodules.engine = engine
    rng = np.random.default_rng(seed)
    segments = [[]]
    state = {"done": False, "accepted": True, "error": None}

    async def source(ctx):
        for event in events:
            if isinstance(event, Beat):
                ctx.set(engine.s_axis_tdata, event.data)
                ctx.set(engine.s_axis_tuser, event.user)
                ctx.set(engine.s_axis_tlast, event.last)
                ctx.set(engine.s_axis_tvalid, 1)
                for _ in range(wait_bound):
                    _, _, ready = await ctx.tick().sample(engine.s_axis_tready)
                    if ready:
                        break
                else:
                    state["accepted"] = False
                    break
                ctx.set(engine.s_axis_tvalid, 0)
            elif isinstance(event, Gap):
                await ctx.tick().repeat(event.cycles)
            elif isinstance(event, Reset):
                ctx.set(domain.rst, 1)
                await ctx.tick()
                ctx.set(domain.rst, 0)
                segments.append([])
        # let every output drain, then some more: no beat may come after the last frame
        await ctx.tick().repeat(wait_bound + 50)
        state["error"] = ctx.get(engine.error)

    async def sink(ctx):
        while True:
            ready = rng.random() >= stall
            ctx.set(engine.m_axis_tready, ready)
            _, _, valid, data, user, last, rst = await ctx.tick().sample(
                engine.m_axis_tvalid, engine.m_axis_tdata, engine.m_axis_tuser,
                engine.m_axis_tlast, domain.rst)
            if ready and valid and not rst:
                segments[-1].append((data, user, last))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink, background=True)
    sim.run()
    return segments, state["error"], state["accepted"]


@pytest.mark.parametrize("stall", [0.0, 0.3])
@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("name", list(CASES))
def test_malformed_stream(name, layer, stall):
    case_seed = sorted(CASES).index(name) * 7 + sorted(LAYERS).index(layer)
    built = make_case(**LAYERS[layer], seed=case_seed)
    case = build_case(name, built.engine, np.random.default_rng(case_seed))
    outputs, error, accepted = play(built.engine, case.events, stall=stall, seed=case_seed)
    check_answer(case, built.engine, outputs, built.expected(case.frames), error, accepted)
    if case.truncated and stall == 0.0:
        # with the sink always ready the first frame drained before the reset
        assert len(outputs[0]) >= built.engine.spec.out_height * built.engine.spec.out_width \
            * built.engine.groups
