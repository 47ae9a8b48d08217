"""Affine int8 stages around the depthwise datapath, bit-exact with ``golden.int8_ref``.

``InputOffset`` subtracts the input zero point from each lane (int8 in, 9-bit signed out),
so that the MACs see ``x - zp_in`` and padded taps, which the engine masks to 0, add
nothing.  ``PerChannelRequantizer`` turns each int32 accumulator into an int8 output with
its output channel's multiplier and shift (TFLite's ``MultiplyByQuantizedMultiplier``, the
double or the single rounding), the output zero point and the activation clamp;
``Fp32Requantizer`` does the same with the float32 scale as XNNPACK, which runs the op in
LiteRT's default interpreter.  ``Int8Engine`` puts them around a DepthwiseEngine.

All are stream stages on beats of ``data`` (an ArrayLayout of lanes), ``first`` (start of
frame) and ``last`` (end of row).  A beat for channel group g carries channels
g*L .. g*L + L - 1 (L lanes); the requantizer knows g by counting beats from each frame's
first beat modulo the number of groups.
"""

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["int8_beat", "InputOffset", "PerChannelRequantizer", "Fp32Requantizer",
           "Int8Engine", "ROUNDINGS"]

ROUNDINGS = ("double", "single")


def int8_beat(width, lanes):
    """A beat of ``lanes`` signed ``width``-bit values with the frame flags."""
    return data.StructLayout({"data": data.ArrayLayout(signed(width), lanes),
                              "first": 1, "last": 1})


class InputOffset(wiring.Component):
    """``x - zero_point`` per lane, one register stage, one beat per cycle.

    Parameters
    ----------
    lanes : int
    zero_point : int in [-128, 127]

    Members
    -------
    i : In(stream.Signature(int8_beat(8, lanes)))
    o : Out(stream.Signature(int8_beat(9, lanes)))
        Values in [-255, 255].
    """

    latency = 1

    def __init__(self, lanes, zero_point):
        # a component refused by its checks is not a forgotten one: no "never used" warning
        self._MustUse__silence = True
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        if not isinstance(zero_point, int) or not -128 <= zero_point <= 127:
            raise ValueError(f"zero_point must be an int8 value, not {zero_point!r}")
        self.lanes, self.zero_point = lanes, zero_point
        self._MustUse__silence = False
        super().__init__({"i": In(stream.Signature(int8_beat(8, lanes))),
                          "o": Out(stream.Signature(int8_beat(9, lanes)))})

    def elaborate(self, platform):
        m = Module()
        with m.If(self.i.valid & (~self.o.valid | self.o.ready)):
            m.d.comb += self.i.ready.eq(1)
            m.d.sync += [self.o.payload.first.eq(self.i.payload.first),
                         self.o.payload.last.eq(self.i.payload.last),
                         self.o.valid.eq(1)]
            for lane in range(self.lanes):
                m.d.sync += self.o.payload.data[lane].eq(
                    self.i.payload.data[lane] - self.zero_point)
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


def _pipeline_control(m, stage):
    """The shared control of a requantizer pipeline of ``stage.latency`` registers.

    All stages advance together when the output register is free or taken (``advance``,
    also the input's ready), so the rate is one beat per cycle; the frame flags and valid
    bits move along with the data.  Returns ``(advance, group)``, the group being that of
    the beat at the input: 0 on a frame's first beat, then counting modulo the groups.
    """
    advance = Signal()
    m.d.comb += [advance.eq(~stage.o.valid | stage.o.ready), stage.i.ready.eq(advance)]
    group = Signal(range(stage.groups))
    here = Signal.like(group)
    m.d.comb += here.eq(Mux(stage.i.payload.first, 0, group))
    with m.If(stage.i.valid & advance):
        m.d.sync += group.eq(Mux(here == stage.groups - 1, 0, here + 1))
    depth = stage.latency - 1
    valid = [Signal(name=f"valid_{k}") for k in range(depth)]
    flags = [(Signal(name=f"first_{k}"), Signal(name=f"last_{k}")) for k in range(depth)]
    with m.If(advance):
        m.d.sync += [valid[0].eq(stage.i.valid), flags[0][0].eq(stage.i.payload.first),
                     flags[0][1].eq(stage.i.payload.last)]
        for k in range(1, depth):
            m.d.sync += [valid[k].eq(valid[k - 1]), flags[k][0].eq(flags[k - 1][0]),
                         flags[k][1].eq(flags[k - 1][1])]
        m.d.sync += [stage.o.valid.eq(valid[-1]), stage.o.payload.first.eq(flags[-1][0]),
                     stage.o.payload.last.eq(flags[-1][1])]
    return advance, here


