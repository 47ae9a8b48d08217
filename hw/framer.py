"""The input framer: checks AXI4-Stream video framing and turns beats into shifts."""

import enum

from amaranth.hdl import Elaboratable, Module, Signal

__all__ = ["InputFramer"]


class _State(enum.Enum):
    IDLE = 0   # between frames: waiting for a start of frame
    RUN = 1    # inside a frame
    FILL = 2   # a malformed frame is completed with zero beats so its output keeps its shape


class InputFramer(Elaboratable):
    """Accepts H*W*C/P beats per frame and says when the line buffer shifts.

    A frame starts with ``tuser`` and has ``tlast`` on the last beat of each row.  On a
    framing error (start of frame inside a frame, ``tlast`` early or missing) the frame is
    completed with zero beats (its output frame keeps its shape, its values are not to be
    trusted) and ``error`` pulses; beats without ``tuser`` between frames are dropped with an
    ``error`` pulse.  The next start of frame is taken normally: the engine resynchronizes
    and never waits on a beat that will not come.  Between frames, when the scanner still
    has outputs waiting for padding beyond the last frame (``flush``), it shifts on its own.

    Parameters
    ----------
    spec : LayerSpec
    lanes : int
    beat_width : int

    Members
    -------
    tdata, tvalid, tuser, tlast : in; tready : out
        The input stream.
    allow : Signal(), in
        A shift may happen this cycle (room downstream for what it may fire).
    flush : Signal(), in
        Outputs are waiting for shifts after the end of the last frame.
    start_room : Signal(), in
        A frame may start (the queue of frame starts has room).
    shift : Signal(), out
    data : Signal(beat_width), out
        Beat shifted in (zero for fill and flush shifts).
    start : Signal(), out
        This shift is the first beat of a frame.
    error : Signal(), out
        Pulses on each framing error.
    """

    def __init__(self, spec, lanes, beat_width):
        spec.check_lanes(lanes)
        self.spec, self.groups = spec, spec.channels // lanes
        self.tdata = Signal(beat_width)
        self.tvalid = Signal()
        self.tready = Signal()
        self.tuser = Signal()
        self.tlast = Signal()
        self.allow = Signal()
        self.flush = Signal()
        self.start_room = Signal()
        self.shift = Signal()
        self.data = Signal(beat_width)
        self.start = Signal()
        self.error = Signal()

    def elaborate(self, platform):
        m = Module()
        spec, groups = self.spec, self.groups
        row = Signal(range(spec.height))
        col = Signal(range(spec.width))
        group = Signal(range(max(groups, 2)))
        state = Signal(_State)

        end_of_line = (col == spec.width - 1) & (group == groups - 1)
        end_of_frame = end_of_line & (row == spec.height - 1)

        advance = Signal()
        with m.If(advance):
            with m.If(group != groups - 1):
                m.d.sync += group.eq(group + 1)
            with m.Elif(col != spec.width - 1):
                m.d.sync += [group.eq(0), col.eq(col + 1)]
            with m.Elif(row != spec.height - 1):
                m.d.sync += [group.eq(0), col.eq(0), row.eq(row + 1)]
            with m.Else():
                m.d.sync += [group.eq(0), col.eq(0), row.eq(0)]

        def take_beat():
            """Shift the offered beat in and check its tlast against the position."""
            m.d.comb += [self.tready.eq(1), self.shift.eq(1), self.data.eq(self.tdata),
                         advance.eq(1)]
            with m.If(end_of_frame):
                m.d.comb += self.error.eq(~self.tlast)
                m.d.sync += state.eq(_State.IDLE)
            with m.Elif(self.tlast != end_of_line):
                m.d.comb += self.error.eq(1)
                m.d.sync += state.eq(_State.FILL)
            with m.Else():
                m.d.sync += state.eq(_State.RUN)

        with m.Switch(state):
            with m.Case(_State.IDLE):
                with m.If(self.tvalid & self.tuser):
                    with m.If(self.allow & self.start_room):
                        m.d.comb += self.start.eq(1)
                        take_beat()
                with m.Else():
                    with m.If(self.tvalid):   # a beat outside any frame: drop it
                        m.d.comb += [self.tready.eq(1), self.error.eq(1)]
                    with m.If(self.flush & self.allow):
                        m.d.comb += self.shift.eq(1)
            with m.Case(_State.RUN):
                with m.If(self.tvalid & self.tuser):   # start of frame inside a frame
                    m.d.comb += self.error.eq(1)
                    m.d.sync += state.eq(_State.FILL)
                with m.Elif(self.tvalid & self.allow):
                    take_beat()
            with m.Case(_State.FILL):
                with m.If(self.allow):
                    m.d.comb += [self.shift.eq(1), advance.eq(1)]
                    with m.If(end_of_frame):
                        m.d.sync += state.eq(_State.IDLE)
        return m
