"""The activation stage: linear, relu or relu6 on the accumulator."""

from amaranth.hdl import Elaboratable, Module, Mux, Signal

__all__ = ["Activation"]


class Activation(Elaboratable):
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
    i : Signal(shape), in
    o : Signal(shape), out, ``latency`` cycles after ``i``
    """

    latency = 1

    def __init__(self, kind, shape, frac):
        if kind not in ("linear", "relu", "relu6"):
            raise ValueError(f"activation must be linear, relu or relu6, not {kind!r}")
        self.kind, self.shape, self.frac = kind, shape, frac
        self.i = Signal(shape)
        self.o = Signal(shape, reset_less=True)

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
        m.d.sync += self.o.eq(value)
        return m
