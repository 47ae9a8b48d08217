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
    pos : Signal(counter_width), in
        Index of the shift that may happen this cycle.
    shift : Signal(), in
    would_fire : Signal(), out
        The shift at ``pos``, if it happens, completes an output window.
    start_valid, start_pos, start_swap : in; start_take : out
        Queue of frame starts (shift index of each frame's first beat, and whether the
        frame switches to newly loaded weights).
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
        sh, sw = spec.strides
        dh, dw = spec.dilation_rate
        width = spec.width
        self.first_target, self.col_step, self.row_step, self.last_target = \
            self.targets(spec, lanes, extra)
        if self.last_target + 2 >= 2 ** counter_width:
            raise ValueError(f"counter_width {counter_width} too small for targets up to "
                             f"{self.last_target}")
        self.counter_width = counter_width

        self.pos = Signal(counter_width)
        self.shift = Signal()
        self.would_fire = Signal()
        self.start_valid = Signal()
        self.start_pos = Signal(counter_width)
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

        m.d.comb += [self.would_fire.eq(active & (self.pos == target)), self.busy.eq(active)]
        fire_now = self.shift & self.would_fire

        row_ok = [(row_base + i * dh >= 0) & (row_base + i * dh < spec.height)
                  for i in range(kh)]
        col_ok = [(col_base + j * dw >= 0) & (col_base + j * dw < spec.width)
                  for j in range(kw)]
        last_group = group == groups - 1
        last_col = col == spec.out_width - 1
        last_row = row == spec.out_height - 1

        m.d.sync += [self.fire.eq(fire_now), self.swap.eq(0)]
        with m.If(fire_now):
            m.d.sync += [
                self.group.eq(group),
                self.mask.eq(Cat(row_ok[i] & col_ok[j] for i in range(kh) for j in range(kw))),
                self.first.eq((row == 0) & (col == 0) & (group == 0)),
                self.last.eq(last_col & last_group),
            ]

        load = Signal()
        with m.If(fire_now):
            with m.If(~last_group):
                m.d.sync += [group.eq(group + 1), target.eq(target + 1)]
            with m.Elif(~last_col):
                m.d.sync += [group.eq(0), col.eq(col + 1), col_base.eq(col_base + sw),
                             target.eq(target + self.col_step)]
            with m.Elif(~last_row):
                m.d.sync += [group.eq(0), col.eq(0), col_base.eq(-spec.pad_left),
                             row.eq(row + 1), row_base.eq(row_base + sh),
                             target.eq(target + self.row_step)]
            with m.Else():
                m.d.sync += active.eq(0)
                m.d.comb += load.eq(1)
        with m.Elif(~active):
            m.d.comb += load.eq(1)

        with m.If(load & self.start_valid):
            m.d.comb += self.start_take.eq(1)
            m.d.sync += [
                active.eq(1), target.eq(self.start_pos + self.first_target),
                row.eq(0), col.eq(0), group.eq(0),
                row_base.eq(-spec.pad_top), col_base.eq(-spec.pad_left),
                self.swap.eq(self.start_swap),
            ]
        return m
