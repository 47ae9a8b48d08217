"""The input offset of the affine int8 datapath: ``x - zero_point`` per lane."""

from amaranth.hdl import Module, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["int8_beat", "InputOffset"]


def int8_beat(width, lanes):
    """A beat of ``lanes`` signed ``width``-bit values with the frame flags: ``data`` (an
    ArrayLayout, lane 0 in the least significant bits), ``first`` (start of frame), ``last``
    (end of row).  The same layout as ``hw.core.lane_beat`` of a signed format."""
    return data.StructLayout({"data": data.ArrayLayout(signed(width), lanes),
                              "first": 1, "last": 1})


class InputOffset(wiring.Component):
    """``x - zero_point`` per lane, one register stage, one beat per cycle.

    With the zero point taken off before the multipliers, padded taps (which the depthwise
    core masks to 0) add nothing, as TFLite's skipped taps.

    Parameters
    ----------
    lanes : int
    zero_point : int in [-128, 127]

    Members
    -------
    i : In(stream.Signature(int8_beat(8, lanes)))
    o : Out(stream.Signature(int8_beat(9, lanes)))
        Values in [-255, 255].
    """

    latency = 1

    def __init__(self, lanes, zero_point):
        # a component refused by its checks is not a forgotten one: no "never used" warning
        self._MustUse__silence = True
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        if not isinstance(zero_point, int) or not -128 <= zero_point <= 127:
            raise ValueError(f"zero_point must be an int8 value, not {zero_point!r}")
        self.lanes, self.zero_point = lanes, zero_point
        self._MustUse__silence = False
        super().__init__({"i": In(stream.Signature(int8_beat(8, lanes))),
                          "o": Out(stream.Signature(int8_beat(9, lanes)))})

    def elaborate(self, platform):
        m = Module()
        with m.If(self.i.valid & (~self.o.valid | self.o.ready)):
            m.d.comb += self.i.ready.eq(1)
            m.d.sync += [self.o.payload.first.eq(self.i.payload.first),
                         self.o.payload.last.eq(self.i.payload.last),
                         self.o.valid.eq(1)]
            for lane in range(self.lanes):
                m.d.sync += self.o.payload.data[lane].eq(
                    self.i.payload.data[lane] - self.zero_point)
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
