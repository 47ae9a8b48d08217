"""The engine's reachable-state relations, as assertions that let k-induction close.

A property that holds in every state reached from reset may still fail an induction step
that starts in an unreachable state: the solver picks any register values, and a queue entry
with a wrong flag, or a scanner position that disagrees with the output counter, breaks the
property only after the entry drains, many cycles later.  These assertions describe the
reachable states well enough that no such start survives: each holds after reset, and each
is kept by every step in which all of them held before (that is what the proof checks).

``output_invariants``: the output beats in flight (skid buffer, output queue register and
memory, the flag registers beside the datapath, the scanner's fired output) are, from the
sink's side, consecutive positions of the output stream, each with the tuser/tlast of its
position; the scanner's position is the next one; the credits count the places they hold.
``owed_invariant``: the beats owed are those in flight, the rest of the scanner's frame and
a whole frame for each start waiting.  ``input_invariants``: the framer's position is the
source's.  They read the engine's registers through the ``registers`` attributes of its
parts and the output queue's memory through extra asynchronous read ports.
"""

from amaranth.hdl import Assert, Const, MemoryInstance, Mux, Signal, Value, signed

from ..hw.start_queue import REGISTER_DEPTH

__all__ = ["output_invariants", "owed_invariant", "input_invariants"]


def _subfragment(fragment, *path):
    """The subfragment of ``fragment`` reached by the submodule names ``path``."""
    for name in path:
        found = [sub for sub, sub_name, _ in fragment.subfragments if sub_name == name]
        if not found:
            raise ValueError(f"the engine has no submodule {'.'.join(path)}: the invariants "
                             f"read the output queue's memory there")
        fragment = found[0]
    return fragment


def _memory_rows(m, fragment, layout, depth):
    """Every row of the output queue's memory, read through an asynchronous port each."""
    storage = _subfragment(fragment, "core", "out_queue", "storage")
    assert isinstance(storage, MemoryInstance)
    rows = []
    for address in range(depth):
        row = Signal(layout, name=f"queue_row{address}")
        storage.read_port(domain="comb", addr=Const(address, (depth - 1).bit_length()),
                          data=Value.cast(row), en=Const(1), transparent_for=())
        rows.append(row)
    return rows


def _any_equal(value, constants):
    result = Const(0)
    for constant in constants:
        result = result | (value == constant)
    return result


class _Framing:
    """The tuser and tlast of stream positions below ``bound`` (positions counted on
    across frames of ``frame`` beats, rows of ``row``)."""

    def __init__(self, row, frame, bound):
        self.frame, self.bound = frame, bound
        self.starts = range(0, bound, frame)
        self.ends = [base + end for base in self.starts for end in range(row - 1, frame, row)]

    def matches(self, first, last, pos):
        return (first == _any_equal(pos, self.starts)) & (last == _any_equal(pos, self.ends))

    def congruent(self, pos, index):
        """``pos`` is ``index`` (a position in a frame) modulo the frame."""
        return _any_equal(pos - index, self.starts)


def _popcount(bits):
    return sum(bits[n] for n in range(len(bits)))


class _Flags:
    """``first`` and ``last`` as a payload's members."""

    def __init__(self, first, last):
        self.first, self.last = first, last


def _all(terms):
    result = Const(1)
    for term in terms:
        result = result & term
    return result