def _table(values, shape, group, lanes, groups, lane):
    """The constant of ``lane`` for the current group (a mux only where groups differ)."""
    column = [values[g * lanes + lane] for g in range(groups)]
    if len(set(column)) == 1:
        return Const(column[0], shape)
    return Array(Const(v, shape) for v in column)[group]


def _split_product(m, advance, a, b, name):
    """``a * b`` over two register stages (``advance`` enables them): four partial products
    of at most 18 x 18 signed bits, each registered (a DSP block with its product
    register), then their sum, registered.  Returns the sum register."""
    def parts(value):
        low = value[:17]
        high = value[17:].as_signed() if value.shape().signed else value[17:]
        return low, high

    a_lo, a_hi = parts(a)
    b_lo, b_hi = parts(b)
    partial = []
    for i, (x, y) in enumerate(((a_lo, b_lo), (a_lo, b_hi), (a_hi, b_lo), (a_hi, b_hi))):
        reg = Signal((x * y).shape(), name=f"{name}_pp{i}", reset_less=True)
        partial.append(reg)
        with m.If(advance):
            m.d.sync += reg.eq(x * y)
    total = (partial[0] + ((partial[1] + partial[2]) << 17) + (partial[3] << 34))
    product = Signal((a * b).shape(), name=f"{name}_product", reset_less=True)
    with m.If(advance):
        m.d.sync += product.eq(total)
    return product


def _saturate(value, width):
    """A signed value limited to ``width`` bits: a test of its top bits, no comparator."""
    top = value[width - 1:]
    fits = top.all() | ~top.any()
    return Mux(fits, value[:width].as_signed(),
               Mux(value[-1], -(1 << (width - 1)), (1 << (width - 1)) - 1))


def _check_table(name, values, low, high, count):
    values = [int(v) for v in values]
    if len(values) != count:
        raise ValueError(f"{name} needs {count} values (one per output channel), "
                         f"not {len(values)}")
    bad = [v for v in values if not low <= v <= high]
    if bad:
        raise ValueError(f"{name} must be in [{low}, {high}], not {bad[0]}")
    return values


