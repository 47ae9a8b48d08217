"""Position counters whose "at the last value" flags are registers."""

from amaranth.hdl import Signal

__all__ = ["Position", "position_counter"]


class Position:
    """A position 0..size-1 with registered flags, for logic that must start at flip-flops.

    ``last`` (value == size-1) is a register updated with the value.  With ``penult`` (a
    name for it), ``value == size-2`` is a register too, and ``last`` is loaded from it on a
    step, so a step's flags need no compare of the value beside the one with size-3.
    Methods return the statements of a move; the caller places them in its domain and
    conditions.

    Parameters
    ----------
    size : int
        At least 1.
    name : str
        Name of the value's signal.
    last, penult : str, optional
        Names of the flags' signals (default ``{name}_at_end``; no ``penult`` flag).

    Members
    -------
    value, last : Signal
    penult : Signal or None
    """

    def __init__(self, size, name, *, last=None, penult=None):
        self.size = size
        self.value = Signal(range(max(size, 2)), name=name)    # never zero-width (lint)
        self.last = Signal(init=size == 1, name=last or f"{name}_at_end")
        self.penult = None if penult is None else Signal(init=size == 2, name=penult)

    def first(self):
        """Back to 0."""
        return [self.value.eq(0), self.last.eq(self.size == 1)] + (
            [] if self.penult is None else [self.penult.eq(self.size == 2)])

    def step(self):
        """On to value + 1; only while not ``last``."""
        if self.penult is None:
            return [self.value.eq(self.value + 1), self.last.eq(self.value == self.size - 2)]
        return [self.value.eq(self.value + 1), self.last.eq(self.penult),
                self.penult.eq(self.value == self.size - 3)]


def position_counter(m, size, advance, name, restart=0):
    """A counter 0..size-1 in module ``m``: it moves on when ``advance`` is high, wraps after
    size-1, and goes back to 0 when ``restart`` is high (``restart`` wins).  Returns
    ``(value, at_end)``; ``at_end`` (value == size-1) is a register updated with the count
    (``Position``), so logic behind it starts at a flip-flop."""
    position = Position(size, name)
    with m.If(restart):
        m.d.sync += position.first()
    with m.Elif(advance):
        with m.If(position.last):
            m.d.sync += position.first()
        with m.Else():
            m.d.sync += position.step()
    return position.value, position.last
