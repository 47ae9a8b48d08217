"""The output queue: holds fired outputs until the sink takes them; never refuses a write."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["OutputQueue"]


class OutputQueue(wiring.Component):
    """A first-word-fall-through queue whose writes are never refused.

    The engine's MAC pipeline cannot stall, so every output it fires has a place reserved
    here (credits, counted by the engine): a write needs no room check.  That keeps the
    write enable of the memory (as wide as an output beat, LUT RAM or block RAM) one
    flip-flop, with no logic in front of its wide fan-out (docs/timing-closure.md, item 6).
    Reads use a registered memory port, so block RAM can hold the queue.

    Parameters
    ----------
    shape : ShapeLike
        Payload of an entry.
    depth : int
        Entries in memory (a power of 2); one more waits in the output register.

    Members
    -------
    i : In(stream.Signature(shape, always_ready=True))
        Writes, at most ``depth`` + 1 more than the entries taken from ``o``.
    o : Out(stream.Signature(shape))
    """

    def __new__(cls, shape, depth):
        # checked before the object exists, so a refused queue is no unused elaboratable
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"depth must be a power of 2 of at least 2, not {depth}")
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, shape, depth):
        self.depth = depth
        super().__init__({"i": In(stream.Signature(shape, always_ready=True)),
                          "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.storage = storage = Memory(shape=self.i.payload.shape(),
                                                depth=self.depth, init=[])
        write = storage.write_port()
        read = storage.read_port()
        write_at = Signal(range(self.depth))
        read_at = Signal(range(self.depth))
        # The entries in memory, not yet read out, as a thermometer code a cycle late:
        # ``filled[k]`` is "more than k entries" before last cycle's write and read
        # (``written``, ``taken``: registered copies of them).  So its update is a shift
        # between flip-flops, and the read decision, which drives the wide read register's
        # enable, is a gate on flip-flops (docs/timing-closure.md, item 23).  ``plenty``
        # (filled[1] | written, registered with them) is "an entry is in memory now,
        # whatever last cycle's read did": the decision's inputs are three flip-flops from
        # here and the output side's two (item 32).
        filled = Signal(self.depth)
        written, taken, plenty = Signal(), Signal(), Signal()
        # for the invariants of flows/formal.py
        self.registers = dict(filled=filled, written=written, taken=taken,
                              write_at=write_at, read_at=read_at)
        stored = plenty | (filled[0] & ~taken)    # an entry is in memory now
        fetch = stored & (~self.o.valid | self.o.ready)
        m.d.comb += [write.en.eq(self.i.valid), write.addr.eq(write_at),
                     write.data.eq(self.i.payload),
                     read.en.eq(fetch), read.addr.eq(read_at),
                     self.o.payload.eq(read.data)]
        next_filled = Mux(written & ~taken, Cat(1, filled[:-1]),
                          Mux(~written & taken, filled[1:], filled))
        m.d.sync += [written.eq(self.i.valid), taken.eq(fetch), filled.eq(next_filled),
                     plenty.eq(next_filled[1] | self.i.valid)]
        with m.If(self.i.valid):
            m.d.sync += write_at.eq(write_at + 1)
        with m.If(fetch):
            m.d.sync += [read_at.eq(read_at + 1), self.o.valid.eq(1)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