class PerChannelRequantizer(wiring.Component):
    """int32 accumulators to int8, per output channel, as TFLite's integer kernels.

    ``out = clamp(MultiplyByQuantizedMultiplier(acc, M0[o], shift[o]) + zp_out, act_min,
    act_max)`` for the output channel o of each lane.  Pipeline (all stages advance
    together when the output can take a beat, so the rate is one beat per cycle):

    1. the channel's M0 and shift are selected by the group count and registered with the
       accumulator (the double rounding's left shift ``acc << max(shift, 0)``, wrapped to
       32 bits as the C++ does, is applied here);
    2. the 32 x 31-bit product as four registered partial products (DSP blocks with their
       product registers), 3. then their sum, registered;
    4. the rounding to the product's high part: ``single``: ``(p + 2**(30-shift)) >>
       (31-shift)``; ``double``: the high multiply's nudge and truncating division by
       2**31, registered, then
    5. (``double`` only) ``RoundingDivideByPOT`` by ``max(-shift, 0)``: its floor and
       rounding bit (values past 12 bits saturate: they clamp to the same int8);
    6. ``+ zp_out`` and the clamp, registered into the output.

    The double form's saturating corner (both factors -2**31) cannot occur: M0 >= 0.

    Parameters
    ----------
    acc_width : int
        Width of the signed accumulators in (at most 64); they are taken modulo 2**32, as
        TFLite's int32 accumulator.
    lanes : int
        L, accumulators per beat.
    groups : int
        Beats per pixel; the beat of group g carries channels g*L .. g*L + L - 1.
    multipliers : sequence of int
        M0 per output channel (groups * L of them), in [0, 2**31).
    shifts : sequence of int
        Per output channel, in [-31, 30].
    output_zero_point, act_min, act_max : int
        The clamp is in [-128, 127].
    rounding : "double" or "single"

    Members
    -------
    i : In(stream.Signature(int8_beat(acc_width, lanes)))
    o : Out(stream.Signature(int8_beat(8, lanes)))
    """

    def __init__(self, *, acc_width, lanes, groups, multipliers, shifts, output_zero_point,
                 act_min=-128, act_max=127, rounding="double"):
        self._MustUse__silence = True          # until the checks pass (see InputOffset)
        if not isinstance(acc_width, int) or not 2 <= acc_width <= 64:
            raise ValueError(f"acc_width must be 2 to 64 bits, not {acc_width!r}")
        for name, value in (("lanes", lanes), ("groups", groups)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, "
                             f"not {rounding!r}")
        channels = lanes * groups
        self.multipliers = _check_table("multipliers", multipliers, 0, (1 << 31) - 1, channels)
        self.shifts = _check_table("shifts", shifts, -31, 30, channels)
        if not -128 <= output_zero_point <= 127:
            raise ValueError(f"output_zero_point must be an int8 value, "
                             f"not {output_zero_point!r}")
        if not -128 <= act_min <= act_max <= 127:
            raise ValueError(f"the clamp [{act_min}, {act_max}] must be a range in int8")
        self.acc_width, self.lanes, self.groups = acc_width, lanes, groups
        self.output_zero_point, self.act_min, self.act_max = output_zero_point, act_min, act_max
        self.rounding = rounding
        self.latency = 6 if rounding == "double" else 5
        self._MustUse__silence = False
        super().__init__({"i": In(stream.Signature(int8_beat(acc_width, lanes))),
                          "o": Out(stream.Signature(int8_beat(8, lanes)))})

    def _table(self, values, shape, group, lane):
        return _table(values, shape, group, self.lanes, self.groups, lane)

    def elaborate(self, platform):
        m = Module()
        advance, here = _pipeline_control(m, self)

        for lane in range(self.lanes):
            m0 = self._table(self.multipliers, unsigned(31), here, lane)
            shift = self._table(self.shifts, signed(6), here, lane)
            acc = self.i.payload.data[lane]
            result = self._lane(m, advance, acc, m0, shift, lane)
            with m.If(advance):
                m.d.sync += self.o.payload.data[lane].eq(result)
        return m

    def _lane(self, m, advance, acc, m0, shift, lane):
        """The lane's pipeline up to the last stage; returns the value the output takes."""
        def reg(shape, name):
            return Signal(shape, name=f"l{lane}_{name}", reset_less=True)

        acc32 = Signal(signed(32))
        m.d.comb += acc32.eq(acc[:32] if self.acc_width >= 32 else acc)
        # stage 1: operands (and the channel's shift, carried along)
        a = reg(signed(32), "a")
        b = reg(unsigned(31), "m0")
        s1 = reg(signed(6), "shift1")
        if self.rounding == "double":
            left = Signal(range(31))
            m.d.comb += left.eq(Mux(shift[-1], 0, shift[:5]))
            shifted = Signal(signed(32))
            m.d.comb += shifted.eq((acc32 << left)[:32])
            operand = shifted
        else:
            operand = acc32
        # stages 2 and 3: the product, as registered partial products and their sum
        product = _split_product(m, advance, a, b, f"l{lane}")
        s1b = reg(signed(6), "shift1b")
        s2 = reg(signed(6), "shift2")
        with m.If(advance):
            m.d.sync += [a.eq(operand), b.eq(m0), s1.eq(shift), s1b.eq(s1), s2.eq(s1b)]

        if self.rounding == "single":
            # stage 4: (p + 2**(30 - shift)) >> (31 - shift) is ((p >> (30 - shift)) + 1) >> 1
            # (the half is added after the shift): the barrel shift, saturated to 12 bits
            # (any value past them clamps to the same int8 after the zero point)
            half = Signal(range(63), name=f"l{lane}_half")
            m.d.comb += half.eq(30 - s2)
            shifted = Signal(signed(64), name=f"l{lane}_shifted")
            m.d.comb += shifted.eq(product >> half)
            q = reg(signed(12), "q")
            with m.If(advance):
                m.d.sync += q.eq(_saturate(shifted, 12))
            # the output stage adds the half
            value = (q + 1) >> 1
        else:
            # stage 4: SaturatingRoundingDoublingHighMul, trunc((p + nudge) / 2**31) with the
            # nudge 2**30 or 1 - 2**30 by the sign of p, is ceil((p >> 30) / 2) for both signs
            # (the nudge's corner, both factors -2**31, cannot occur: M0 >= 0)
            high = reg(signed(32), "high")
            s3 = reg(signed(6), "shift3")
            with m.If(advance):
                m.d.sync += [high.eq(((product >> 30) + 1) >> 1), s3.eq(s2)]
            # stage 5: RoundingDivideByPOT by max(-shift, 0), halves away from zero: the floor
            # (saturated as above) and whether the remainder rounds it up
            right = Signal(range(32), name=f"l{lane}_right")
            m.d.comb += right.eq(Mux(s3[-1], -s3, 0))
            mask = Signal(unsigned(32), name=f"l{lane}_mask")
            m.d.comb += mask.eq((Const(1, unsigned(33)) << right) - 1)
            remainder = Signal(unsigned(32), name=f"l{lane}_remainder")
            m.d.comb += remainder.eq(high.as_unsigned() & mask)
            threshold = Signal(unsigned(32), name=f"l{lane}_threshold")
            m.d.comb += threshold.eq((mask >> 1) + high[-1])
            floor = reg(signed(12), "floor")
            up = reg(1, "up")
            with m.If(advance):
                m.d.sync += [floor.eq(_saturate(high >> right, 12)),
                             up.eq(remainder > threshold)]
            value = floor + up
        # last stage: output zero point and clamp
        out = Signal(signed(len(value) + 2))
        m.d.comb += out.eq(value + self.output_zero_point)
        return Mux(out > self.act_max, self.act_max, Mux(out < self.act_min, self.act_min, out))


