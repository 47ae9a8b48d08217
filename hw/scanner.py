"""The output scanner: decides on which shift each output's window is complete."""

from amaranth.hdl import Cat, Elaboratable, Module, Signal, signed

__all__ = ["OutputScanner"]


class OutputScanner(Elaboratable):
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
    start_valid, start_target, start_swap : in; start_take : out
        Queue of frame starts: the shift index that fires each frame's first output (the
        index of its first beat plus ``first_target``, added where the start is queued so
        no adder sits behind the queue) and whether the frame switches to newly loaded
        weights.
    fire : Signal(), out
        Registered: the taps now in the line buffer form the window of an output.
    group, mask, first, last : out, registered with ``fire``
        Channel group of the output, validity of each tap (``mask[i*kw + j]``), start of
        frame and end of line flags of the output beat.
    swap : Signal(), out
        Pulses when a frame that uses newly loaded weights begins.
    busy : Signal(), out
        A frame has outputs still to fire.
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

        self.next_pos = Signal(counter_width)
        self.shift = Signal()
        self.would_fire = Signal()
        self.start_valid = Signal()
        self.start_target = Signal(counter_width)
        self.start_swap = Signal()
        self.start_take = Signal()
        self.fire = Signal()
        self.group = Signal(range(max(groups, 2)))
        self.mask = Signal(kh * kw)
        self.first = Signal()
        self.last = Signal()
        self.swap = Signal()
        self.busy = Signal()

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
        row = Signal(range(spec.out_height))
        col = Signal(range(spec.out_width))
        group = Signal(range(max(groups, 2)))
        row_base = Signal(coord)   # row*sh - pad_top: input row of tap i=0
        col_base = Signal(coord)   # col*sw - pad_left: input column of tap j=0

        # target + each step, kept in registers so the look-ahead compares start at flip-flops
        after_group, after_col, after_row = (Signal(self.counter_width, name=n)
                                             for n in ("after_group", "after_col", "after_row"))
        new_target = Signal(self.counter_width)
        hit = Signal()   # this cycle's shift index == target, worked out a cycle ahead
        m.d.comb += [self.would_fire.eq(active & hit), self.busy.eq(active),
                     new_target.eq(target)]
        m.d.sync += [target.eq(new_target), after_group.eq(new_target + 1),
                     after_col.eq(new_target + self.col_step),
                     after_row.eq(new_target + self.row_step),
                     hit.eq(self.next_pos == target)]
        fire_now = self.shift & self.would_fire

        row_ok = [(row_base + i * dh >= 0) & (row_base + i * dh < spec.height)
                  for i in range(kh)]
        col_ok = [(col_base + j * dw >= 0) & (col_base + j * dw < spec.width)
                  for j in range(kw)]
        # registered "at the last value" flags keep the compare-to-update path short
        last_group = Signal(init=groups == 1)
        last_col = Signal(init=spec.out_width == 1)
        last_row = Signal(init=spec.out_height == 1)
        at_first = Signal()

        m.d.sync += [self.fire.eq(fire_now), self.swap.eq(0)]
        with m.If(fire_now):
            m.d.sync += [
                self.group.eq(group),
                self.mask.eq(Cat(row_ok[i] & col_ok[j] for i in range(kh) for j in range(kw))),
                self.first.eq(at_first),
                self.last.eq(last_col & last_group),
                at_first.eq(0),
            ]

        load = Signal()
        with m.If(fire_now):
            with m.If(~last_group):
                m.d.comb += new_target.eq(after_group)
                m.d.sync += [group.eq(group + 1), last_group.eq(group == groups - 2),
                             hit.eq(self.next_pos == after_group)]
            with m.Elif(~last_col):
                m.d.sync += [group.eq(0), last_group.eq(groups == 1),
                             col.eq(col + 1), last_col.eq(col == spec.out_width - 2),
                             col_base.eq(col_base + sw), hit.eq(self.next_pos == after_col)]
                m.d.comb += new_target.eq(after_col)
            with m.Elif(~last_row):
                m.d.sync += [group.eq(0), last_group.eq(groups == 1),
                             col.eq(0), last_col.eq(spec.out_width == 1),
                             col_base.eq(-spec.pad_left),
                             row.eq(row + 1), last_row.eq(row == spec.out_height - 2),
                             row_base.eq(row_base + sh), hit.eq(self.next_pos == after_row)]
                m.d.comb += new_target.eq(after_row)
            with m.Else():
                m.d.sync += [active.eq(0), hit.eq(0)]
                m.d.comb += load.eq(1)
        with m.Elif(~active):
            m.d.comb += load.eq(1)

        with m.If(load & self.start_valid):
            m.d.comb += [self.start_take.eq(1), new_target.eq(self.start_target)]
            m.d.sync += [
                active.eq(1), at_first.eq(1), hit.eq(self.next_pos == self.start_target),
                row.eq(0), col.eq(0), group.eq(0),
                last_group.eq(groups == 1), last_col.eq(spec.out_width == 1),
                last_row.eq(spec.out_height == 1),
                row_base.eq(-spec.pad_top), col_base.eq(-spec.pad_left),
                self.swap.eq(self.start_swap),
            ]
        return m
