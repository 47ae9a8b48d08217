"""The input framer: checks AXI4-Stream video framing and turns beats into shifts."""

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .counter import position_counter

__all__ = ["InputFramer", "beat_layout"]


def beat_layout(data_shape):
    """A video stream beat: ``data`` (a width, or a shape such as the lanes' ArrayLayout),
    and the AXI4-Stream video flags ``first`` (tuser: start of frame) and ``last`` (tlast:
    end of row)."""
    return data.StructLayout({"data": data_shape, "first": 1, "last": 1})


class InputFramer(wiring.Component):
    """Accepts H*W*C/P beats per frame and says when the line buffer shifts.

    A frame starts with ``tuser`` and has ``tlast`` on the last beat of each row.  On a
    framing error (start of frame inside a frame, ``tlast`` early or missing) the frame is
    completed with fill beats (its output frame keeps its shape, its values are not to be
    trusted) and ``error`` pulses; beats without ``tuser`` between frames are dropped with an
    ``error`` pulse.  The next start of frame is taken normally: the engine resynchronizes
    and never waits on a beat that will not come.  Between frames, when the scanner still
    has outputs waiting for padding beyond the last frame (``flush``), it shifts on its own.
    Fill and flush shifts carry whatever is on ``i.payload.data``: flush beats lie outside every
    frame (their taps are masked) and fill beats belong to a frame already flagged.

    The decision logic is kept shallow for the clock: the position in the frame is counted
    with registered end-of-group/column/row flags, and the state is one-hot.

    Parameters
    ----------
    spec : LayerSpec
    lanes : int
    data_shape : int or ShapeLike
        A beat's data: its width, or its layout (the core's lanes).

    Members
    -------
    i : In(stream.Signature(beat_layout(data_shape)))
        The input stream: ``data``, ``first`` (AXI4-Stream video's ``tuser``, start of
        frame) and ``last`` (``tlast``, end of row).
    allow : Signal(), in
        A shift may happen this cycle (room downstream for what it may fire).
    flush : Signal(), in
        Outputs are waiting for shifts after the end of the last frame.
    start_room : Signal(), in
        A frame may start (the queue of frame starts has room).
    shift : Signal(), out
    data : Signal(width of data_shape), out
        The beat on ``i`` (what a shift moves in).
    start : Signal(), out
        This shift is the first beat of a frame.
    error : Signal(), out
        Pulses on each framing error.
    """

    def __init__(self, spec, lanes, data_shape):
        spec.check_lanes(lanes)
        self.spec, self.groups = spec, spec.channels // lanes
        super().__init__({
            "i": In(stream.Signature(beat_layout(data_shape))),
            "allow": In(1), "flush": In(1), "start_room": In(1),
            "shift": Out(1), "data": Out(Shape.cast(data_shape).width), "start": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        spec = self.spec
        idle = Signal(init=1)   # between frames: waiting for a start of frame
        run = Signal()          # inside a frame
        fill = Signal()         # completing a malformed frame so its output keeps its shape

        advance = Signal()      # the position moves on: a beat taken or a fill shift
        # the beat in its line and in its frame, with registered "at the last" flags: each
        # end is one flip-flop in front of the state's update (docs/timing-closure.md,
        # item 31)
        line_beats = spec.width * self.groups
        line_beat, end_of_line = position_counter(m, line_beats, advance, "line_beat")
        frame_beat, end_of_frame = position_counter(m, spec.height * line_beats, advance,
                                                    "frame_beat")
        # for the invariants of flows/formal.py
        self.registers = dict(idle=idle, run=run, fill=fill, line_beat=line_beat,
                              end_of_line=end_of_line, frame_beat=frame_beat,
                              end_of_frame=end_of_frame)

        valid, first = self.i.valid, self.i.payload.first
        sof = valid & first
        take_first = idle & sof & self.allow & self.start_room
        take_next = run & valid & ~first & self.allow
        take = take_first | take_next
        fill_shift = fill & self.allow
        # the shift decision, two gates deep: what a frame in progress would do, what the
        # idle state would do (a start if a start of frame is on the input, else a flush
        # shift), then the state and ``allow`` pick; it drives the shift index and the line
        # buffer (docs/timing-closure.md, item 25)
        in_frame = fill | (run & valid & ~first)
        between = Mux(sof, self.start_room, self.flush)
        m.d.comb += [
            self.data.eq(self.i.payload.data),
            self.i.ready.eq(take | (idle & valid & ~first)),
            self.shift.eq(self.allow & (in_frame | (idle & between))),
            self.start.eq(take_first),
            advance.eq(take | fill_shift),
        ]

        misplaced_last = self.i.payload.last != end_of_line
        with m.If(take):
            with m.If(end_of_frame):
                m.d.sync += [idle.eq(1), run.eq(0), fill.eq(0)]
                m.d.comb += self.error.eq(~self.i.payload.last)
            with m.Elif(misplaced_last):   # tlast early or missing: finish the frame
                m.d.sync += [idle.eq(0), run.eq(0), fill.eq(1)]
                m.d.comb += self.error.eq(1)
            with m.Else():
                m.d.sync += [idle.eq(0), run.eq(1), fill.eq(0)]
        with m.Elif(run & sof):           # start of frame inside a frame
            m.d.sync += [run.eq(0), fill.eq(1)]
            m.d.comb += self.error.eq(1)
        with m.Elif(idle & valid & ~first):   # a beat outside any frame: dropped
            m.d.comb += self.error.eq(1)
        with m.Elif(fill_shift & end_of_frame):
            m.d.sync += [fill.eq(0), idle.eq(1)]
        return m
