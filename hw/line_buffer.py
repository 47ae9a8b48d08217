"""The line buffer: one tapped delay line holding the last rows of the input stream."""

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .delay import DelayLine

__all__ = ["LineBuffer", "tap_offsets", "storage_words"]


def tap_offsets(spec, lanes, extra=0):
    """``offsets[i][j]``: beats from the newest beat back to tap (i, j) of its window."""
    kh, kw = spec.kernel_size
    dh, dw = spec.dilation_rate
    groups = spec.channels // lanes
    return [[((kh - 1 - i) * dh * spec.width + (kw - 1 - j) * dw) * groups + extra
             for j in range(kw)] for i in range(kh)]


def storage_words(spec, lanes, extra=0):
    """Lane words a line buffer holds (the figure the storage minimum is stated in)."""
    return (max(max(row) for row in tap_offsets(spec, lanes, extra)) + 1) * lanes


class LineBuffer(wiring.Component):
    """Every kernel tap of the newest window, from a single chain of delay lines.

    The input stream is one long sequence of beats (P lanes each, C/P beats per pixel).  The
    tap (i, j) of a window whose newest pixel is the last beat shifted in lies a fixed
    number of beats back, ``((kh-1-i)*dh*W + (kw-1-j)*dw) * C/P``, whatever the window's
    position: so the buffer is a delay chain with kh*kw tap points, long stretches between
    them kept in memory (the row gaps, and the C/P-beat gaps between horizontal taps when
    C/P is large), short ones in registers.  It stores ``((kh-1)*dh*W + (kw-1)*dw)*C + P``
    words plus ``extra`` beats, the minimum for a window of this shape.  Windows that reach
    into padding or into a neighbouring row or frame are the scanner's business: it masks
    those taps.

    Parameters
    ----------
    spec : LayerSpec
    lanes : int
        P, channels per beat.
    lane_width : int
        Bits per lane.
    extra : int
        Beats of additional delay before every tap (time for the scanner to decide).
    target : None, "ecp5" or "ice40"
        Passed to the delay lines (block RAM instances on "ecp5"); the taps' timing is the
        same on every target.

    Members
    -------
    data : In(P * lane_width)
        The beat entering on a shift.
    shift : In(1)
    taps : Out(ArrayLayout(ArrayLayout(P * lane_width, kw), kh))
        ``taps[i][j]``, registered, valid the cycle after the shift that completes the window.
    """

    def __init__(self, spec, lanes, lane_width, *, extra=0, target=None):
        spec.check_lanes(lanes)
        self.spec, self.lanes, self.extra, self.target = spec, lanes, extra, target
        self.beat_width = lanes * lane_width
        kh, kw = spec.kernel_size
        self.offsets = tap_offsets(spec, lanes, extra)
        super().__init__({
            "data": In(self.beat_width), "shift": In(1),
            "taps": Out(data.ArrayLayout(data.ArrayLayout(self.beat_width, kw), kh))})

    @property
    def depth(self):
        """Beats stored, from the newest beat to the oldest tap."""
        return max(max(row) for row in self.offsets) + 1

    def elaborate(self, platform):
        m = Module()
        points = {}
        source, source_depth = self.data, 0
        # a tap at offset o is o + 1 shifts behind the input (the newest beat is 1 behind)
        for offset in sorted({o for row in self.offsets for o in row}):
            line = DelayLine(self.beat_width, offset + 1 - source_depth, target=self.target)
            m.submodules[f"delay_{offset}"] = line
            m.d.comb += [line.i.eq(source), line.shift.eq(self.shift)]
            points[offset] = source = line.o
            source_depth = offset + 1
        for i, row in enumerate(self.offsets):
            for j, offset in enumerate(row):
                m.d.comb += self.taps[i][j].eq(points[offset])
        return m
