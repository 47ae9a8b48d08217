"""The MAC array: exact sums of products plus bias, with the documented latency."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from dwconv.hw.mac import MacArray, signed_digits


def stream_through(mac, x, w=None, b=None):
    """Feed x[n] (and w[n]) on cycle n and b[n] ``bias_delay`` cycles later (a constant b is
    set once); return ``acc`` for every n, read ``latency`` cycles after its inputs."""
    cycles, taps = x.shape
    got = []

    async def bench(ctx):
        if np.ndim(b) == 0:
            ctx.set(mac.b, int(b))
        for n in range(cycles + mac.latency):
            if n < cycles:
                for t in range(taps):
                    ctx.set(mac.x[t], int(x[n, t]))
                    if w is not None:
                        ctx.set(mac.w[t], int(w[n, t]))
            # the bias joins at the last adder, bias_delay cycles after its products
            if np.ndim(b) == 1 and 0 <= n - mac.bias_delay < cycles:
                ctx.set(mac.b, int(b[n - mac.bias_delay]))
            await ctx.tick()
            if n >= mac.latency - 1 and len(got) < cycles:
                got.append(ctx.get(mac.acc))

    sim = Simulator(mac)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got)


@pytest.mark.parametrize("taps", [1, 2, 3, 9, 15, 49])
def test_sum_of_products(taps):
    rng = np.random.default_rng(taps)
    mac = MacArray(taps, signed(8), signed(6), signed(10), 24, product_shift=2, bias_shift=3)
    cycles = 20
    x = rng.integers(-128, 128, size=(cycles, taps))
    w = rng.integers(-32, 32, size=(cycles, taps))
    b = rng.integers(-512, 512, size=cycles)
    expected = ((x * w).sum(axis=1) << 2) + (b << 3)
    np.testing.assert_array_equal(stream_through(mac, x, w, b), expected)

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


@pytest.mark.parametrize("value", [0, 1, -1, 3, 7, -7, 85, -128, 127, 1000, -12345])
def test_signed_digits(value):
    digits = signed_digits(value)
    assert sum(d << s for s, d in digits) == value
    shifts = [s for s, _ in digits]
    assert all(b - a >= 2 for a, b in zip(shifts, shifts[1:]))   # no two adjacent


def test_constant_weights_become_shift_and_add():
    rng = np.random.default_rng(11)
    weights = [0, 1, -1, 37, -128, 127, -5, 64, 90]
    mac = MacArray(9, signed(8), signed(8), signed(8), 24, product_shift=1, bias_shift=2,
                   weights=weights)
    mac.pad_to(mac.latency + 2)
    cycles = 30
    x = rng.integers(-128, 128, size=(cycles, 9))
    expected = ((x * np.array(weights)).sum(axis=1) << 1) + (-77 << 2)
    np.testing.assert_array_equal(stream_through(mac, x, b=-77), expected)
