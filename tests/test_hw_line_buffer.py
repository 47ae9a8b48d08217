"""Delay lines and the line buffer: each tap holds the beat shifted in a fixed time ago."""

import numpy as np
from hypothesis import assume, given, settings, strategies as st
import pytest
from amaranth.sim import Simulator

from dwconv.golden.spec import LayerSpec
from dwconv.hw.delay import MEMORY_THRESHOLD, DelayLine
from dwconv.hw.line_buffer import LineBuffer, storage_words


def drive_shifts(dut, data_signal, shift_signal, count, probes, seed):
    """Shift ``count`` random words in on random cycles; sample ``probes`` after each shift."""
    rng = np.random.default_rng(seed)
    words = [int(w) for w in rng.integers(0, 1 << 62, size=count)]
    words = [w & ((1 << len(data_signal)) - 1) for w in words]
    seen = []

    async def bench(ctx):
        n = 0
        while n < count:
            shift = bool(rng.random() < 0.7)
            ctx.set(shift_signal, shift)
            ctx.set(data_signal, words[n])
            await ctx.tick()
            if shift:
                n += 1
                seen.append([ctx.get(p) for p in probes])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return words, seen


@pytest.mark.parametrize("width", [16, 40])    # 40 bits: three memories of 13-14 bits
@pytest.mark.parametrize("depth", [1, 2, MEMORY_THRESHOLD, MEMORY_THRESHOLD + 1, 2, 17])
def test_delay_line(depth, width):
    line = DelayLine(width, depth)
    words, seen = drive_shifts(line, line.i, line.shift, 60, [line.o], seed=depth)
    for n, (out,) in enumerate(seen):
        assert out == (words[n - depth + 1] if n - depth + 1 >= 0 else 0) or n < depth - 1


@pytest.mark.parametrize("shape,kernel,dilation,lanes", [
    ((4, 5, 2), (3, 3), (1, 1), 2),
    ((4, 6, 4), (2, 3), (1, 2), 1),      # C/P = 4 beats per pixel: memory between taps
    ((6, 4, 2), (3, 2), (2, 1), 1),
    ((3, 2, 1), (3, 5), (1, 1), 1),      # kernel wider than a row: taps wrap into rows
])
def test_taps_hold_the_window(shape, kernel, dilation, lanes):
    spec = LayerSpec(input_shape=shape, kernel_size=kernel, dilation_rate=dilation,
                     padding="same")
    buffer = LineBuffer(spec, lanes, 16 // lanes, extra=2)
    kh, kw = kernel
    taps = [buffer.taps[i][j] for i in range(kh) for j in range(kw)]
    count = 2 * buffer.depth + 10
    words, seen = drive_shifts(buffer, buffer.data, buffer.shift, count, taps, seed=3)
    groups = shape[2] // lanes
    for n, values in enumerate(seen):
        for t, value in enumerate(values):
            i, j = divmod(t, kw)
            back = ((kh - 1 - i) * dilation[0] * shape[1] + (kw - 1 - j) * dilation[1]) \
                * groups + 2
            if n - back >= 0:
                assert value == words[n - back], (n, i, j)


def test_storage_is_the_minimum():
    """((kh-1)*dh*W + (kw-1)*dw)*C + P words, plus the scan delay's beats."""
    spec = LayerSpec(input_shape=(32, 32, 8), kernel_size=(3, 3), padding="same")
    for lanes in (1, 2, 8):
        assert storage_words(spec, lanes) == (2 * 32 + 2) * 8 + lanes


@settings(max_examples=40, deadline=None)
@given(width=st.integers(1, 40), depth=st.integers(1, 80),
       target=st.sampled_from([None, "ice40", "ecp5"]), seed=st.integers(0, 1000))
def test_delay_is_exact_on_every_target(width, depth, target, seed):
    """``o`` after shift n is the word of shift n - depth + 1, and zero before it: the same
    on every target (the memory's two read registers are part of the delay).  Block RAM
    lines (DP16KD instances) are left to test_sim_cells_dp16kd: Amaranth cannot simulate
    them; ECP5's LUT RAM lines are simulated here."""
    line = DelayLine(width, depth, target=target)
    if line.block_ram:
        _elaborated(line)
        assume(False)
    words, seen = drive_shifts(line, line.i, line.shift, depth + 12, [line.o], seed=seed)
    expected = [words[n - depth + 1] if n >= depth - 1 else 0 for n in range(len(seen))]
    assert [out for (out,) in seen] == expected


def _elaborated(component):
    """``component``, elaborated (so it is not left unused, which Amaranth warns about)."""
    from amaranth.hdl import Fragment
    return component, Fragment.get(component, None)


def test_block_ram_lines_on_ecp5_only():
    assert _elaborated(DelayLine(16, 130, target="ecp5"))[0].block_ram
    assert not _elaborated(DelayLine(16, 130))[0].block_ram
    assert not _elaborated(DelayLine(16, 130, target="ice40"))[0].block_ram
    assert not _elaborated(DelayLine(64, 34, target="ecp5"))[0].block_ram


def test_line_buffer_passes_the_target_to_its_lines():
    """56x56x144 at P=8: the two row gaps (1008 beats less the taps between) in DP16KD on
    ECP5; the same taps on every target."""
    spec = LayerSpec(input_shape=(56, 56, 144), kernel_size=(3, 3), padding="same")
    ecp5, fragment = _elaborated(LineBuffer(spec, 8, 8, extra=2, target="ecp5"))
    portable, _ = _elaborated(LineBuffer(spec, 8, 8, extra=2))
    assert ecp5.offsets == portable.offsets and ecp5.depth == portable.depth
    lines = [sub.origins[0] for sub, _, _ in fragment.subfragments]
    blocks = [line for line in lines if isinstance(line, DelayLine) and line.block_ram]
    assert [line.depth for line in blocks] == [56 * 18 - 2 * 18] * 2
