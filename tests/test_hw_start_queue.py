"""The start queue against a list: order, valid, payload and room on every cycle."""

import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings, strategies as st

from dwconv.hw.start_queue import REGISTER_DEPTH, StartQueue


def check_queue(depth, writes, reads):
    """Drive the queue with the writer's rule (write only when ``room`` was high: the
    engine registers it) and compare it with a Python list cycle by cycle."""
    dut = StartQueue(8, depth)
    mismatches = []

    async def bench(ctx):
        model = []
        for cycle, (write, read) in enumerate(zip(writes, reads)):
            room = ctx.get(dut.room)
            write = write and room
            value = (cycle * 37) % 256
            ctx.set(dut.i.valid, write)
            ctx.set(dut.i.payload, value)
            ctx.set(dut.o.ready, read)
            seen = (ctx.get(dut.o.valid), ctx.get(dut.o.payload) if model else None, room)
            expected = (bool(model), model[0] if model else None, depth - len(model) >= 2)
            if seen != expected:
                mismatches.append((cycle, seen, expected))
            if read and model:
                model.pop(0)
            if write:
                model.append(value)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return mismatches


def test_fills_to_room_and_drains_in_order():
    assert check_queue(3, [True] * 6 + [False] * 6, [False] * 6 + [True] * 6) == []


def test_a_write_and_a_read_in_the_same_cycle():
    assert check_queue(2, [True] * 20, [True] * 20) == []


@settings(max_examples=40, deadline=None)
@given(depth=st.integers(2, 5) | st.integers(REGISTER_DEPTH, REGISTER_DEPTH + 4),
       pattern=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=120))
def test_matches_a_list(depth, pattern):
    writes, reads = zip(*pattern)
    assert check_queue(depth, writes, reads) == []


@pytest.mark.parametrize("depth", [REGISTER_DEPTH + 1, 300])
def test_deep_queue_fills_and_drains(depth):
    """Deeper than REGISTER_DEPTH: the memory form, with the registers' behaviour."""
    pattern = [(True, False)] * (depth + 2) + [(True, True)] * 5 + [(False, True)] * (depth + 2)
    writes, reads = zip(*pattern)
    assert check_queue(depth, writes, reads) == []


def test_depth_below_two_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        StartQueue(8, 1)
