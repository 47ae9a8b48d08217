"""A position counter whose "at the last value" flag is a register."""

from amaranth.hdl import Signal

__all__ = ["position_counter"]


def position_counter(m, size, advance, name, restart=0):
    """A counter 0..size-1 in module ``m``: it moves on when ``advance`` is high, wraps after
    size-1, and goes back to 0 when ``restart`` is high (``restart`` wins).  Returns
    ``(value, at_end)``; ``at_end`` (value == size-1) is a register updated with the count,
    so logic behind it starts at a flip-flop (a compare of the counter there limited the
    clock)."""
    value = Signal(range(max(size, 2)), name=name)
    at_end = Signal(init=size == 1, name=f"{name}_at_end")
    with m.If(restart):
        m.d.sync += [value.eq(0), at_end.eq(size == 1)]
    with m.Elif(advance):
        with m.If(at_end):
            m.d.sync += [value.eq(0), at_end.eq(size == 1)]
        with m.Else():
            m.d.sync += [value.eq(value + 1), at_end.eq(value == size - 2)]
    return value, at_end
