"""The MAC array: exact sums of products plus bias, with the documented latency."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from dwconv.hw.mac import MacArray


@pytest.mark.parametrize("taps", [1, 2, 3, 9, 15, 49])
def test_sum_of_products(taps):
    rng = np.random.default_rng(taps)
    mac = MacArray(taps, signed(8), signed(6), signed(10), 24, product_shift=2, bias_shift=3)
    cycles = 20
    x = rng.integers(-128, 128, size=(cycles, taps))
    w = rng.integers(-32, 32, size=(cycles, taps))
    b = rng.integers(-512, 512, size=cycles)
    expected = ((x * w).sum(axis=1) << 2) + (b << 3)
    got = []

    async def bench(ctx):
        for n in range(cycles + mac.latency):
            if n < cycles:
                for t in range(taps):
                    ctx.set(mac.x[t], int(x[n, t]))
                    ctx.set(mac.w[t], int(w[n, t]))
            # the bias joins at the last adder, bias_delay cycles after its products
            if 0 <= n - mac.bias_delay < cycles:
                ctx.set(mac.b, int(b[n - mac.bias_delay]))
            await ctx.tick()
            if n >= mac.latency - 1 and len(got) < cycles:
                got.append(ctx.get(mac.acc))

    sim = Simulator(mac)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    np.testing.assert_array_equal(np.array(got), expected)


def test_unsigned_inputs_times_signed_weights():
    mac = MacArray(2, unsigned(6), signed(4), signed(4), 16)
    got = []

    async def bench(ctx):
        ctx.set(mac.x[0], 63)
        ctx.set(mac.x[1], 40)
        ctx.set(mac.w[0], -8)
        ctx.set(mac.w[1], 7)
        ctx.set(mac.b, -3)
        await ctx.tick().repeat(mac.latency)
        got.append(ctx.get(mac.acc))

    sim = Simulator(mac)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == [63 * -8 + 40 * 7 - 3]