def _float32_parts(scale):
    """A float32 scale as (24-bit integer mantissa, exponent): scale == mantissa * 2**exp."""
    value = np.float32(scale)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"scales must be finite and not negative, not {scale!r}")
    if value == 0:
        return 0, 0
    bits = int(value.view(np.uint32))
    exponent, fraction = (bits >> 23) & 0xFF, bits & 0x7FFFFF
    if exponent == 0:
        raise ValueError(f"scale {scale!r} is a float32 subnormal (below 2**-126); "
                         f"such scales are not supported")
    return fraction | 1 << 23, exponent - 150


def _leading_one(m, value, name):
    """The index of the highest set bit of an unsigned 32-bit value (0 when it is 0), as a
    tree: each level halves the window by whether its upper half has a bit set."""
    index = []
    window = value
    for level in reversed(range(5)):
        half = 1 << level
        upper = Signal(name=f"{name}_b{level}")
        m.d.comb += upper.eq(window[half:2 * half].any())
        narrowed = Signal(half, name=f"{name}_w{level}")
        m.d.comb += narrowed.eq(Mux(upper, window[half:2 * half], window[:half]))
        index.append(upper)
        window = narrowed
    return Cat(*reversed(index))


def _round_even_at(value, drop):
    """``value >> drop`` rounded to nearest, ties to even, for an unsigned ``value`` and a
    small variable ``drop`` >= 1: the round bit, the OR of the bits below it (each under
    its own mask bit, no comparator) and the parity of the result."""
    floor = value >> drop
    round_bit = (Cat(0, value) >> drop)[0]            # bit drop - 1 of value
    below = Cat(*[value[k] & (k + 1 < drop) for k in range(len(value))]).any()
    return floor + (round_bit & (below | floor[0]))


