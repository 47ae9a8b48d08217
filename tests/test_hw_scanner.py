"""The output scanner fires each output once, on the shift that completes its window."""

import pytest
from amaranth.sim import Simulator

from dwconv.golden.spec import LayerSpec
from dwconv.hw.scanner import OutputScanner


def expected_fires(spec, lanes, extra, starts):
    """(shift index, group, mask, first, last) of every output, from the definition."""
    kh, kw = spec.kernel_size
    sh, sw = spec.strides
    dh, dw = spec.dilation_rate
    groups = spec.channels // lanes
    fires = []
    for start in starts:
        for row in range(spec.out_height):
            for col in range(spec.out_width):
                top, left = row * sh - spec.pad_top, col * sw - spec.pad_left
                # the newest pixel the window needs, in a raster that runs past each row end
                newest = (top + (kh - 1) * dh) * spec.width + left + (kw - 1) * dw
                mask = sum(1 << (i * kw + j) for i in range(kh) for j in range(kw)
                           if 0 <= top + i * dh < spec.height and
                           0 <= left + j * dw < spec.width)
                for group in range(groups):
                    fires.append((start + newest * groups + group + extra, group, mask,
                                  row == col == group == 0,
                                  col == spec.out_width - 1 and group == groups - 1))
    return fires


@pytest.mark.parametrize("params,lanes", [
    (dict(input_shape=(5, 6, 2), kernel_size=(3, 3), padding="same"), 1),
    (dict(input_shape=(5, 6, 2), kernel_size=(3, 3), padding="same"), 2),
    (dict(input_shape=(7, 7, 2), kernel_size=(2, 4), strides=(2, 3), padding="same"), 1),
    (dict(input_shape=(7, 7, 2), kernel_size=(2, 4), strides=(2, 3), padding="same"), 2),
    (dict(input_shape=(8, 7, 1), kernel_size=(3, 2), dilation_rate=(2, 3)), 1),
    (dict(input_shape=(3, 2, 2), kernel_size=(5, 5), dilation_rate=2, padding="same"), 1),
    (dict(input_shape=(3, 2, 2), kernel_size=(5, 5), dilation_rate=2, padding="same"), 2),
])
def test_fires_match_definition(params, lanes):
    spec = LayerSpec(**params)
    extra = 2
    groups = spec.channels // lanes
    frame = spec.height * spec.width * groups
    starts = [0, frame, 2 * frame + 5]   # two frames back to back, a gap, a third one
    scanner = OutputScanner(spec, lanes, extra=extra, counter_width=16)
    last = starts[-1] + scanner.last_target + 1
    seen = []

    async def bench(ctx):
        queue = list(starts)
        for pos in range(last + 3):
            ctx.set(scanner.next_pos, pos + 1)
            ctx.set(scanner.shift, 1)
            pushed = queue and queue[0] <= pos
            ctx.set(scanner.start.valid, bool(pushed))
            ctx.set(scanner.start.payload.target,
                    (queue[0] + scanner.first_target) % (1 << 16) if pushed else 0)
            _, _, ready = await ctx.tick().sample(scanner.start.ready)
            if ready and pushed:
                queue.pop(0)
            if ctx.get(scanner.fire):
                seen.append((pos, ctx.get(scanner.group), ctx.get(scanner.mask),
                             bool(ctx.get(scanner.first)), bool(ctx.get(scanner.last))))

    sim = Simulator(scanner)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == expected_fires(spec, lanes, extra, starts)
