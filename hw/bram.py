"""ECP5 block RAM (DP16KD) as a circular buffer with its output register.

yosys infers DP16KD without its output register (``REGMODE="NOREG"``), whose clock-to-output
(about 5.5 ns) then starts the next path; with ``REGMODE="OUTREG"`` the data leaves a
register inside the block (about 0.9 ns).  So block-RAM-sized memories of a delay line are
instantiated here; smaller ones stay inferred (LUT RAM).
"""

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["DP16KD_SHAPES", "LUT_RAM_ATTRS", "dp16kd_plan", "wants_block_ram", "DP16KDBuffer"]

#: (data width, depth) of the DP16KD's single-port configurations that can read the old word
#: while writing a new one at the same address (WRITEMODE="READBEFOREWRITE"); the 36-bit
#: form is pseudo-dual-port (written on port A, read on port B) and has no such mode.
DP16KD_SHAPES = ((18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))

#: A memory goes to block RAM when it holds at least this many words (more than four LUT
#: RAMs deep, whose read multiplexer then takes more than a LUT) and this many bits;
#: smaller ones are LUT RAM, marked so (``LUT_RAM_ATTRS``): yosys would otherwise put some
#: of them (16 bits x 118 words) in a DP16KD without its output register.
BLOCK_RAM_MIN_WORDS = 65
BLOCK_RAM_MIN_BITS = 1024

#: Attributes of a memory that stays LUT RAM on ECP5 (yosys's memory_libmap honours them).
LUT_RAM_ATTRS = {"ram_style": "distributed"}


def wants_block_ram(width, words):
    """True when a ``width`` x ``words`` memory belongs in block RAM on ECP5."""
    return words >= BLOCK_RAM_MIN_WORDS and width * words >= BLOCK_RAM_MIN_BITS


def dp16kd_plan(width, words):
    """``(data_width, depth, segments, tiles_per_segment)``: the DP16KD configuration that
    holds ``width`` x ``words`` in the fewest blocks, as ``segments`` memories in a chain
    (each at most ``depth`` words, so no output multiplexer is needed behind the blocks)
    of ``tiles_per_segment`` blocks side by side.  Ties go to the wider configuration (fewer
    segments, fewer registers between them)."""
    if width < 1 or words < 1:
        raise ValueError(f"a block RAM memory needs width and words >= 1, not {width}x{words}")
    best = None
    for data_width, depth in DP16KD_SHAPES:
        segments = -(-words // depth)
        tiles = -(-width // data_width)
        if best is None or segments * tiles < best[2] * best[3]:
            best = (data_width, depth, segments, tiles)
    return best


def _address_pins(data_width):
    """The DP16KD address pins (ADx13 down) that carry the word address in a configuration:
    the low pins are unused, except in the 18-bit one where ADx1..0 are byte enables."""
    depth = dict(DP16KD_SHAPES)[data_width]
    bits = depth.bit_length() - 1
    return list(range(14 - bits, 14))


class DP16KDBuffer(wiring.Component):
    """A circular buffer of ``words`` words in DP16KD blocks, read before write, with the
    blocks' output registers.

    On a cycle with ``shift`` high, the word at the current address is read and ``i`` written
    in its place, and the address moves on; the block's output register takes the word read
    on the previous shift.  So ``o`` is ``i`` from ``words + 2`` shifts ago, and changes only
    on shifts (the clock enables CE and OCE are both ``shift``).

    Each block uses port A alone (18 bits x 1024 or narrower and deeper, ``dp16kd_plan``);
    ``width`` wider than a block takes several blocks side by side, each with its own address
    counter so no counter drives many blocks.  Port B is tied off.

    Parameters
    ----------
    width : int
    words : int
        At most the chosen configuration's depth (a longer line is a chain of these).

    Members
    -------
    i : In(width)
    shift : In(1)
    o : Out(width)
    """

    def __init__(self, width, words):
        data_width, depth, segments, _ = dp16kd_plan(width, words)
        if segments != 1:
            self._MustUse__silence = True     # never built, so never to be elaborated
            raise ValueError(f"{words} words exceed one DP16KD's {depth} at this width; "
                             f"chain {segments} buffers")
        self.width, self.words, self.data_width = width, words, data_width
        super().__init__({"i": In(width), "shift": In(1), "o": Out(width)})

    @property
    def tiles(self):
        """Blocks side by side."""
        return -(-self.width // self.data_width)

    def elaborate(self, platform):
        m = Module()
        data_width = self.data_width
        pins = _address_pins(data_width)
        for n in range(self.tiles):
            low, high = n * data_width, min((n + 1) * data_width, self.width)
            address = Signal(len(pins), name=f"address{n}")
            with m.If(self.shift):
                with m.If(address == self.words - 1):
                    m.d.sync += address.eq(0)
                with m.Else():
                    m.d.sync += address.eq(address + 1)
            unused = Signal(18 - (high - low), name=f"unused{n}")
            ports = {}
            for k in range(14):
                if k in pins:
                    ports[f"i_ADA{k}"] = address[pins.index(k)]
                else:
                    # 18-bit configuration: ADA1..0 are the byte write enables
                    ports[f"i_ADA{k}"] = Const(int(data_width == 18 and k < 2), 1)
                ports[f"i_ADB{k}"] = Const(0, 1)
            for k in range(18):
                ports[f"i_DIA{k}"] = self.i[low + k] if k < high - low else Const(0, 1)
                ports[f"i_DIB{k}"] = Const(0, 1)
                ports[f"o_DOA{k}"] = (self.o[low + k] if k < high - low
                                      else unused[k - (high - low)])
            for k in range(3):
                ports[f"i_CSA{k}"] = Const(0, 1)
                ports[f"i_CSB{k}"] = Const(0, 1)
            m.submodules[f"block{n}"] = Instance(
                "DP16KD",
                p_DATA_WIDTH_A=data_width, p_DATA_WIDTH_B=data_width,
                p_REGMODE_A="OUTREG", p_REGMODE_B="NOREG",
                p_WRITEMODE_A="READBEFOREWRITE", p_WRITEMODE_B="NORMAL",
                p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
                p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC", p_GSR="DISABLED",
                i_CLKA=ClockSignal("sync"), i_CEA=self.shift, i_OCEA=self.shift,
                i_WEA=self.shift, i_RSTA=Const(0, 1),
                i_CLKB=Const(0, 1), i_CEB=Const(0, 1), i_OCEB=Const(0, 1),
                i_WEB=Const(0, 1), i_RSTB=Const(0, 1),
                **ports)
        return m
