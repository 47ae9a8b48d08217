"""The folded MAC array: exact sums of products plus bias over R phases, fixed latency."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from dwconv.hw.folded_mac import FoldedMacArray, check_reuse


def fold_through(mac, x, w=None, b=None, *, gaps=None):
    """Present window n's x[n] (and w[n]) for the R cycles of its phases 0..R-1, then
    ``gaps[n]`` idle cycles (phase running on, inputs garbage); b[n] ``bias_delay`` cycles
    after phase 0.  Returns ``acc`` read ``latency`` cycles after each phase 0."""
    windows, taps = x.shape
    R = mac.reuse
    gaps = [0] * windows if gaps is None else gaps
    starts = np.cumsum([0] + [R + g for g in gaps[:-1]])
    end = starts[-1] + R + mac.latency + 1
    plan = {}   # cycle -> (window, phase)
    for n, start in enumerate(starts):
        for p in range(R):
            plan[start + p] = (n, p)
    bias_at = {start + mac.bias_delay: n for n, start in enumerate(starts)}
    read_at = {start + mac.latency: n for n, start in enumerate(starts)}
    got = [None] * windows
    rng = np.random.default_rng(99)

    async def bench(ctx):
        if np.ndim(b) == 0:
            ctx.set(mac.b, int(b))
        phase = 0
        for cycle in range(end):
            if cycle in plan:
                n, phase = plan[cycle]
                rows = (x[n], None if w is None else w[n])
            else:   # between windows: the phase runs on over garbage
                phase = (phase + 1) % R
                rows = (rng.integers(0, 2, taps), None if w is None else
                        rng.integers(-2, 2, taps))
            ctx.set(mac.phase, phase)
            for t in range(taps):
                ctx.set(mac.x[t], int(rows[0][t]))
                if w is not None:
                    ctx.set(mac.w[t], int(rows[1][t]))
            if np.ndim(b) == 1 and cycle in bias_at:
                ctx.set(mac.b, int(b[bias_at[cycle]]))
            elif np.ndim(b) == 1:
                ctx.set(mac.b, int(rng.integers(-4, 4)))
            if cycle in read_at:
                got[read_at[cycle]] = ctx.get(mac.acc)
            await ctx.tick()

    sim = Simulator(mac)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got)


@pytest.mark.parametrize("taps,reuse", [(1, 1), (2, 2), (9, 1), (9, 2), (9, 4), (9, 9),
                                        (15, 2), (15, 3), (15, 7), (25, 6)])
def test_sum_of_products(taps, reuse):
    rng = np.random.default_rng(taps * 100 + reuse)
    mac = FoldedMacArray(taps, reuse, signed(8), signed(6), signed(10), 26,
                         product_shift=2, bias_shift=3)
    windows = 12
    x = rng.integers(-128, 128, size=(windows, taps))
    w = rng.integers(-32, 32, size=(windows, taps))
    b = rng.integers(-512, 512, size=windows)
    gaps = rng.integers(0, 3, size=windows)
    expected = ((x * w).sum(axis=1) << 2) + (b << 3)
    np.testing.assert_array_equal(fold_through(mac, x, w, b, gaps=list(gaps)), expected)
    assert mac.multipliers == -(-taps // reuse)


@pytest.mark.parametrize("reuse", [1, 2, 5])
def test_constant_weights_and_unsigned_samples(reuse):
    rng = np.random.default_rng(reuse)
    weights = [-8, 7, 0, 1, -1, 5, 3, -6, 2]
    mac = FoldedMacArray(9, reuse, unsigned(6), signed(4), signed(5), 20, bias_shift=1,
                         weights=weights)
    x = rng.integers(0, 64, size=(10, 9))
    x[0] = 63     # the widest products, all at once
    expected = x @ np.array(weights) + (-7 << 1)
    np.testing.assert_array_equal(fold_through(mac, x, b=-7), expected)


def test_unsigned_times_unsigned_keeps_the_top_bit():
    mac = FoldedMacArray(4, 2, unsigned(4), unsigned(4), signed(2), 12)
    x = np.full((3, 4), 15)
    w = np.full((3, 4), 15)
    np.testing.assert_array_equal(fold_through(mac, x, w, b=0), [900] * 3)


def test_padded_latency():
    rng = np.random.default_rng(5)
    mac = FoldedMacArray(6, 3, signed(5), signed(5), signed(5), 16)
    natural = mac.latency
    mac.pad_to(natural + 3)
    x = rng.integers(-16, 16, size=(6, 6))
    w = rng.integers(-16, 16, size=(6, 6))
    b = rng.integers(-16, 16, size=6)
    np.testing.assert_array_equal(fold_through(mac, x, w, b), (x * w).sum(axis=1) + b)
    assert natural == FoldedMacArray.latency_of(6, 3)
    with pytest.raises(ValueError, match="cannot shorten"):
        mac.pad_to(natural - 1)


def test_latency_grows_by_the_phases():
    # one cycle more per phase, fewer tree levels with fewer multipliers
    assert FoldedMacArray.latency_of(9, 3) == FoldedMacArray.bias_delay_of(9, 3) + 3
    assert FoldedMacArray.bias_delay_of(16, 1) == FoldedMacArray.bias_delay_of(16, 2) + 1


@pytest.mark.parametrize("reuse", [0, -1, 10, 2.0, True, "2"])
def test_reuse_must_be_within_the_taps(reuse):
    with pytest.raises(ValueError, match="reuse must be a whole number from 1 to 9"):
        check_reuse(reuse, 9)