def output_invariants(m, engine, fragment, out_pos, out_row, out_frame, *, flags=True):
    """Assert the output side's relations; ``out_pos`` is the wrapper's position of the next
    output beat the sink takes.  Without ``flags``, only the counts (what ``no_extra``
    needs), not the tuser/tlast of the beats in flight.  Returns the number of output beats
    in flight (fired, not yet taken)."""
    core = engine.built_core
    scanner, queue, skid = core.scanner, core.out_queue, core.out_skid
    sc, qr, sk = scanner.registers, queue.registers, skid.registers
    spec, groups = engine.spec, engine.groups
    depth = queue.depth
    beats_max = 3 + depth + len(core.flag_stages) + 1
    framing = _Framing(out_row, out_frame, out_frame * (-(-(out_frame + beats_max) // out_frame)))

    m.d.comb += Assert(out_pos < out_frame, "inv_out_pos_range")
    # -- the scanner's position and its registered flags
    row, col, group, active = sc["row"], sc["col"], sc["group"], sc["active"]
    index = (row * spec.out_width + col) * groups + group
    for name, counter, size in (("group", group, groups), ("col", col, spec.out_width),
                                ("row", row, spec.out_height)):
        m.d.comb += [
            Assert(counter < size, f"inv_{name}_range"),
            Assert(sc[f"last_{name}"] == (counter == size - 1), f"inv_last_{name}"),
            Assert(sc[f"{name}_penult"] == (counter == size - 2), f"inv_{name}_penult"),
        ]
    at_end = sc["last_group"] & sc["last_col"] & sc["last_row"]
    m.d.comb += [
        Assert(sc["line_end"] == (sc["last_group"] & sc["last_col"]), "inv_line_end"),
        Assert(sc["last_output"] == (~active | at_end), "inv_last_output"),
        Assert(active | (index == 0), "inv_idle_at_start"),
        Assert(sc["at_first"] == (active & (index == 0)), "inv_at_first"),
    ]

    # -- the skid buffer and the output queue's counts
    m.d.comb += [
        Assert(sk["o_empty"] == ~skid.o.valid, "inv_skid_empty"),
        Assert(~sk["spare_full"] | skid.o.valid, "inv_skid_order"),
    ]
    filled = qr["filled"]
    stored = Signal(signed((depth + 2).bit_length() + 1), name="queue_stored")
    m.d.comb += stored.eq(_popcount(filled) + qr["written"] - qr["taken"])
    address_bits = (depth - 1).bit_length()
    m.d.comb += [
        Assert(_all(~filled[n + 1] | filled[n] for n in range(depth - 1)), "inv_queue_code"),
        Assert(~qr["taken"] | filled[0], "inv_queue_taken"),
        Assert((stored >= 0) & (stored <= depth), "inv_queue_level"),
        Assert((qr["write_at"] - qr["read_at"])[:address_bits] == stored[:address_bits],
               "inv_queue_pointers"),
    ]

    # -- the beats in flight, from the sink's side: consecutive positions from out_pos
    pos_width = framing.bound.bit_length() + 1
    pos = out_pos
    def check(valid, payload, name):
        nonlocal pos
        if flags:
            m.d.comb += Assert(~valid | framing.matches(payload.first, payload.last, pos),
                               f"inv_flags_{name}")
        after = Signal(pos_width, name=f"pos_after_{name}")
        m.d.comb += after.eq(pos + valid)
        pos = after

    check(skid.o.valid, skid.o.payload, "skid_out")
    check(sk["spare_full"], sk["spare"], "skid_spare")
    check(queue.o.valid, queue.o.payload, "queue_out")
    for address, row_value in enumerate(_memory_rows(m, fragment, core.beat_out, depth)
                                        if flags else ()):
        ahead = (address - qr["read_at"])[:address_bits]
        m.d.comb += Assert(~(ahead < stored) | framing.matches(row_value.first, row_value.last,
                                                               pos + ahead),
                           f"inv_flags_queue_row{address}")
    after_queue = Signal(pos_width, name="pos_after_queue")
    m.d.comb += after_queue.eq(pos + stored[:address_bits + 1])
    pos = after_queue
    for stage, (valid, first, last) in reversed(list(enumerate(core.flag_stages))):
        check(valid, _Flags(first, last), f"stage{stage}")
    check(scanner.fire, _Flags(scanner.first, scanner.last), "scanner")
    m.d.comb += Assert(framing.congruent(pos, index), "inv_scanner_position")

    in_flight = Signal(range(beats_max + 1), name="out_in_flight")
    m.d.comb += in_flight.eq(pos - out_pos)
    # every fired beat still in the core holds a credit, and so does each shift whose
    # credit is not yet refunded or counted (credits are counted a cycle late)
    held = (in_flight - skid.o.valid - sk["spare_full"]) + core.pop + core.refund
    m.d.comb += Assert(core.credits + held == engine.queue_depth, "inv_credits")
    return in_flight


def owed_invariant(m, engine, owed, in_flight, out_frame):
    """Assert that ``owed`` (output beats owed by the frames started, less those taken)
    is what the engine holds: beats in flight, the rest of the scanner's frame, and a frame
    for each start in the start queue or the scanner's head register."""
    core = engine.built_core
    sc, st = core.scanner.registers, core.starts.registers
    spec, groups = engine.spec, engine.groups
    if core.starts.depth > REGISTER_DEPTH:
        raise ValueError("the start queue invariants describe its register form only "
                         f"(up to {REGISTER_DEPTH} entries)")
    full, write_at, read_at = st["full"], st["write_at"], st["read_at"]
    depth = len(full)
    index = (sc["row"] * spec.out_width + sc["col"]) * groups + sc["group"]
    rest = Signal(range(out_frame + 1), name="scanner_rest")
    m.d.comb += rest.eq(Mux(sc["active"], out_frame - index, 0))
    waiting = _popcount(full) + sc["head_valid"]
    # the queue's entries are the run of full ones from read_at, up to write_at
    read_index = sum(n * read_at[n] for n in range(depth))
    level = _popcount(full)
    for n in range(depth):
        behind = Mux(n >= read_index, n - read_index, n + depth - read_index)
        m.d.comb += Assert(full[n] == (behind < level), f"inv_starts_full{n}")
    m.d.comb += [
        Assert(_popcount(read_at) == 1, "inv_starts_read_at"),
        Assert(_popcount(write_at) == 1, "inv_starts_write_at"),
        Assert(write_at == _rotated(read_at, level, depth), "inv_starts_pointers"),
        Assert(owed == in_flight + rest + waiting * out_frame, "inv_owed"),
    ]


def _rotated(one_hot, amount, depth):
    """``one_hot`` rotated left by ``amount`` places (0 to ``depth``)."""
    result = Const(0, depth)
    for k in range(depth + 1):
        result = Mux(amount == k, one_hot.rotate_left(k % depth), result)
    return result


def input_invariants(m, engine, in_pos, in_row, in_frame):
    """Assert that the framer, with well-formed input, stays where the source is:
    ``in_pos`` is the wrapper's position of the next input beat."""
    fr = engine.built_core.framer.registers
    m.d.comb += [
        Assert(in_pos < in_frame, "inv_in_pos_range"),
        Assert(~fr["fill"], "inv_framer_no_fill"),
        Assert(fr["idle"] == (in_pos == 0), "inv_framer_idle"),
        Assert(fr["run"] == (in_pos != 0), "inv_framer_run"),
        Assert(fr["frame_beat"] == in_pos, "inv_framer_frame_beat"),
        Assert(fr["end_of_frame"] == (in_pos == in_frame - 1), "inv_framer_end_of_frame"),
        Assert(fr["line_beat"] == in_pos % in_row, "inv_framer_line_beat"),
        Assert(fr["end_of_line"] == (fr["line_beat"] == in_row - 1), "inv_framer_end_of_line"),
    ]
