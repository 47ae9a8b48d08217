"""A stream driver for tests: beats in with random source pauses, beats out with random sink
backpressure, in Amaranth's simulator (async testbench).  Works on stream ports (``i``/``o``)
and on flat AXI4-Stream ports alike, through ``Ports``."""

from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator


@dataclass
class Ports:
    in_valid: object
    in_ready: object
    in_data: object
    in_first: object
    in_last: object
    out_valid: object
    out_ready: object
    out_data: object
    out_first: object
    out_last: object
    error: object
    # the weight port, if any: valid, ready, value, last
    load: tuple = None


def stream_ports(dut):
    load = None
    if getattr(dut, "weights", "const") == "port":
        load = (dut.load.valid, dut.load.ready, dut.load.payload.value, dut.load.payload.last)
    return Ports(dut.i.valid, dut.i.ready, dut.i.payload.data.as_value(), dut.i.payload.first,
                 dut.i.payload.last, dut.o.valid, dut.o.ready, dut.o.payload.data.as_value(),
                 dut.o.payload.first, dut.o.payload.last, dut.error, load)


def axi_ports(dut):
    load = None
    if getattr(dut, "weights", "const") == "port":
        load = (dut.w_axis_tvalid, dut.w_axis_tready, dut.w_axis_tdata, dut.w_axis_tlast)
    return Ports(dut.s_axis_tvalid, dut.s_axis_tready, dut.s_axis_tdata, dut.s_axis_tuser,
                 dut.s_axis_tlast, dut.m_axis_tvalid, dut.m_axis_tready, dut.m_axis_tdata,
                 dut.m_axis_tuser, dut.m_axis_tlast, dut.error, load)


@dataclass
class Run:
    taken: list = field(default_factory=list)     # (data, first, last) per output beat
    first_in: int = None
    last_in: int = None
    first_out: int = None
    last_out: int = None
    held: bool = True           # a payload offered and not taken stayed put, and valid
    error: bool = False

    @property
    def cycles(self):
        """First input beat taken to the later of the last input and output beats taken."""
        return max(self.last_in, self.last_out) - self.first_in + 1

    def data(self):
        return [beat[0] for beat in self.taken]

    def flags(self):
        return [(beat[1], beat[2]) for beat in self.taken]


def run_stream(dut, ports, beats, out_count, *, stall=0.0, seed=0, max_cycles=None,
               extra_cycles=0, loads=None, sink_stall=None):
    """Offer ``beats`` ((data, first, last) ints) in order; take beats until ``out_count``
    are taken (then ``extra_cycles`` more) or ``max_cycles`` pass.  ``loads`` maps an input
    beat index to weight port beats ((value, last) ints), all sent before that beat.
    ``stall`` is the chance of a source pause per cycle, ``sink_stall`` (default the same)
    that of the sink holding ready low."""
    rng = np.random.default_rng(seed)
    sink_stall = stall if sink_stall is None else sink_stall
    run = Run()
    loads = {k: list(v) for k, v in (loads or {}).items()}
    if max_cycles is None:
        max_cycles = int((len(beats) + out_count + sum(map(len, loads.values()))) * 8
                         / (1 - max(stall, sink_stall)) ** 2) + 500

    async def bench(ctx):
        sent, cycle, shown, after, loaded = 0, 0, None, 0, 0
        while cycle < max_cycles and after <= extra_cycles:
            pending = loads.get(sent, [])
            loading = loaded < len(pending)
            offer = sent < len(beats) and not loading and rng.random() >= stall
            offer_w = loading and rng.random() >= stall
            if ports.load is not None:
                if offer_w:
                    ctx.set(ports.load[2], pending[loaded][0])
                    ctx.set(ports.load[3], pending[loaded][1])
                ctx.set(ports.load[0], offer_w)
            ready = rng.random() >= sink_stall
            if offer:
                data, first, last = beats[sent]
                ctx.set(ports.in_data, data)
                ctx.set(ports.in_first, first)
                ctx.set(ports.in_last, last)
            ctx.set(ports.in_valid, offer)
            ctx.set(ports.out_ready, ready)
            w_ready = [] if ports.load is None else [ports.load[1]]
            _, _, in_ready, valid, data, first, last, *w_taken = await ctx.tick().sample(
                ports.in_ready, ports.out_valid, ports.out_data, ports.out_first,
                ports.out_last, *w_ready)
            if offer_w and w_taken[0]:
                loaded += 1
            if shown is not None and (not valid or (data, first, last) != shown):
                run.held = False
            shown = (data, first, last) if valid and not ready else None
            if offer and in_ready:
                run.first_in = cycle if run.first_in is None else run.first_in
                run.last_in = cycle
                sent, loaded = sent + 1, 0
            if valid and ready:
                run.first_out = cycle if run.first_out is None else run.first_out
                run.last_out = cycle
                run.taken.append((data, first, last))
            if len(run.taken) >= out_count:
                after += 1
            cycle += 1
        run.error = bool(ctx.get(ports.error))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return run


def pack(values, width):
    """Lane values (lane 0 first) to one int, lane 0 in the least significant bits."""
    word = 0
    for value in reversed(list(values)):
        word = (word << width) | (int(value) & ((1 << width) - 1))
    return word


def unpack(word, lanes, fmt):
    mask = (1 << fmt.width) - 1
    values = [(int(word) >> (n * fmt.width)) & mask for n in range(lanes)]
    if fmt.signed:
        values = [v - (1 << fmt.width) if v >> (fmt.width - 1) else v for v in values]
    return values


def frame_beats(frames, lanes, width):
    """(N, H, W, C) raw frames as stream beats: C/lanes per pixel, raster order, ``first``
    on a frame's first beat, ``last`` on each row's last."""
    frames = np.asarray(frames)
    n, h, w, c = frames.shape
    groups = c // lanes
    beats = []
    for frame in frames:
        for y in range(h):
            for x in range(w):
                for g in range(groups):
                    beats.append((pack(frame[y, x, g * lanes:(g + 1) * lanes], width),
                                  int(y == 0 and x == 0 and g == 0),
                                  int(x == w - 1 and g == groups - 1)))
    return beats


def expected_flags(frames, height, width, groups):
    """(first, last) of every output beat of ``frames`` frames of height x width pixels."""
    return [(int(y == 0 and x == 0 and g == 0), int(x == width - 1 and g == groups - 1))
            for _ in range(frames) for y in range(height) for x in range(width)
            for g in range(groups)]


def beats_to_frames(words, shape, lanes, fmt):
    """Output beat words back to raw (N, H, W, C) values."""
    values = [v for word in words for v in unpack(word, lanes, fmt)]
    return np.asarray(values, dtype=np.int64).reshape(shape)
