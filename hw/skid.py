"""A skid buffer: registers a stream in both directions without losing a cycle."""

from amaranth.hdl import Elaboratable, Module, Mux, Signal

__all__ = ["SkidBuffer"]


class SkidBuffer(Elaboratable):
    """Two registers between a source and a sink, so that neither side's ready or valid
    reaches the other combinationally, at one beat per cycle.

    ``i_ready`` comes straight from a flip-flop, and ``o_ready`` only enables the output
    registers: the engine's output FIFO and credit counter never see the sink's ready.

    Parameters
    ----------
    width : int

    Members
    -------
    i_data, i_valid : in; i_ready : out
    o_data, o_valid : out; o_ready : in
    """

    def __init__(self, width):
        self.i_data = Signal(width)
        self.i_valid = Signal()
        self.i_ready = Signal()
        self.o_data = Signal(width)
        self.o_valid = Signal()
        self.o_ready = Signal()

    def elaborate(self, platform):
        m = Module()
        spare = Signal.like(self.i_data)
        spare_full = Signal()
        m.d.comb += self.i_ready.eq(~spare_full)
        with m.If(self.o_ready | ~self.o_valid):
            m.d.sync += [self.o_data.eq(Mux(spare_full, spare, self.i_data)),
                         self.o_valid.eq(spare_full | self.i_valid),
                         spare_full.eq(0)]
        with m.Elif(self.i_valid & ~spare_full):
            m.d.sync += [spare.eq(self.i_data), spare_full.eq(1)]
        return m