class Fp32Requantizer(wiring.Component):
    """int32 accumulators to int8 as LiteRT's default interpreter (XNNPACK's fp32 form).

    ``out = clamp(rint(float32(float32(acc) * scale[o])) + zp_out, act_min, act_max)``, ties
    to even, in integer logic.  ``float32(|acc|)`` is ``A * 2**k`` with A normalized to
    [2**23, 2**24] (rounded to 24 bits, ties to even, when |acc| >= 2**24); the scale is
    ``S * 2**e`` (S in [2**23, 2**24)), so ``A * S`` lies in [2**46, 2**48) and its float32
    rounding drops 23 or 24 bits, by its top bit: ``R * 2**E``.  The result is R shifted
    right by -E, rounded to nearest, ties to even, with the sign of acc; a shift below 15
    leaves at least 512 (saturated: after the zero point the int8 clamp gives the same), one
    above 25 leaves 0.  Pipeline, one register each: magnitude, sign and the channel's
    constants; the magnitude's top bit; the normalizing shift; A and k; the 25 x 24-bit
    product as four partial products (DSP blocks), then their sum; R and the shift; R's
    shifted floor with its round and sticky bits; the integer; sign, zero point and clamp
    into the output.

    Parameters
    ----------
    acc_width, lanes, groups, output_zero_point, act_min, act_max
        As PerChannelRequantizer's (accumulators are taken modulo 2**32).
    scales : sequence of float
        float32 scale per output channel, ``(in_scale * w_scale[o]) / out_scale``; 0 or
        normal (subnormal scales, below 2**-126, are refused).

    Members
    -------
    i : In(stream.Signature(int8_beat(acc_width, lanes)))
    o : Out(stream.Signature(int8_beat(8, lanes)))
    """

    latency = 10
    rounding = "fp32"
    SATURATED = 511

    def __init__(self, *, acc_width, lanes, groups, scales, output_zero_point, act_min=-128,
                 act_max=127):
        self._MustUse__silence = True          # until the checks pass (see InputOffset)
        if not isinstance(acc_width, int) or not 2 <= acc_width <= 64:
            raise ValueError(f"acc_width must be 2 to 64 bits, not {acc_width!r}")
        for name, value in (("lanes", lanes), ("groups", groups)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if len(scales) != lanes * groups:
            raise ValueError(f"scales needs {lanes * groups} values (one per output channel),"
                             f" not {len(scales)}")
        if not -128 <= output_zero_point <= 127:
            raise ValueError(f"output_zero_point must be an int8 value, "
                             f"not {output_zero_point!r}")
        if not -128 <= act_min <= act_max <= 127:
            raise ValueError(f"the clamp [{act_min}, {act_max}] must be a range in int8")
        parts = [_float32_parts(s) for s in scales]
        self.mantissas = [p[0] for p in parts]
        # the shift of R is -(k + 23 + top + e) = offset - k - top, offset = -(23 + e),
        # limited to what a 10-bit signed shift holds (past +-300 the answer is the same)
        self.offsets = [max(-300, min(300, -(23 + e))) for _, e in parts]
        self.acc_width, self.lanes, self.groups = acc_width, lanes, groups
        self.output_zero_point, self.act_min, self.act_max = output_zero_point, act_min, act_max
        self._MustUse__silence = False
        super().__init__({"i": In(stream.Signature(int8_beat(acc_width, lanes))),
                          "o": Out(stream.Signature(int8_beat(8, lanes)))})

    def elaborate(self, platform):
        m = Module()
        advance, here = _pipeline_control(m, self)
        for lane in range(self.lanes):
            self._lane(m, advance, here, lane)
        return m

    def _lane(self, m, advance, here, lane):
        def reg(shape, name):
            return Signal(shape, name=f"l{lane}_{name}", reset_less=True)

        def delayed(value, shape, name, stages):
            chain = [reg(shape, f"{name}{k}") for k in range(stages)]
            with m.If(advance):
                m.d.sync += chain[0].eq(value)
                m.d.sync += [chain[k].eq(chain[k - 1]) for k in range(1, stages)]
            return chain

        acc = self.i.payload.data[lane]
        acc32 = Signal(signed(32), name=f"l{lane}_acc32")
        m.d.comb += acc32.eq(acc[:32] if self.acc_width >= 32 else acc)
        # 1: magnitude, sign and the channel's constants
        magnitude = reg(unsigned(32), "magnitude")
        with m.If(advance):
            m.d.sync += magnitude.eq(Mux(acc32[-1], -acc32, acc32))
        sign = delayed(acc32[-1], 1, "sign", 9)
        mantissa = delayed(_table(self.mantissas, unsigned(24), here, self.lanes, self.groups,
                                  lane), unsigned(24), "mantissa", 4)
        offset = delayed(_table(self.offsets, signed(10), here, self.lanes, self.groups,
                                lane), signed(10), "offset", 6)
        # 2: the magnitude's top bit
        top = reg(range(32), "top")
        magnitude2 = reg(unsigned(32), "magnitude2")
        with m.If(advance):
            m.d.sync += [top.eq(_leading_one(m, magnitude, f"l{lane}_lz")),
                         magnitude2.eq(magnitude)]
        # 3: from it the shift that normalizes the magnitude (down by drop with rounding,
        # or up by lift) and the exponent k
        magnitude3 = reg(unsigned(32), "magnitude3")
        big = reg(1, "big")
        drop = reg(range(9), "drop")
        lift = reg(range(24), "lift")
        k = reg(signed(6), "k")
        with m.If(advance):
            m.d.sync += [magnitude3.eq(magnitude2), big.eq(top > 23),
                         drop.eq(Mux(top > 23, top - 23, 0)),
                         lift.eq(Mux(top < 23, 23 - top, 0)),
                         k.eq(Cat(top, Const(0, 1)).as_signed() - 23)]
        # 4: float32(|acc|) = A * 2**k, A normalized to [2**23, 2**24]
        a = reg(unsigned(25), "a")
        with m.If(advance):
            m.d.sync += a.eq(Mux(big, _round_even_at(magnitude3, drop), magnitude3 << lift))
        k5 = delayed(k, signed(6), "k", 3)
        # 5, 6: A * S, in [2**46, 2**48) (0 when acc or the scale is 0)
        product = _split_product(m, advance, a, mantissa[3], f"l{lane}")
        # 7: its float32 rounding R (24 bits kept: 23 or 24 dropped), and the shift of R
        # clamped to 15..25 with flags for beyond (the compares stay out of stage 7)
        r = reg(unsigned(25), "r")
        high = product[47]
        shift = Signal(signed(11), name=f"l{lane}_shift")
        m.d.comb += shift.eq(offset[5] - k5[2] - high)
        amount = reg(range(26), "amount")
        few = reg(1, "few")          # shift below 15: R >> shift is at least 512
        many = reg(1, "many")        # shift above 25: R >> shift rounds to 0
        with m.If(advance):
            m.d.sync += [r.eq(Mux(high, _round_even_at(product[:48], 24),
                                  _round_even_at(product[:48], 23))),
                         amount.eq(Mux(shift < 15, 15, Mux(shift > 25, 25, shift))),
                         few.eq(shift < 15), many.eq(shift > 25)]
        # 8: R >> shift: its floor, round bit and sticky bit (the OR of the bits below)
        floor = reg(unsigned(11), "floor")
        round_bit = reg(1, "round_bit")
        sticky = reg(1, "sticky")
        zero = reg(1, "zero")
        few7 = reg(1, "few7")
        with m.If(advance):
            m.d.sync += [floor.eq(r >> amount), round_bit.eq((Cat(0, r) >> amount)[0]),
                         sticky.eq(Cat(*[r[k] & (k + 1 < amount)
                                         for k in range(len(r))]).any()),
                         zero.eq((r == 0) | many), few7.eq(few & (r != 0))]
        # 9: to the nearest integer, ties to even; saturated at 512 and above
        q = reg(unsigned(10), "q")
        integer = Signal(unsigned(11), name=f"l{lane}_integer")
        m.d.comb += integer.eq(floor + (round_bit & (sticky | floor[0])))
        with m.If(advance):
            with m.If(zero):
                m.d.sync += q.eq(0)
            with m.Elif(few7 | integer[9:].any()):
                m.d.sync += q.eq(self.SATURATED)
            with m.Else():
                m.d.sync += q.eq(integer)
        # 10: sign, zero point, clamp
        value = Signal(signed(12), name=f"l{lane}_value")
        m.d.comb += value.eq(Mux(sign[8], -q, q) + self.output_zero_point)
        with m.If(advance):
            m.d.sync += self.o.payload.data[lane].eq(
                Mux(value > self.act_max, self.act_max,
                    Mux(value < self.act_min, self.act_min, value)))


class Int8Engine(wiring.Component):
    """A full-integer int8 DEPTHWISE_CONV_2D: LiteRT's integer kernel as a stream engine.

    ::

        s_axis -> InputOffset (x - zp_in) -> DepthwiseEngine (exact int32 sums + bias)
               -> Fp32Requantizer or PerChannelRequantizer (zp_out, clamp) -> m_axis

    The inner engine computes with input ``fixed<9,9>`` (the offset values), weights
    ``fixed<8,8>``, bias ``fixed<32,32>`` and, as its output format, its exact accumulator,
    so the requantizer receives each sum unchanged.  Padded taps are masked to 0 inside the
    engine, which is what TFLite's skipped taps add.

    Parameters
    ----------
    spec : LayerSpec
        Geometry; its activation is not used (the clamp is the requantizer's).
    lanes : int
        P, input channels per beat.
    kernel : int array (kh, kw, C, M), int8 values
    bias : int array (C*M,), int32 values
    input_zero_point, output_zero_point, act_min, act_max : int
    multipliers, shifts : sequences of int, one per output channel
        M0 and shift, for the double and single roundings (``PerChannelRequantizer``).
    scales : sequence of float, one per output channel
        float32 scales, for the fp32 rounding (``Fp32Requantizer``).
    rounding : "fp32" (LiteRT's default interpreter), "double" (its reference kernels) or
        "single"
    reuse, target : as DepthwiseEngine's

    Members
    -------
    s_axis_tdata, s_axis_tvalid, s_axis_tuser, s_axis_tlast : In; s_axis_tready : Out
        P int8 lanes, lane 0 in the least significant bits.
    m_axis_tdata, m_axis_tvalid, m_axis_tuser, m_axis_tlast : Out; m_axis_tready : In
        P*M int8 lanes in the inner engine's channel order.
    error : Out
        The inner engine's: a malformed input frame was seen.
    """

    _MustUse__silence = True      # built for its figures too (see DepthwiseEngine)
    weights = "const"

    def __init__(self, spec, lanes, kernel, bias, *, input_zero_point, output_zero_point,
                 multipliers=None, shifts=None, scales=None, act_min=-128, act_max=127,
                 rounding="fp32", reuse=1, target=None):
        from dataclasses import replace

        from ..golden.fixed import QFormat
        from ..golden.formats import LayerFormats
        from .engine import DepthwiseEngine

        spec.check_lanes(lanes)
        if rounding not in ("fp32",) + ROUNDINGS:
            raise ValueError(f"rounding must be fp32, double or single, not {rounding!r}")
        # checked before any part exists, so a refused engine leaves no unused component
        if rounding == "fp32" and scales is None:
            raise ValueError("the fp32 rounding needs the float32 scales")
        if rounding != "fp32" and (multipliers is None or shifts is None):
            raise ValueError(f"the {rounding} rounding needs multipliers and shifts")
        self.spec, self.lanes, self.rounding = spec, lanes, rounding
        self.groups = spec.channels // lanes
        self.out_lanes = lanes * spec.depth_multiplier
        int8 = QFormat.parse("fixed<8,8>")
        inner = LayerFormats(input=QFormat.parse("fixed<9,9>"), weight=int8,
                             bias=QFormat.parse("fixed<32,32>"), accum=None, output=int8)
        inner = replace(inner, output=inner.exact_accumulator(spec.taps))
        #: the formats seen at the ports (what the simulators pack and unpack)
        self.formats = replace(inner, input=int8, output=int8)
        self.offset = InputOffset(lanes, input_zero_point)
        self.engine = DepthwiseEngine(replace(spec, activation="linear"), inner, lanes,
                                      kernel, bias, reuse=reuse, target=target)
        common = dict(acc_width=inner.output.width, lanes=self.out_lanes, groups=self.groups,
                      output_zero_point=output_zero_point, act_min=act_min, act_max=act_max)
        if rounding == "fp32":
            self.requantizer = Fp32Requantizer(**common, scales=scales)
        else:
            self.requantizer = PerChannelRequantizer(**common, multipliers=multipliers,
                                                     shifts=shifts, rounding=rounding)
        self.reuse = self.engine.reuse
        self.latency = self.engine.latency + self.offset.latency + self.requantizer.latency
        self.queue_depth = self.engine.queue_depth
        super().__init__({
            "s_axis_tdata": In(lanes * 8), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "s_axis_tuser": In(1), "s_axis_tlast": In(1),
            "m_axis_tdata": Out(self.out_lanes * 8), "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1), "m_axis_tuser": Out(1), "m_axis_tlast": Out(1),
            "error": Out(1),
        })

    @classmethod
    def from_layer(cls, layer, lanes=1, rounding="fp32", **kwargs):
        """From a ``golden.int8_ref.Int8Layer``: its float32 scales, or M0/shift for the
        double and single roundings."""
        if rounding not in ("fp32",) + ROUNDINGS:
            raise ValueError(f"rounding must be fp32, double or single, not {rounding!r}")
        if rounding == "fp32":
            factors = {"scales": [float(s) for s in layer.float_scales()]}
        else:
            multipliers, shifts = layer.quantized_multipliers(rounding)
            factors = {"multipliers": multipliers, "shifts": shifts}
        return cls(layer.spec, lanes, layer.kernel, layer.bias,
                   input_zero_point=layer.input_zero_point,
                   output_zero_point=layer.output_zero_point, act_min=layer.act_min,
                   act_max=layer.act_max, rounding=rounding, **factors, **kwargs)

    def _connect_inner(self, m, offset, requantizer):
        """The glue to the inner engine's flat AXI ports (one place to change if it is
        replaced by a stream-native core)."""
        engine = self.engine
        m.d.comb += [
            engine.s_axis_tdata.eq(offset.o.payload.data.as_value()),
            engine.s_axis_tuser.eq(offset.o.payload.first),
            engine.s_axis_tlast.eq(offset.o.payload.last),
            engine.s_axis_tvalid.eq(offset.o.valid), offset.o.ready.eq(engine.s_axis_tready),
            requantizer.i.payload.data.as_value().eq(engine.m_axis_tdata),
            requantizer.i.payload.first.eq(engine.m_axis_tuser),
            requantizer.i.payload.last.eq(engine.m_axis_tlast),
            requantizer.i.valid.eq(engine.m_axis_tvalid),
            engine.m_axis_tready.eq(requantizer.i.ready),
            self.error.eq(engine.error),
        ]

    def elaborate(self, platform):
        m = Module()
        m.submodules.offset = offset = self.offset
        m.submodules.engine = self.engine
        m.submodules.requantizer = requantizer = self.requantizer
        m.d.comb += [
            offset.i.payload.data.as_value().eq(self.s_axis_tdata),
            offset.i.payload.first.eq(self.s_axis_tuser),
            offset.i.payload.last.eq(self.s_axis_tlast),
            offset.i.valid.eq(self.s_axis_tvalid), self.s_axis_tready.eq(offset.i.ready),
            self.m_axis_tdata.eq(requantizer.o.payload.data.as_value()),
            self.m_axis_tuser.eq(requantizer.o.payload.first),
            self.m_axis_tlast.eq(requantizer.o.payload.last),
            self.m_axis_tvalid.eq(requantizer.o.valid),
            requantizer.o.ready.eq(self.m_axis_tready),
        ]
        self._connect_inner(m, offset, requantizer)
        return m
