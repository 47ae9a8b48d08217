"""SkidBuffer on its own: every beat through once and in order under random valid/ready, the
stream hold rules on both sides, full rate, no combinational path from o.ready to i.ready,
and a bounded formal proof of the same."""

import shutil

import pytest
from amaranth.hdl import Assert, Assume, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In
from amaranth.sim import Simulator
from hypothesis import given, settings, strategies as st

from dwconv.hw.skid import SkidBuffer

WIDTH = 8


def run_skid(offers, readies, cycles):
    """Drive a SkidBuffer: the source offers beats 1, 2, 3... (a new one only after the last
    was taken) in the cycles where ``offers`` is set, the sink is ready where ``readies`` is.
    Returns (beats taken in order, hold-rule violations, beats accepted per cycle)."""
    dut = SkidBuffer(WIDTH)
    taken, violations, accepted = [], [], []

    async def bench(ctx):
        next_beat, offering = 1, False
        held = None                 # (payload) of an output beat offered and not taken
        for cycle in range(cycles):
            # the source keeps an offered beat until it is taken (AXI-Stream rule)
            offering = offering or offers[cycle % len(offers)]
            ready = readies[cycle % len(readies)]
            ctx.set(dut.i.valid, offering)
            ctx.set(dut.i.payload, next_beat % (1 << WIDTH))
            ctx.set(dut.o.ready, ready)
            _, _, i_ready, o_valid, o_payload = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.payload)
            if held is not None and (not o_valid or o_payload != held):
                violations.append(f"cycle {cycle}: output beat {held} changed or dropped")
            held = o_payload if o_valid and not ready else None
            if o_valid and ready:
                taken.append(o_payload)
            accepted.append(bool(offering and i_ready))
            if offering and i_ready:
                next_beat, offering = next_beat + 1, False

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return taken, violations, accepted


def test_full_rate_when_both_sides_are_always_ready():
    taken, violations, accepted = run_skid([True], [True], 50)
    assert violations == []
    assert taken == list(range(1, len(taken) + 1)) and len(taken) >= 48
    assert all(accepted)


def test_holds_two_beats_while_the_sink_waits():
    """The sink stops: the buffer takes two beats (one out, one spare), then i.ready drops
    and nothing is lost when the sink resumes."""
    readies = [True] * 5 + [False] * 6 + [True] * 20
    taken, violations, accepted = run_skid([True], readies, len(readies))
    assert violations == []
    assert taken == list(range(1, len(taken) + 1))
    # accepted while the sink waits: the beat it stopped on is in the output register,
    # one more fits the spare, then the input waits
    assert accepted[5:11].count(True) <= 2 and not any(accepted[7:11])


@settings(max_examples=60, deadline=None)
@given(offers=st.lists(st.booleans(), min_size=1, max_size=40),
       readies=st.lists(st.booleans(), min_size=1, max_size=40).filter(any))
def test_every_beat_once_and_in_order(offers, readies):
    cycles = 160
    taken, violations, accepted = run_skid(offers, readies, cycles)
    assert violations == []
    assert taken == list(range(1, len(taken) + 1))
    # nothing lost: each beat accepted is taken, or still inside (at most two)
    assert 0 <= sum(accepted) - len(taken) <= 2


def test_input_ready_does_not_follow_output_ready_in_the_same_cycle():
    """i.ready comes from a flip-flop: changing o.ready within a cycle leaves it alone."""
    dut = SkidBuffer(WIDTH)
    seen = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        for cycle in range(12):
            stalled = cycle < 6
            ctx.set(dut.o.ready, 0 if stalled else 1)
            before = ctx.get(dut.i.ready)
            ctx.set(dut.o.ready, 1 if stalled else 0)
            seen.append(before == ctx.get(dut.i.ready))
            ctx.set(dut.o.ready, 0 if stalled else 1)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert all(seen)


class SkidProperties(wiring.Component):
    """The SkidBuffer with a source that sends 0, 1, 2, ... (mod 2^WIDTH) and holds each beat
    until taken (assumed), and a free sink; asserted: each output beat is the next one
    expected (none lost, none repeated, in order), the output holds until taken, and at
    most two beats are inside."""

    def __init__(self):
        self.dut = SkidBuffer(WIDTH)
        super().__init__({"offer": In(1), "ready": In(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        sent = Signal(WIDTH)
        received = Signal(WIDTH)
        inside = Signal(range(4))
        waiting = Signal()          # a source beat offered and not taken last cycle
        out_waiting = Signal()
        out_held = Signal(WIDTH)
        m.d.comb += [dut.i.payload.eq(sent), dut.i.valid.eq(self.offer),
                     dut.o.ready.eq(self.ready)]
        with m.If(waiting):
            m.d.comb += Assume(self.offer)
        take_in = dut.i.valid & dut.i.ready
        take_out = dut.o.valid & dut.o.ready
        m.d.sync += [waiting.eq(dut.i.valid & ~dut.i.ready),
                     out_waiting.eq(dut.o.valid & ~dut.o.ready), out_held.eq(dut.o.payload),
                     inside.eq(inside + take_in - take_out)]
        with m.If(take_in):
            m.d.sync += sent.eq(sent + 1)
        with m.If(take_out):
            m.d.sync += received.eq(received + 1)
        with m.If(dut.o.valid):
            m.d.comb += Assert(dut.o.payload == received)
        with m.If(out_waiting):
            m.d.comb += Assert(dut.o.valid & (dut.o.payload == out_held))
        m.d.comb += Assert(inside <= 2)
        return m


@pytest.mark.skipif(shutil.which("yowasp-sby") is None, reason="yowasp-sby not installed")
def test_formal_beats_once_in_order_and_held(tmp_path):
    """Bounded proof from reset: 12 cycles cover every order of the buffer's two places
    filling and draining (all its states are reached within 3), several times over."""
    from dwconv.flows.formal import run_sby

    result = run_sby(SkidProperties(), mode="bmc", depth=12, workdir=tmp_path, timeout=300)
    assert result.passed, result.log
