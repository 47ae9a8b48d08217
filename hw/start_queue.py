"""The start queue: frame starts waiting for the scanner, in registers or a memory."""

from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["StartQueue", "REGISTER_DEPTH"]

#: Queues of up to this many entries are kept in registers with one-hot positions (no carry
#: chain behind the scanner's read); deeper ones, which only layers whose windows span many
#: frames need, in a memory with counters, so their logic does not grow with the depth (the
#: registers' read and room logic are chains as long as the queue).
REGISTER_DEPTH = 8


class StartQueue(wiring.Component):
    """A first-word-fall-through queue.

    Up to ``REGISTER_DEPTH`` entries sit in registers with a full flag each; the write and
    read positions are one-hot rings that rotate.  So a read or a write only enables
    registers and sets or clears one flag: the scanner's read (the shift decision's last
    step) reaches no level counter (docs/timing-closure.md, item 21).  ``room`` is a count
    of the free entries (a popcount of the full flags, compared with 2): it is registered
    where it is used (the core's ``start_room``, item 12).  A deeper queue is a memory read
    without a register, with binary positions and a level count whose flags (``o.valid``,
    ``room``) are registered.  Both forms behave the same on every cycle: an entry written
    is readable from the next cycle on.

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
        if self.depth <= REGISTER_DEPTH:
            return self._registers()
        return self._memory()

    def _registers(self):
        m = Module()
        width = Value.cast(self.i.payload).shape().width
        entries = [Signal(width, name=f"entry{n}") for n in range(self.depth)]
        full = Signal(self.depth)
        write_at = Signal(self.depth, init=1)     # one-hot
        read_at = Signal(self.depth, init=1)      # one-hot
        # for the invariants of flows/formal.py
        self.registers = dict(full=full, write_at=write_at, read_at=read_at)
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

    def _memory(self):
        m = Module()
        depth = self.depth
        m.submodules.storage = storage = Memory(shape=self.i.payload.shape(), depth=depth,
                                                init=[])
        write_port = storage.write_port()
        read_port = storage.read_port(domain="comb")
        write_at = Signal(range(depth))
        read_at = Signal(range(depth))
        level = Signal(range(depth + 1))
        filled = Signal()                 # level != 0
        room = Signal(init=1)             # level <= depth - 2
        write, read = self.i.valid, self.o.valid & self.o.ready
        next_level = level + write - read
        m.d.comb += [
            write_port.en.eq(write), write_port.addr.eq(write_at),
            write_port.data.eq(self.i.payload),
            read_port.addr.eq(read_at),
            self.o.valid.eq(filled), self.o.payload.eq(read_port.data),
            self.room.eq(room),
        ]
        m.d.sync += [level.eq(next_level), filled.eq(next_level != 0),
                     room.eq(next_level <= depth - 2)]
        for position, moves in ((write_at, write), (read_at, read)):
            with m.If(moves):
                m.d.sync += position.eq(Mux(position == depth - 1, 0, position + 1))
        return m
