"""A skid buffer: registers a stream in both directions without losing a cycle."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """Two registers between a source and a sink, so that neither side's ready or valid
    reaches the other combinationally, at one beat per cycle.

    ``i.ready`` comes straight from a flip-flop, and ``o.ready`` only enables the output
    registers: the engine's output queue and credit counter never see the sink's ready.

    Parameters
    ----------
    shape : ShapeLike
        The payload.

    Members
    -------
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))
    """

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        spare = Signal.like(self.i.payload, reset_less=True)
        spare_full = Signal()
        # ~o.valid, in its own register: the spare's flag is cleared by one gate on
        # flip-flops (o.ready | o_empty, with the reset), not behind the output registers'
        # wide shared enable (docs/timing-closure.md, item 30)
        o_empty = Signal(init=1)
        # for the invariants of flows/formal.py
        self.registers = dict(spare=spare, spare_full=spare_full, o_empty=o_empty)
        m.d.comb += self.i.ready.eq(~spare_full)
        with m.If(self.o.ready | ~self.o.valid):
            m.d.sync += [self.o.payload.eq(Mux(spare_full, spare, self.i.payload)),
                         self.o.valid.eq(spare_full | self.i.valid),
                         o_empty.eq(~spare_full & ~self.i.valid)]
        with m.If(self.o.ready | o_empty):
            m.d.sync += spare_full.eq(0)
        with m.Elif(self.i.valid & ~spare_full):
            m.d.sync += spare_full.eq(1)
        # the spare takes the input whenever it is empty (it is read only when full): its
        # wide enable is one flip-flop, not the handshake (docs/timing-closure.md, item 20)
        with m.If(~spare_full):
            m.d.sync += spare.eq(self.i.payload)
        return m
