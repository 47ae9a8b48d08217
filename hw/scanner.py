"""The output scanner: decides on which shift each output's window is complete."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .counter import Position

__all__ = ["OutputScanner"]


class OutputScanner(wiring.Component):
    """Walks the outputs of one frame after another and fires each on its shift.

    An output (row, col, group) needs input up to the pixel
    ``(row*sh - pad_top + (kh-1)*dh, col*sw - pad_left + (kw-1)*dw)`` in a raster that runs
    on past the end of each row into the next one and past the end of the frame into
    whatever follows.  Counted in beats from the frame's first beat that is
    ``first + row*row_step + col*col_step + group``; the scanner compares that target with the
    running shift index and fires when they meet.  So right and bottom padding cost no
    cycles: those outputs fire while the next row or frame is streaming in (their taps there
    are masked), and only the tail of the last frame of a burst needs flush shifts.
    Targets of consecutive outputs, and of consecutive frames, never coincide.

    Parameters
    ----------
    spec : LayerSpec
    lanes : int
    extra : int
        Extra delay of the line buffer taps, added to every target.
    counter_width : int
        Width of the shift index (wraps; only differences smaller than 2**width are used).

    Members
    -------
    next_pos : Signal(counter_width), in
        Index that the shift happening next cycle (if any) will have: the scanner compares
        it with the next target a cycle ahead, so firing needs no compare in the cycle of
        the shift.
    shift : Signal(), in
    would_fire : Signal(), out
        The shift this cycle, if it happens, completes an output window.
    start : In(stream.Signature(start_layout))
        Queue of frame starts: ``target``, the shift index that fires each frame's first
        output (the index of its first beat plus ``first_target``, added where the start is
        queued so no adder sits behind the queue) and ``swap``, whether the frame switches
        to newly loaded weights.  The scanner keeps the head of the queue in registers (a
        transfer moves it there), so a start reaches it two cycles after it is queued;
        ``first_target`` is at least 2 (the line buffer's ``extra``), so that is in time
        for the first output.
    fire : Signal(), out
        Registered: the taps now in the line buffer form the window of an output.
    group, mask, first, last : out, registered with ``fire``
        Channel group of the output, validity of each tap (``mask[i*kw + j]``), start of
        frame and end of line flags of the output beat.
    swap : Signal(), out
        Pulses when a frame that uses newly loaded weights begins.
    busy : Signal(), out
        A frame has outputs still to fire (or its start is in the scanner's head register).
    """

    def __init__(self, spec, lanes, *, extra, counter_width):
        spec.check_lanes(lanes)
        self.spec, self.lanes, self.extra = spec, lanes, extra
        kh, kw = spec.kernel_size
        self.groups = groups = spec.channels // lanes
        self.first_target, self.col_step, self.row_step, self.last_target = \
            self.targets(spec, lanes, extra)
        if self.last_target + 2 >= 2 ** counter_width:
            raise ValueError(f"counter_width {counter_width} too small for targets up to "
                             f"{self.last_target}")
        self.counter_width = counter_width
        # A target the firing depends on is never more than ``ahead`` shifts after the
        # index it is compared with (a frame's first output is ``first_target`` after its
        # first beat, which the index has reached; each next one is a step after the last
        # fired), nor before it: so the low bits of the two decide, and the compares are
        # only as wide as ``ahead`` needs (docs/timing-closure.md, item 26).
        ahead = max(self.first_target, self.col_step, self.row_step, 1)
        self.compare_width = min(counter_width, (ahead + 2).bit_length())

        super().__init__({
            "next_pos": In(counter_width), "shift": In(1), "would_fire": Out(1),
            "start": In(stream.Signature(self.start_layout(counter_width))),
            "fire": Out(1), "group": Out(range(max(groups, 2))), "mask": Out(kh * kw),
            "first": Out(1), "last": Out(1), "swap": Out(1), "busy": Out(1),
        })

    @staticmethod
    def start_layout(counter_width):
        """Payload of the ``start`` stream: ``target`` in the low bits, then ``swap``."""
        return data.StructLayout({"target": counter_width, "swap": 1})

    @staticmethod
    def targets(spec, lanes, extra):
        """(first, col_step, row_step, last): beat offsets of the firing shifts in a frame."""
        kh, kw = spec.kernel_size
        sh, sw = spec.strides
        dh, dw = spec.dilation_rate
        groups, width = spec.channels // lanes, spec.width
        first = (((kh - 1) * dh - spec.pad_top) * width
                 + (kw - 1) * dw - spec.pad_left) * groups + extra
        col_step = sw * groups - (groups - 1)
        row_step = (sh * width - (spec.out_width - 1) * sw) * groups - (groups - 1)
        last = (first + (spec.out_height - 1) * sh * width * groups
                + (spec.out_width - 1) * sw * groups + groups - 1)
        return first, col_step, row_step, last

    def elaborate(self, platform):
        m = Module()
        s = _Registers(self.spec, self.groups, self.counter_width)
        # the position registers, for the invariants of flows/formal.py
        self.registers = dict(
            active=s.active, row=s.row.value, col=s.col.value, group=s.group.value,
            at_first=s.at_first, last_group=s.group.last, last_col=s.col.last,
            last_row=s.row.last, group_penult=s.group.penult, col_penult=s.col.penult,
            row_penult=s.row.penult, line_end=s.line_end, last_output=s.last_output,
            head_valid=s.head_valid)
        would_fire = Mux(s.updated, s.fire_if_update, s.fire_if_not)
        fire_now = self.shift & would_fire
        m.d.comb += [self.would_fire.eq(would_fire), self.busy.eq(s.active | s.head_valid)]
        # the order matters where two parts set one register: a frame start (``_head``)
        # wins over the end of the last one (``_walk``)
        self._fire(m, s, fire_now)
        self._walk(m, s, fire_now)
        self._head(m, s, self.shift & Mux(s.updated, s.ends_if_update, s.ends_if_not))
        self._look_ahead(m, s, fire_now)
        return m

    def _fire(self, m, s, fire_now):
        """The output flags, registered with ``fire``."""
        kh, kw = self.spec.kernel_size
        m.d.sync += [self.fire.eq(fire_now), self.swap.eq(0)]
        with m.If(fire_now):
            m.d.sync += [
                self.group.eq(s.group.value),
                self.mask.eq(Cat(s.row_ok[i] & s.col_ok[j]
                                 for i in range(kh) for j in range(kw))),
                self.first.eq(s.at_first),
                self.last.eq(s.line_end),
                s.at_first.eq(0),
            ]

    def _walk(self, m, s, fire_now):
        """On each firing, on to the next output: the next group, column, row, or back to the
        frame's first output after its last.  A frame start then sets only ``active`` and
        ``last_output`` (``_head``), so the position registers are enabled by the firing
        alone (docs/timing-closure.md, item 17)."""
        spec, groups = self.spec, self.groups
        sh, sw = spec.strides
        group, col, row = s.group, s.col, s.row
        first_col = col.first() + [s.line_end.eq(s.line_end_at_start),
                                   s.col_base.eq(-spec.pad_left), s.col_ok.eq(s.col_first)]
        with m.If(fire_now):
            with m.If(~s.line_end):
                with m.If(~group.last):
                    m.d.sync += group.step() + [s.line_end.eq(group.penult & col.last),
                                                s.last_output.eq(s.last_after_group)]
                with m.Else():
                    m.d.sync += group.first() + col.step() + [
                        s.line_end.eq((groups == 1) & col.penult),
                        s.last_output.eq(s.last_after_col),
                        s.col_base.eq(s.col_base + sw), s.col_ok.eq(s.col_next)]
            with m.Elif(~row.last):
                m.d.sync += group.first() + first_col + row.step() + [
                    s.last_output.eq(s.last_after_row),
                    s.row_base.eq(s.row_base + sh), s.row_ok.eq(s.row_next)]
            with m.Else():
                m.d.sync += group.first() + first_col + row.first() + [
                    s.active.eq(0), s.row_base.eq(-spec.pad_top), s.row_ok.eq(s.row_first)]

    def _head(self, m, s, ends):
        """The head of the start queue, in registers (docs/timing-closure.md, item 2): taken
        at once while inactive, or when ``ends`` (this shift fires the frame's last output,
        worked out a cycle ahead: item 9); refilled whenever it is free or freed."""
        take = s.head_valid & (~s.active | ends)
        fetch = ~s.head_valid | ~s.active | ends
        m.d.comb += self.start.ready.eq(fetch)
        with m.If(fetch):
            m.d.sync += [s.head_valid.eq(self.start.valid),
                         s.head_target.eq(self.start.payload.target),
                         s.head_swap.eq(self.start.payload.swap)]
        with m.If(take):
            m.d.sync += [s.active.eq(1), s.at_first.eq(1), s.last_output.eq(s.last_at_start),
                         self.swap.eq(s.head_swap)]

    def _look_ahead(self, m, s, fire_now):
        """The next target, and next cycle's "fires" and "fires the frame's last output".

        Which candidate the next target is (the head's, or the current one plus a group,
        column or row step) depends on flip-flops only; the firing decision only enables
        its registers, so the successors' carry chains start one multiplexer after
        flip-flops (docs/timing-closure.md, item 1).  Active, a start is taken only when the
        last output fires, so an update is a firing or a start while idle.  The index is
        compared, a cycle ahead, both with the target an update would choose (with each
        candidate, picked by the flags in an AND-OR that yosys cannot merge behind a
        multiplexer: item 22) and with the unchanged one; the registered decision picks one
        (items 8, 9)."""
        group, col = s.group, s.col
        update = Signal(name="update")
        chosen = Signal(self.counter_width, name="chosen")
        m.d.comb += [
            update.eq(fire_now | (~s.active & s.head_valid)),
            chosen.eq(Mux(s.last_output, s.head_target,
                          Mux(~group.last, s.after_group,
                              Mux(~col.last, s.after_col, s.after_row)))),
        ]
        with m.If(update):
            m.d.sync += [s.target.eq(chosen), s.after_group.eq(chosen + 1),
                         s.after_col.eq(chosen + self.col_step),
                         s.after_row.eq(chosen + self.row_step)]

        def meets(value):
            return self.next_pos[:self.compare_width] == value[:self.compare_width]

        meets_chosen = ((s.last_output & meets(s.head_target))
                        | (~s.last_output & ~group.last & meets(s.after_group))
                        | (~s.last_output & group.last & ~col.last & meets(s.after_col))
                        | (~s.last_output & group.last & col.last & meets(s.after_row)))
        # active after an update: a frame starts, or goes on, or ends with no head to take
        active_if_update = ~s.last_output | s.head_valid
        # last_output after an update: a new frame's, or the next output's in this frame
        last_if_update = Mux(s.last_output, s.last_at_start,
                             Mux(~group.last, s.last_after_group,
                                 Mux(~col.last, s.last_after_col, s.last_after_row)))
        m.d.sync += [s.updated.eq(update),
                     s.fire_if_update.eq(meets_chosen & active_if_update),
                     s.fire_if_not.eq(meets(s.target) & s.active),
                     s.ends_if_update.eq(meets_chosen & last_if_update),
                     s.ends_if_not.eq(meets(s.target) & s.last_output)]


def _inside(base, step, reach, taps, size):
    """Bit n: 0 <= base + step + n*reach < size (tap n of the next row or column)."""
    return Cat((base >= -step - n * reach) & (base < size - step - n * reach)
               for n in range(taps))


def _first_inside(pad, reach, taps, size):
    """Bit n: tap n of the first row or column lies inside the frame."""
    return sum(1 << n for n in range(taps) if 0 <= n * reach - pad < size)


class _Registers:
    """The scanner's state.  Every flag that logic behind the firing decision reads is a
    register of its own, so that logic starts at flip-flops.

    ``active``: a frame has outputs still to fire.  ``target``: the shift index that fires
    the current output; ``after_group``, ``after_col``, ``after_row``: it plus each step.
    ``group``, ``col``, ``row``: the output's position (``Position``, with registered last
    and last-but-one flags: item 22).  ``row_base``, ``col_base``: row*sh - pad_top and
    col*sw - pad_left, the input row and column of tap 0; ``row_ok``, ``col_ok``: which tap
    rows and columns lie inside the frame, moved with the position instead of compared
    behind the mask (item 18).  ``line_end``: last_group & last_col, the output ends its
    line (item 29).  ``last_output``: it is the frame's last (also set while idle: the next
    update takes the head).  ``at_first``: it is the frame's first.  ``updated``: the
    target moved last cycle; ``fire_if_update``/``fire_if_not`` and
    ``ends_if_update``/``ends_if_not``: this cycle's shift fires (the frame's last output),
    for each outcome of that move (items 8, 9).  ``head_valid``, ``head_target``,
    ``head_swap``: the start queue's head (item 2).  Item numbers are those of
    docs/timing-closure.md.
    """

    def __init__(self, spec, groups, counter_width):
        kh, kw = spec.kernel_size
        dh, dw = spec.dilation_rate
        sh, sw = spec.strides
        reach = max(spec.height, spec.width, spec.pad_top, spec.pad_left,
                    (spec.out_height - 1) * sh + (kh - 1) * dh,
                    (spec.out_width - 1) * sw + (kw - 1) * dw)
        coord = signed(reach.bit_length() + 2)
        self.active = Signal(name="active")
        self.target = Signal(counter_width, name="target")
        self.after_group, self.after_col, self.after_row = (
            Signal(counter_width, name=n) for n in ("after_group", "after_col", "after_row"))
        self.group = Position(groups, "group", last="last_group", penult="group_penult")
        self.col = Position(spec.out_width, "col", last="last_col", penult="col_penult")
        self.row = Position(spec.out_height, "row", last="last_row", penult="row_penult")
        self.row_base = Signal(coord, init=-spec.pad_top, name="row_base")
        self.col_base = Signal(coord, init=-spec.pad_left, name="col_base")
        self.row_first = _first_inside(spec.pad_top, dh, kh, spec.height)
        self.col_first = _first_inside(spec.pad_left, dw, kw, spec.width)
        self.row_ok = Signal(kh, init=self.row_first, name="row_ok")
        self.col_ok = Signal(kw, init=self.col_first, name="col_ok")
        self.row_next = _inside(self.row_base, sh, dh, kh, spec.height)
        self.col_next = _inside(self.col_base, sw, dw, kw, spec.width)
        self.line_end_at_start = (groups == 1) & (spec.out_width == 1)
        self.line_end = Signal(init=self.line_end_at_start, name="line_end")
        self.last_at_start = self.line_end_at_start & (spec.out_height == 1)
        self.last_output = Signal(init=1, name="last_output")
        self.at_first = Signal(name="at_first")
        self.updated, self.fire_if_update, self.fire_if_not = (
            Signal(name=n) for n in ("updated", "fire_if_update", "fire_if_not"))
        self.ends_if_update, self.ends_if_not = (
            Signal(name=n) for n in ("ends_if_update", "ends_if_not"))
        self.head_valid = Signal(name="head_valid")
        self.head_target = Signal(counter_width, name="head_target")
        self.head_swap = Signal(name="head_swap")
        # last_output after each kind of move: to the next group, column, row
        self.last_after_group = self.group.penult & self.col.last & self.row.last
        self.last_after_col = (groups == 1) & self.col.penult & self.row.last
        self.last_after_row = (groups == 1) & (spec.out_width == 1) & self.row.penult
