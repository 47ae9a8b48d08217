"""The credit counter: ``has_credit`` is "credits >= 2", and with shifts decided on it and
counted a cycle later (as the core does) a queue never holds more than its depth."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from dwconv.hw.credits import credit_counter


class Credits(wiring.Component):
    shift: In(1)
    fires: In(1)
    taken: In(1)
    has_credit: Out(1)

    def __init__(self, depth):
        self.depth = depth
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.has_credit.eq(credit_counter(m, self.depth, shift=self.shift,
                                                      fires=self.fires, taken=self.taken).has_credit)
        return m


@pytest.mark.parametrize("depth,seed", [(4, 0), (8, 1), (16, 2), (8, 3)])
def test_has_credit_is_two_credits_and_the_queue_never_overflows(depth, seed):
    dut = Credits(depth)
    rng = random.Random(seed)
    seen = {"low": 0, "high": 0}

    async def bench(ctx):
        credits, refund, pop = depth, 0, 0     # the counter's definition, step by step
        held = 0                               # places promised: in the queue or due
        decided = 0                            # the counter sees a shift a cycle late
        for _ in range(600):
            has_credit = ctx.get(dut.has_credit)
            assert has_credit == (credits >= 2)
            seen["high" if has_credit else "low"] += 1
            # the core's rule: a shift is decided only with credit, and counted a cycle
            # later; a beat is taken only if one is held
            shift, decided = decided, int(has_credit and rng.random() < 0.8)
            fires = int(rng.random() < 0.6)
            taken = int(held > 0 and rng.random() < 0.4)
            ctx.set(dut.shift, shift)
            ctx.set(dut.fires, fires)
            ctx.set(dut.taken, taken)
            await ctx.tick()
            held += (shift & fires) - taken
            credits, refund, pop = credits - shift + refund + pop, shift & (1 - fires), taken
            assert credits >= 0 and held + credits + refund + pop == depth

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["low"] > 20 and seen["high"] > 20     # both sides of the condition met
