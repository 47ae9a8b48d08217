"""A delay line that moves only when told to: the building block of the line buffer."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["DelayLine", "MEMORY_THRESHOLD"]

#: Delays longer than this are held in memory (block RAM or LUT RAM), shorter ones in
#: flip-flops, where a memory would cost more than it saves.
MEMORY_THRESHOLD = 4

#: Widest memory of a line: a wider word is split into memories of at most this many bits,
#: each with its own address counter, so no address flip-flop drives a whole beat's LUT
#: RAMs (on ECP5 that fan-out limited the clock).  18 bits is a block RAM's width (DP16KD,
#: SB_RAM40_4K is 16), so block RAM lines need no more blocks for it.
CHUNK_BITS = 18


class DelayLine(wiring.Component):
    """``o`` is the value ``i`` had ``depth`` shifts ago.

    On each cycle with ``shift`` high, ``i`` enters the line and every stored value moves one
    place on.  Long lines are a circular buffer in ``Memory`` with one read and one write
    port (read-before-write on the same address) plus its output register, so a line of
    ``depth`` words stores exactly ``depth`` words; words wider than ``CHUNK_BITS`` are
    split across several such memories.

    Parameters
    ----------
    width : int
        Bits per word.
    depth : int
        Delay in shifts, at least 1.

    Members
    -------
    i : In(width)
    shift : In(1)
    o : Out(width)
        Registered; changes only on shifts.
    """

    def __init__(self, width, depth):
        if depth < 1:
            self._MustUse__silence = True     # never built, so never to be elaborated
            raise ValueError(f"depth must be at least 1, not {depth}")
        self.width, self.depth = width, depth
        super().__init__({"i": In(width), "shift": In(1), "o": Out(width)})

    def elaborate(self, platform):
        m = Module()
        if self.depth <= MEMORY_THRESHOLD:
            stages = [Signal(self.width, name=f"stage{n}", reset_less=True)
                      for n in range(self.depth)]
            with m.If(self.shift):
                m.d.sync += stages[0].eq(self.i)
                m.d.sync += [after.eq(before) for before, after in zip(stages, stages[1:])]
            m.d.comb += self.o.eq(stages[-1])
            return m

        # depth - 1 words in memory, the last one in the read port's data register; one
        # memory and address counter per chunk of the word
        chunks = -(-self.width // CHUNK_BITS)
        bounds = [self.width * n // chunks for n in range(chunks + 1)]
        for n, (low, high) in enumerate(zip(bounds, bounds[1:])):
            m.submodules[f"storage{n}"] = storage = Memory(shape=high - low,
                                                           depth=self.depth - 1, init=[])
            write = storage.write_port()
            read = storage.read_port()
            address = Signal(range(self.depth - 1), name=f"address{n}")
            m.d.comb += [
                read.addr.eq(address), read.en.eq(self.shift),
                write.addr.eq(address), write.data.eq(self.i[low:high]),
                write.en.eq(self.shift), self.o[low:high].eq(read.data),
            ]
            with m.If(self.shift):
                with m.If(address == self.depth - 2):
                    m.d.sync += address.eq(0)
                with m.Else():
                    m.d.sync += address.eq(address + 1)
        return m
