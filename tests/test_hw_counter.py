"""Position counters: the registered flags always equal the compares they stand for."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from dwconv.hw.counter import Position, position_counter


class Walk(wiring.Component):
    """A Position moved by ``step`` (only while not last) and ``first`` (wins)."""
    step: In(1)
    first: In(1)

    def __init__(self, size, penult):
        self.position = Position(size, "pos", last="last", penult="penult" if penult else None)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        with m.If(self.first):
            m.d.sync += self.position.first()
        with m.Elif(self.step & ~self.position.last):
            m.d.sync += self.position.step()
        return m


@pytest.mark.parametrize("size", [1, 2, 3, 5])
@pytest.mark.parametrize("penult", [False, True])
def test_position_flags_follow_the_value(size, penult):
    dut = Walk(size, penult)
    position = dut.position
    rng = random.Random(size * 2 + penult)
    reached = set()

    async def bench(ctx):
        value = 0
        for _ in range(200):
            assert ctx.get(position.value) == value
            assert ctx.get(position.last) == (value == size - 1)
            if penult:
                assert ctx.get(position.penult) == (value == size - 2)
            reached.add(value)
            first, step = rng.random() < 0.1, rng.random() < 0.7
            ctx.set(dut.first, first)
            ctx.set(dut.step, step)
            await ctx.tick()
            value = 0 if first else value + 1 if step and value < size - 1 else value

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert reached == set(range(size))


class Counter(wiring.Component):
    advance: In(1)
    restart: In(1)
    value: Out(3)
    at_end: Out(1)

    def __init__(self, size):
        self.size = size
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        value, at_end = position_counter(m, self.size, self.advance, "count", self.restart)
        m.d.comb += [self.value.eq(value), self.at_end.eq(at_end)]
        return m


@pytest.mark.parametrize("size", [1, 2, 5])
def test_position_counter_wraps_and_restarts(size):
    dut = Counter(size)
    rng = random.Random(size)

    async def bench(ctx):
        value = 0
        for _ in range(200):
            assert (ctx.get(dut.value), ctx.get(dut.at_end)) == (value, value == size - 1)
            restart, advance = rng.random() < 0.1, rng.random() < 0.7
            ctx.set(dut.restart, restart)
            ctx.set(dut.advance, advance)
            await ctx.tick()
            value = 0 if restart else (value + 1) % size if advance else value

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
