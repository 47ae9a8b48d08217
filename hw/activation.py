"""The activation stage: linear, relu or relu6 on the accumulator."""

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Activation"]


class Activation(wiring.Component):
    """relu: max(x, 0); relu6: clamp to [0, 6]; linear: pass.  One register stage.

    Parameters
    ----------
    kind : "linear", "relu" or "relu6"
    shape : Shape
        Of the accumulator value.
    frac : int
        Fraction bits of the value (where 6.0 lies).

    Members
    -------
    i : In(shape)
    o : Out(shape), ``latency`` cycles after ``i``
        From a register without reset: flags beside the datapath say when it is valid.
    """

    latency = 1

    def __new__(cls, kind, shape, frac):
        # checked before the object exists, so a refused stage is no unused elaboratable
        if kind not in ("linear", "relu", "relu6"):
            raise ValueError(f"activation must be linear, relu or relu6, not {kind!r}")
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, kind, shape, frac):
        self.kind, self.shape, self.frac = kind, Shape.cast(shape), frac
        super().__init__({"i": In(self.shape), "o": Out(self.shape)})

    def elaborate(self, platform):
        m = Module()
        value = self.i
        if self.kind != "linear" and self.shape.signed:
            value = Mux(value < 0, 0, value)
        if self.kind == "relu6":
            six = 6 << self.frac
            top = 2 ** (self.shape.width - (1 if self.shape.signed else 0)) - 1
            if six <= top:  # otherwise the value can never reach 6
                value = Mux(value > six, six, value)
        value_q = Signal(self.shape, reset_less=True)
        m.d.sync += value_q.eq(value)
        m.d.comb += self.o.eq(value_q)
        return m
