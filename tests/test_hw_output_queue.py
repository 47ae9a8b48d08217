"""The output queue keeps order, loses nothing and holds its output until it is taken."""

import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings, strategies as st

from dwconv.hw.output_queue import OutputQueue


def run_queue(depth, write_pattern, ready_pattern):
    """Write 0, 1, 2... on the cycles ``write_pattern`` asks for, while fewer than depth + 1
    entries are outstanding (the engine's credits); take on the cycles of ``ready_pattern``.
    Returns the number written, the values taken (after a drain), and whether o held its
    payload while valid and not ready."""
    dut = OutputQueue(16, depth)
    taken, held, written = [], [], [0]
    cycles = len(write_pattern)

    async def bench(ctx):
        shown = None
        for cycle in range(cycles + 4 * depth):
            write = (cycle < cycles and write_pattern[cycle]
                     and written[0] - len(taken) <= depth)
            ready = ready_pattern[cycle % len(ready_pattern)] or cycle >= cycles
            ctx.set(dut.i.valid, write)
            ctx.set(dut.i.payload, written[0])
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if shown is not None:     # last cycle valid and not taken: must be unchanged
                held.append(valid and payload == shown)
            shown = payload if valid and not ready else None
            if valid and ready:
                taken.append(payload)
            written[0] += bool(write)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return written[0], taken, all(held)


@pytest.mark.parametrize("depth", [2, 4])
def test_full_rate_with_a_ready_sink(depth):
    """Writes every cycle, sink always ready: every entry comes out, in order."""
    written, taken, _ = run_queue(depth, [True] * 40, [True])
    assert written == 40 and taken == list(range(40))


def test_fills_to_depth_plus_one_while_the_sink_waits():
    """The sink ready only at the end: depth + 1 writes fit (depth in memory, one in the
    output register), and come out in order."""
    depth = 4
    written, taken, held = run_queue(depth, [True] * 12, [False])
    assert written == depth + 1 and taken == list(range(depth + 1))
    assert held


@settings(max_examples=40, deadline=None)
@given(depth=st.sampled_from([2, 4, 8]),
       writes=st.lists(st.booleans(), min_size=1, max_size=80),
       ready=st.lists(st.booleans(), min_size=1, max_size=17))
def test_random_writes_and_stalls(depth, writes, ready):
    written, taken, held = run_queue(depth, writes, ready)
    assert taken == list(range(written))
    assert held

