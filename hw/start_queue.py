"""The start queue: frame starts waiting for the scanner, in a few registers."""

from amaranth.hdl import Module, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StartQueue"]


class StartQueue(wiring.Component):
    """A first-word-fall-through queue of a few entries, with no adder anywhere.

    Entries sit in registers with a full flag each; the write and read positions are
    one-hot rings that rotate.  So a read or a write only enables registers and sets or
    clears one flag: the scanner's read (the shift decision's last step) reaches no carry
    chain (a FIFO's level counter behind it limited the clock).

    Parameters
    ----------
    shape : ShapeLike
        Payload of an entry.
    depth : int
        Entries, at least 2.

    Members
    -------
    i : In(stream.Signature(shape, always_ready=True))
        Writes; the writer checks ``room`` first (a write to a full queue is lost).
    o : Out(stream.Signature(shape))
    room : Out(1)
        At least two entries are free.
    """

    def __new__(cls, shape, depth):
        # checked before the object exists, so a refused queue is no unused elaboratable
        if depth < 2:
            raise ValueError(f"depth must be at least 2, not {depth}")
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, shape, depth):
        self.depth = depth
        super().__init__({"i": In(stream.Signature(shape, always_ready=True)),
                          "o": Out(stream.Signature(shape)), "room": Out(1)})

    def elaborate(self, platform):
        m = Module()
        width = Value.cast(self.i.payload).shape().width
        entries = [Signal(width, name=f"entry{n}") for n in range(self.depth)]
        full = Signal(self.depth)
        write_at = Signal(self.depth, init=1)     # one-hot
        read_at = Signal(self.depth, init=1)      # one-hot
        write, read = self.i.valid, self.o.valid & self.o.ready
        with m.If(write):
            m.d.sync += write_at.eq(write_at.rotate_left(1))
        with m.If(read):
            m.d.sync += read_at.eq(read_at.rotate_left(1))
        picked = 0
        for n, entry in enumerate(entries):
            with m.If(write & write_at[n]):
                m.d.sync += entry.eq(self.i.payload)
            m.d.sync += full[n].eq((full[n] & ~(read & read_at[n])) | (write & write_at[n]))
            picked = picked | (entry & read_at[n].replicate(width))   # AND-OR, no decoder
        m.d.comb += [
            self.o.valid.eq((full & read_at).any()),
            self.o.payload.eq(picked),
            self.room.eq(sum(~full[n] for n in range(self.depth)) >= 2),
        ]
        return m
