"""A delay line that moves only when told to: the building block of the line buffer."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .bram import LUT_RAM_ATTRS, DP16KDBuffer, dp16kd_plan, wants_block_ram

__all__ = ["DelayLine", "MEMORY_THRESHOLD"]

#: Delays longer than this are held in memory (block RAM or LUT RAM), shorter ones in
#: flip-flops, where a memory would cost more than it saves.
MEMORY_THRESHOLD = 4

#: Widest memory of a line: a wider word is split into memories of at most this many bits,
#: each with its own address counter, so no address flip-flop drives a whole beat's LUT
#: RAMs (docs/timing-closure.md, item 14).  18 bits is a block RAM's width (DP16KD,
#: SB_RAM40_4K is 16), so block RAM lines need no more blocks for it.
CHUNK_BITS = 18


class DelayLine(wiring.Component):
    """``o`` is the value ``i`` had ``depth`` shifts ago.

    On each cycle with ``shift`` high, ``i`` enters the line and every stored value moves one
    place on.  Long lines are a circular buffer in memory with one read and one write port
    (read-before-write on the same address), its read data register and one more register
    behind it, both enabled by ``shift``: ``depth - 2`` words in memory and two in
    registers.  The second register is the memory's output register where the target has
    one (block RAM primitives and vendor tools that absorb it), so the memory's slow
    clock-to-output ends in a register instead of starting the next path.  Words wider than
    ``CHUNK_BITS`` are split across several memories.  The delay, and so every cycle count,
    is the same on every target.

    Parameters
    ----------
    width : int
        Bits per word.
    depth : int
        Delay in shifts, at least 1.
    target : None, "ecp5" or "ice40"
        On "ecp5", memories of block RAM size are DP16KD instances with their output
        registers (``hw.bram``); elsewhere memories are inferred by the tools.

    Members
    -------
    i : In(width)
    shift : In(1)
    o : Out(width)
        Registered; changes only on shifts.
    """

    def __init__(self, width, depth, *, target=None):
        if depth < 1:
            self._MustUse__silence = True     # never built, so never to be elaborated
            raise ValueError(f"depth must be at least 1, not {depth}")
        self.width, self.depth, self.target = width, depth, target
        super().__init__({"i": In(width), "shift": In(1), "o": Out(width)})

    @property
    def block_ram(self):
        """True when the line's memory is DP16KD instances."""
        return (self.target == "ecp5" and self.depth > MEMORY_THRESHOLD
                and wants_block_ram(self.width, self.depth - 2))

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

        words = self.depth - 2
        if self.block_ram:
            segments = dp16kd_plan(self.width, words)[2]
            if segments == 1:
                m.submodules.storage = buffer = DP16KDBuffer(self.width, words)
                m.d.comb += [buffer.i.eq(self.i), buffer.shift.eq(self.shift),
                             self.o.eq(buffer.o)]
                return m
            # deeper than a block: a chain of lines, each within one block's depth (two
            # registers per line, so the words in memory are depth - 2 * segments)
            stored = self.depth - 2 * segments
            source = self.i
            for n in range(segments):
                part = stored * (n + 1) // segments - stored * n // segments
                m.submodules[f"segment{n}"] = line = DelayLine(self.width, part + 2,
                                                               target=self.target)
                m.d.comb += [line.i.eq(source), line.shift.eq(self.shift)]
                source = line.o
            m.d.comb += self.o.eq(source)
            return m

        # one memory and address counter per chunk of the word; on ECP5 what is not block
        # RAM above is LUT RAM
        attrs = LUT_RAM_ATTRS if self.target == "ecp5" else None
        chunks = -(-self.width // CHUNK_BITS)
        bounds = [self.width * n // chunks for n in range(chunks + 1)]
        for n, (low, high) in enumerate(zip(bounds, bounds[1:])):
            m.submodules[f"storage{n}"] = storage = Memory(shape=high - low, depth=words,
                                                           init=[], attrs=attrs)
            write = storage.write_port()
            read = storage.read_port()
            address = Signal(range(words), name=f"address{n}")
            output = Signal(high - low, name=f"output{n}", reset_less=True)
            m.d.comb += [
                read.addr.eq(address), read.en.eq(self.shift),
                write.addr.eq(address), write.data.eq(self.i[low:high]),
                write.en.eq(self.shift), self.o[low:high].eq(output),
            ]
            with m.If(self.shift):
                m.d.sync += output.eq(read.data)
                with m.If(address == words - 1):
                    m.d.sync += address.eq(0)
                with m.Else():
                    m.d.sync += address.eq(address + 1)
        return m
