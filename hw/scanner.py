"""The output scanner: decides on which shift each output's window is complete."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

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
        output (the
        index of its first beat plus ``first_target``, added where the start is queued so
        no adder sits behind the queue) and ``swap``, whether the frame switches to newly
        loaded weights.  The scanner keeps the head of the queue in registers (a transfer
        moves it there), so a start reaches it two cycles after it is queued; ``first_target`` is
        at least 2 (the line buffer's ``extra``), so that is in time for the first output.
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
        # as wide as ``ahead`` needs, not the counter (the compares limited the clock).
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
        spec = self.spec
        kh, kw = spec.kernel_size
        dh, dw = spec.dilation_rate
        sh, sw = spec.strides
        groups = self.groups
        reach = max(spec.height, spec.width, spec.pad_top, spec.pad_left,
                    (spec.out_height - 1) * sh + (kh - 1) * dh,
                    (spec.out_width - 1) * sw + (kw - 1) * dw)
        coord = signed(reach.bit_length() + 2)

        active = Signal()
        target = Signal(self.counter_width)
        row = Signal(range(max(spec.out_height, 2)))    # never zero-width (lint)
        col = Signal(range(max(spec.out_width, 2)))
        group = Signal(range(max(groups, 2)))
        row_base = Signal(coord, init=-spec.pad_top)    # row*sh - pad_top: input row of tap 0
        col_base = Signal(coord, init=-spec.pad_left)   # col*sw - pad_left: its column

        # target + each step, kept in registers so the look-ahead compares start at flip-flops
        after_group, after_col, after_row = (Signal(self.counter_width, name=n)
                                             for n in ("after_group", "after_col", "after_row"))
        # "this cycle's shift fires" (active, and the shift index == target), worked out a
        # cycle ahead for both outcomes of last cycle's firing decision (the index against
        # the target chosen on an update, and against the unchanged one), and picked by that
        # decision, registered: no compare sits behind the decision (decision -> compare ->
        # hit limited the clock)
        fire_if_update, fire_if_not, updated = (Signal(name=n) for n in (
            "fire_if_update", "fire_if_not", "updated"))
        would_fire = Mux(updated, fire_if_update, fire_if_not)
        # the head of the start queue, in registers: its target is compared and summed from
        # flip-flops, not through the queue's memory read (that path limited the clock)
        head_valid = Signal()
        head_target = Signal(self.counter_width)
        head_swap = Signal()
        m.d.comb += [self.would_fire.eq(would_fire), self.busy.eq(active | head_valid)]
        fire_now = self.shift & would_fire

        # Which tap rows and columns of the window lie inside the frame, in registers that
        # move with the position (the compares behind the mask limited the clock): the
        # flags of the first row (column) are constants, those of the next one compares of
        # the base with constants.
        def inside(base, step, reach, taps, size):
            """Bit n: 0 <= base + step + n*reach < size."""
            return Cat((base >= -step - n * reach) & (base < size - step - n * reach)
                       for n in range(taps))

        def first_inside(pad, reach, taps, size):
            return sum(1 << n for n in range(taps) if 0 <= n * reach - pad < size)

        row_first = first_inside(spec.pad_top, dh, kh, spec.height)
        col_first = first_inside(spec.pad_left, dw, kw, spec.width)
        row_ok = Signal(kh, init=row_first, name="row_ok")
        col_ok = Signal(kw, init=col_first, name="col_ok")
        row_next = inside(row_base, sh, dh, kh, spec.height)
        col_next = inside(col_base, sw, dw, kw, spec.width)
        # registered "at the last value" flags keep the compare-to-update path short
        last_group = Signal(init=groups == 1)
        last_col = Signal(init=spec.out_width == 1)
        last_row = Signal(init=spec.out_height == 1)
        # last_group & last_col, registered: the next output ends its line (the row moves
        # on after it), so the row registers' enable is the firing and one flip-flop (the
        # three flags behind the firing decision limited the clock)
        line_end_at_start = (groups == 1) & (spec.out_width == 1)
        line_end = Signal(init=line_end_at_start)
        # the three together, registered: the frame's last output is decided from one flag
        last_at_start = (groups == 1) & (spec.out_width == 1) & (spec.out_height == 1)
        # also set while idle: either way the next update takes the head of the start queue
        last_output = Signal(init=1)
        at_first = Signal()

        m.d.sync += [self.fire.eq(fire_now), self.swap.eq(0)]
        with m.If(fire_now):
            m.d.sync += [
                self.group.eq(group),
                self.mask.eq(Cat(row_ok[i] & col_ok[j] for i in range(kh) for j in range(kw))),
                self.first.eq(at_first),
                self.last.eq(line_end),
                at_first.eq(0),
            ]

        # "at the last but one value", registered like the last flags: last_output after a
        # move is an AND of flip-flops (a compare of the counter behind it, and behind the
        # frame-end flag, limited the clock)
        group_penult = Signal(init=groups == 2, name="group_penult")
        col_penult = Signal(init=spec.out_width == 2, name="col_penult")
        row_penult = Signal(init=spec.out_height == 2, name="row_penult")
        # the position registers, for the invariants of sim/formal.py
        self.registers = dict(
            active=active, row=row, col=col, group=group, at_first=at_first,
            last_group=last_group, last_col=last_col, last_row=last_row,
            group_penult=group_penult, col_penult=col_penult, row_penult=row_penult,
            line_end=line_end, last_output=last_output, head_valid=head_valid)
        # last_output after each kind of move: to the next group, column, row.  After the
        # frame's last output the position goes back to the frame's first, so a frame start
        # sets only ``active`` and ``last_output``: the position registers are enabled by
        # the firing decision alone (a start among their enables limited the clock).
        last_after_group = group_penult & last_col & last_row
        last_after_col = (groups == 1) & col_penult & last_row
        last_after_row = (groups == 1) & (spec.out_width == 1) & row_penult
        first_group = [group.eq(0), last_group.eq(groups == 1), group_penult.eq(groups == 2)]
        first_col = [col.eq(0), last_col.eq(spec.out_width == 1),
                     col_penult.eq(spec.out_width == 2), line_end.eq(line_end_at_start),
                     col_base.eq(-spec.pad_left), col_ok.eq(col_first)]
        with m.If(fire_now):
            with m.If(~line_end):
                with m.If(~last_group):
                    m.d.sync += [group.eq(group + 1), last_group.eq(group_penult),
                                 group_penult.eq(group == groups - 3),
                                 line_end.eq(group_penult & last_col),
                                 last_output.eq(last_after_group)]
                with m.Else():
                    m.d.sync += first_group + [
                        col.eq(col + 1), last_col.eq(col_penult),
                        col_penult.eq(col == spec.out_width - 3),
                        line_end.eq((groups == 1) & col_penult),
                        last_output.eq(last_after_col),
                        col_base.eq(col_base + sw), col_ok.eq(col_next)]
            with m.Elif(~last_row):
                m.d.sync += first_group + first_col + [
                    row.eq(row + 1), last_row.eq(row_penult),
                    row_penult.eq(row == spec.out_height - 3),
                    last_output.eq(last_after_row),
                    row_base.eq(row_base + sh), row_ok.eq(row_next)]
            with m.Else():
                m.d.sync += first_group + first_col + [
                    active.eq(0), row.eq(0), last_row.eq(spec.out_height == 1),
                    row_penult.eq(spec.out_height == 2),
                    row_base.eq(-spec.pad_top), row_ok.eq(row_first)]

        # "this shift fires the frame's last output", like the firing, worked out a cycle
        # ahead for both outcomes of the last decision: the head is taken (and the start
        # queue read) on a few flip-flops, not behind the compare and last_output (that path,
        # through the queue's read enable, limited the clock).  Inactive, the head is taken
        # at once.
        ends_if_update, ends_if_not = Signal(name="ends_if_update"), Signal(name="ends_if_not")
        ends = self.shift & Mux(updated, ends_if_update, ends_if_not)
        take = head_valid & (~active | ends)
        fetch = ~head_valid | ~active | ends      # the head is free (or freed now): refill it
        m.d.comb += self.start.ready.eq(fetch)
        with m.If(fetch):
            m.d.sync += [head_valid.eq(self.start.valid),
                         head_target.eq(self.start.payload.target),
                         head_swap.eq(self.start.payload.swap)]
        with m.If(take):
            m.d.sync += [active.eq(1), at_first.eq(1), last_output.eq(last_at_start),
                         self.swap.eq(head_swap)]

        # The next target: which candidate it is depends on flip-flops only (the position
        # flags and the head), never on the firing decision, which only says whether it is
        # taken (a clock enable).  So the successors' carry chains start one multiplexer
        # after flip-flops, and the compares run beside the decision: the scanner's update
        # (decision -> multiplexer -> adder) limited the clock.  Active, a start is taken
        # only when the last output fires, so an update is a firing or a start while idle.
        update = Signal()
        chosen = Signal(self.counter_width)
        m.d.comb += [
            update.eq(fire_now | (~active & head_valid)),
            chosen.eq(Mux(last_output, head_target,
                          Mux(~last_group, after_group,
                              Mux(~last_col, after_col, after_row)))),
        ]
        with m.If(update):
            m.d.sync += [target.eq(chosen), after_group.eq(chosen + 1),
                         after_col.eq(chosen + self.col_step),
                         after_row.eq(chosen + self.row_step)]
        # the index against the chosen target, compared with each candidate and picked by
        # the same flags (an AND-OR: behind a multiplexer yosys would merge the compares
        # into one, after the multiplexer, and that path limited the clock)
        def meets(value):
            return self.next_pos[:self.compare_width] == value[:self.compare_width]

        meets_chosen = ((last_output & meets(head_target))
                        | (~last_output & ~last_group & meets(after_group))
                        | (~last_output & last_group & ~last_col & meets(after_col))
                        | (~last_output & last_group & last_col & meets(after_row)))
        # active after an update: a frame starts, or goes on, or ends with no head to take
        active_if_update = ~last_output | head_valid    # idle, an update takes the head
        m.d.sync += [updated.eq(update),
                     fire_if_update.eq(meets_chosen & active_if_update),
                     fire_if_not.eq(meets(target) & active)]
        # last_output after an update: a new frame's, or the next output's in this frame
        # (an update that ends the frame with no head leaves the scanner inactive)
        last_if_update = Mux(last_output, last_at_start,
                             Mux(~last_group, last_after_group,
                                 Mux(~last_col, last_after_col, last_after_row)))
        m.d.sync += [ends_if_update.eq(meets_chosen & last_if_update),
                     ends_if_not.eq(meets(target) & last_output)]
        return m
