"""Per-output-channel constants of an int8 requantizer: built in, or loaded through a port."""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .counter import position_counter

__all__ = ["ChannelTable", "TABLE_WORD_BITS", "table_load_layout"]

#: Bits of a table load word: M0 (31 bits), a shift or a float32 scale fits in it.
TABLE_WORD_BITS = 32


def table_load_layout():
    """A table load beat: ``value`` (one 32-bit word) and ``last`` (the load's final one)."""
    return data.StructLayout({"value": TABLE_WORD_BITS, "last": 1})


def _pick(column, shape, index):
    """``column[index]`` of constants: one constant where they are all equal, else a tree
    of two-way multiplexers on the index bits (no case statement: in the Verilog that
    ``engine_verilog`` writes, a case on constants becomes a function Icarus rejects)."""
    items = [Const(v, shape) for v in column]
    if len(set(column)) == 1:
        return items[0]
    for bit in range(len(index)):
        if len(items) == 1:
            break
        items = [Mux(index[bit], items[k + 1], items[k]) if k + 1 < len(items) else items[k]
                 for k in range(0, len(items), 2)]
    return items[0]


class ChannelTable(wiring.Component):
    """The constants of each lane's output channel for the beat at a requantizer's input.

    Lane q of the beat for channel group g is output channel g*L + q (L lanes); ``group``
    says g.  With ``mode="const"`` the entries are constants (a multiplexer by group only
    where they differ between groups, so synthesis folds them into the logic).

    With ``mode="port"`` each lane has a memory of two banks of one entry per group, read
    combinationally.  A load writes the inactive bank from ``load``: per channel, in channel
    order, ``words`` values, ``last`` on the final value of the final channel.  A complete
    load is pending (``load.ready`` is low while it is) until a frame's first beat is taken
    with ``apply`` high: that beat and every later one read the loaded bank.  A load whose
    ``last`` is misplaced (early, or missing on the final value) is discarded, and ``error``
    pulses.  Bank 0 starts with ``entries``.

    Parameters
    ----------
    layout : StructLayout
        One channel's constants.
    lanes, groups : int
    entries : list of dict
        Per output channel (groups * lanes of them), the value of each field.
    mode : "const" or "port"
    words : int
        Load words per channel (``port`` mode).
    decode : callable
        ``decode(words)``: the entry's field values (a dict of Amaranth values) from the
        channel's load words, lowest first (``port`` mode).

    Members
    -------
    group : In(range(groups))
        The channel group of the beat at the input.
    entry : Out(ArrayLayout(layout, lanes))
        Its lanes' constants, combinationally.
    first, take, apply : In(1)
        ``port`` mode: the beat at the input is a frame's first; it is taken this cycle; a
        frame starting here takes a complete pending load.
    cancel : In(1)
        ``port`` mode: drop the pending load (also one completing this cycle).
    load : In(stream.Signature(table_load_layout()))
        ``port`` mode: the load words.
    error : Out(1)
        ``port`` mode: pulses when a load is discarded.
    """

    def __init__(self, layout, *, lanes, groups, entries, mode="const", words=1, decode=None):
        if mode not in ("const", "port"):
            raise ValueError(f"mode must be 'const' or 'port', not {mode!r}")
        if len(entries) != lanes * groups:
            raise ValueError(f"the table needs {lanes * groups} entries, not {len(entries)}")
        if mode == "port" and (decode is None or words < 1):
            raise ValueError("a loaded table needs its words per channel and a decode")
        self.layout, self.lanes, self.groups = layout, lanes, groups
        self.entries, self.mode, self.words, self.decode = list(entries), mode, words, decode
        members = {"group": In(range(max(groups, 2))),
                   "entry": Out(data.ArrayLayout(layout, lanes))}
        if mode == "port":
            members.update({"first": In(1), "take": In(1), "apply": In(1), "cancel": In(1),
                            "error": Out(1), "load": In(stream.Signature(table_load_layout()))})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        if self.mode == "const":
            self._constants(m)
        else:
            self._banks(m)
        return m

    def _constants(self, m):
        for lane in range(self.lanes):
            for name, field in self.layout:
                column = [self.entries[g * self.lanes + lane][name] for g in range(self.groups)]
                m.d.comb += self.entry[lane][name].eq(_pick(column, field.shape, self.group))

    def _banks(self, m):
        lanes, groups = self.lanes, self.groups
        bank = Signal()            # the active bank
        pending = Signal()         # a complete load waits in the other bank
        use_new = Signal()
        m.d.comb += use_new.eq(self.first & pending & self.apply)
        read_bank = bank ^ use_new
        with m.If(self.take & use_new):
            m.d.sync += [bank.eq(~bank), pending.eq(0)]

        accepted = Signal()
        m.d.comb += [self.load.ready.eq(~pending),
                     accepted.eq(self.load.valid & self.load.ready)]
        ending = accepted & self.load.payload.last
        # position in the load: word of the channel, lane, group, and the whole load; a
        # load's last value starts them over (after a complete load they have wrapped)
        _, last_word = position_counter(m, self.words, accepted, "word", ending)
        lane, last_lane = position_counter(m, lanes, accepted & last_word, "lane", ending)
        group, _ = position_counter(m, groups, accepted & last_word & last_lane, "group",
                                    ending)
        _, final = position_counter(m, self.words * lanes * groups, accepted, "values",
                                    ending)
        held = [Signal(len(self.load.payload.value), name=f"word{k}")
                for k in range(self.words - 1)]
        with m.If(accepted):
            for k in range(self.words - 1):
                with m.If(~last_word):
                    m.d.sync += held[k].eq(held[k + 1] if k + 1 < len(held)
                                           else self.load.payload.value)
        entry = Signal(self.layout)
        fields = self.decode([*held, self.load.payload.value])
        m.d.comb += [entry[name].eq(value) for name, value in fields.items()]

        for q in range(lanes):
            mem = Memory(shape=self.layout, depth=2 * groups,
                         init=[self.entries[g * lanes + q] for g in range(groups)])
            m.submodules[f"lane{q}"] = mem
            read = mem.read_port(domain="comb")
            m.d.comb += [read.addr.eq(Mux(read_bank, groups + self.group, self.group)),
                         self.entry[q].eq(read.data)]
            write = mem.write_port()
            m.d.comb += [write.addr.eq(Mux(bank, group, groups + group)),
                         write.data.eq(entry),
                         write.en.eq(accepted & last_word & (lane == q))]

        with m.If(ending & final):
            m.d.sync += pending.eq(1)
        with m.If(self.cancel):
            m.d.sync += pending.eq(0)
        m.d.comb += self.error.eq((accepted & final) ^ ending)
