"""int8 requantizers: int32 accumulators to int8 outputs, bit-exact with ``golden.int8_ref``.

``PerChannelRequantizer`` applies its output channel's multiplier and shift (TFLite's
``MultiplyByQuantizedMultiplier``, the double or the single rounding), the output zero
point and the activation clamp; ``Fp32Requantizer`` does the same with the float32 scale
as XNNPACK, which runs the op in LiteRT's default interpreter.  Both are stream stages on
``int8_beat`` payloads; a beat for channel group g carries channels g*L .. g*L + L - 1 (L
lanes), and the group is counted from each frame's first beat modulo the groups.  Their
per-channel constants sit in a ``ChannelTable``: built in, or loaded through a port.
"""

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .int8_offset import int8_beat
from .int8_table import ChannelTable, table_load_layout

__all__ = ["PerChannelRequantizer", "Fp32Requantizer", "ROUNDINGS", "LATENCY",
           "requantizer_entries", "table_words"]

ROUNDINGS = ("double", "single")


def _pipeline_control(m, stage):
    """The shared control of a requantizer pipeline of ``stage.latency`` registers.

    All stages advance together when the output register is free or taken (``advance``,
    also the input's ready), so the rate is one beat per cycle; the frame flags and valid
    bits move along with the data.  Returns ``(advance, group)``, the group being that of
    the beat at the input: 0 on a frame's first beat, then counting modulo the groups.
    """
    advance = Signal()
    m.d.comb += [advance.eq(~stage.o.valid | stage.o.ready), stage.i.ready.eq(advance)]
    group = Signal(range(max(stage.groups, 2)))   # no zero-width signal with one group
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


#: One channel's constants in each requantizer's ``ChannelTable``.
PER_CHANNEL_LAYOUT = data.StructLayout({"m0": unsigned(31), "shift": signed(6)})
FP32_LAYOUT = data.StructLayout({"mantissa": unsigned(24), "offset": signed(10)})

#: Cycles from a beat taken to its result at the output, per rounding.
LATENCY = {"fp32": 10, "double": 6, "single": 5}


def requantizer_entries(rounding, channels, *, multipliers=None, shifts=None, scales=None):
    """The checked per-channel constants of a requantizer, as ``ChannelTable`` entries:
    ``{"m0", "shift"}`` for the double and single roundings, ``{"mantissa", "offset"}``
    (the float32 scale as ``mantissa * 2**(-23 - offset)``) for fp32."""
    if rounding not in ("fp32",) + ROUNDINGS:
        raise ValueError(f"rounding must be fp32, double or single, not {rounding!r}")
    if rounding == "fp32":
        if scales is None:
            raise ValueError("the fp32 rounding needs the float32 scales")
        if len(scales) != channels:
            raise ValueError(f"scales needs {channels} values (one per output channel), "
                             f"not {len(scales)}")
        parts = [_float32_parts(s) for s in scales]
        # the shift of R is -(k + 23 + top + e) = offset - k - top, offset = -(23 + e),
        # limited to what a 10-bit signed shift holds (past +-300 the answer is the same)
        return [{"mantissa": mantissa, "offset": max(-300, min(300, -(23 + e)))}
                for mantissa, e in parts]
    if multipliers is None or shifts is None:
        raise ValueError(f"the {rounding} rounding needs multipliers and shifts")
    multipliers = _check_table("multipliers", multipliers, 0, (1 << 31) - 1, channels)
    shifts = _check_table("shifts", shifts, -31, 30, channels)
    return [{"m0": m0, "shift": shift} for m0, shift in zip(multipliers, shifts)]


def table_words(rounding, channels, *, multipliers=None, shifts=None, scales=None):
    """A requantizer's table load (``weights="port"``), checked: per output channel M0
    then the shift (two's complement in 32 bits) for the double and single roundings, the
    float32 scale's bits for fp32."""
    requantizer_entries(rounding, channels, multipliers=multipliers, shifts=shifts,
                        scales=scales)
    if rounding == "fp32":
        return [int(np.float32(s).view(np.uint32)) for s in scales]
    return [int(v) & 0xFFFFFFFF for pair in zip(multipliers, shifts) for v in pair]


def _decode_per_channel(words):
    return {"m0": words[0][:31], "shift": words[1][:6]}


def _decode_fp32(words):
    """A float32's bits as the table's mantissa and offset (an exponent field of 0 as 0)."""
    bits = words[0]
    exponent = bits[23:31]
    return {"mantissa": Mux(exponent.any(), Cat(bits[:23], Const(1, 1)), 0),
            "offset": 127 - exponent}


def _check_stage(acc_width, lanes, groups, output_zero_point, act_min, act_max, weights):
    if not isinstance(acc_width, int) or not 2 <= acc_width <= 64:
        raise ValueError(f"acc_width must be 2 to 64 bits, not {acc_width!r}")
    for name, value in (("lanes", lanes), ("groups", groups)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    if not -128 <= output_zero_point <= 127:
        raise ValueError(f"output_zero_point must be an int8 value, not {output_zero_point!r}")
    if not -128 <= act_min <= act_max <= 127:
        raise ValueError(f"the clamp [{act_min}, {act_max}] must be a range in int8")
    if weights not in ("const", "port"):
        raise ValueError(f"weights must be 'const' or 'port', not {weights!r}")


def _members(acc_width, lanes, weights):
    members = {"i": In(stream.Signature(int8_beat(acc_width, lanes))),
               "o": Out(stream.Signature(int8_beat(8, lanes)))}
    if weights == "port":
        members.update({"load": In(stream.Signature(table_load_layout())), "apply": In(1),
                        "cancel": In(1), "error": Out(1)})
    return members


def _channel_table(m, stage, here, advance):
    """The stage's ChannelTable, read by the group of the beat at its input."""
    m.submodules.table = table = ChannelTable(
        stage.layout, lanes=stage.lanes, groups=stage.groups, entries=stage.entries,
        mode=stage.weights, words=stage.words, decode=stage.decode)
    m.d.comb += table.group.eq(here)
    if stage.weights == "port":
        m.d.comb += [table.first.eq(stage.i.payload.first),
                     table.take.eq(stage.i.valid & advance),
                     table.apply.eq(stage.apply), table.cancel.eq(stage.cancel),
                     stage.error.eq(table.error)]
        wiring.connect(m, wiring.flipped(stage.load), table.load)
    return table


class _RequantizerStage(wiring.Component):
    """What both requantizers keep of their arguments, and their ports (``_members``).  A
    subclass checks its arguments first (silenced until then: see InputOffset)."""

    def __init__(self, acc_width, lanes, groups, output_zero_point, act_min, act_max, weights):
        self.acc_width, self.lanes, self.groups = acc_width, lanes, groups
        self.output_zero_point, self.act_min, self.act_max = output_zero_point, act_min, act_max
        self.weights = weights
        self._MustUse__silence = False
        super().__init__(_members(acc_width, lanes, weights))


class PerChannelRequantizer(_RequantizerStage):
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
    weights : "const" or "port"
        M0 and shift built in, or loaded through ``load``: per output channel, in channel
        order, M0 (a 32-bit word, the top bit 0) then the shift (two's complement, its low
        6 bits used), ``last`` on the final word.  See ``ChannelTable`` for when a load
        takes effect; until then the values above are used.

    Members
    -------
    i : In(stream.Signature(int8_beat(acc_width, lanes)))
    o : Out(stream.Signature(int8_beat(8, lanes)))
    load : In(stream.Signature(table_load_layout())); apply, cancel : In(1); error : Out(1)
        ``port`` mode only: the load words; a frame whose first beat is taken with
        ``apply`` high takes a complete load; ``cancel`` drops a complete load; a discarded
        load's pulse.
    """

    layout = PER_CHANNEL_LAYOUT
    words = 2
    decode = staticmethod(_decode_per_channel)

    def __init__(self, *, acc_width, lanes, groups, multipliers, shifts, output_zero_point,
                 act_min=-128, act_max=127, rounding="double", weights="const"):
        self._MustUse__silence = True          # until the checks pass (see InputOffset)
        _check_stage(acc_width, lanes, groups, output_zero_point, act_min, act_max, weights)
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, "
                             f"not {rounding!r}")
        self.entries = requantizer_entries(rounding, lanes * groups, multipliers=multipliers,
                                           shifts=shifts)
        self.multipliers = [e["m0"] for e in self.entries]
        self.shifts = [e["shift"] for e in self.entries]
        self.rounding = rounding
        self.latency = LATENCY[rounding]
        super().__init__(acc_width, lanes, groups, output_zero_point, act_min, act_max, weights)

    def elaborate(self, platform):
        m = Module()
        advance, here = _pipeline_control(m, self)
        table = _channel_table(m, self, here, advance)
        for lane in range(self.lanes):
            entry = table.entry[lane]
            acc = self.i.payload.data[lane]
            result = self._lane(m, advance, acc, entry.m0, entry.shift, lane)
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


def _round_even_at(value, drop, most):
    """``value >> drop`` rounded to nearest, ties to even, for an unsigned ``value`` and a
    small ``drop`` in [1, most]: the round bit, the OR of the bits below it (each under its
    own mask bit, no comparator; only bits that some drop puts below, so no compare is
    constant) and the parity of the result."""
    floor = value >> drop
    round_bit = (Cat(0, value) >> drop)[0]            # bit drop - 1 of value
    below = Cat(*[value[k] & (k + 1 < drop) for k in range(min(len(value), most - 1))]).any()
    return floor + (round_bit & (below | floor[0]))


class Fp32Requantizer(_RequantizerStage):
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
    weights : "const" or "port"
        Scales built in, or loaded through ``load``: per output channel, in channel order,
        the float32 scale's bits (one 32-bit word; its sign is not used, and an exponent
        field of 0, a zero or subnormal scale, acts as 0), ``last`` on the final word.

    Members
    -------
    i, o, load, apply, cancel, error
        As PerChannelRequantizer's.
    """

    latency = LATENCY["fp32"]
    rounding = "fp32"
    SATURATED = 511

    layout = FP32_LAYOUT
    words = 1
    decode = staticmethod(_decode_fp32)

    def __init__(self, *, acc_width, lanes, groups, scales, output_zero_point, act_min=-128,
                 act_max=127, weights="const"):
        self._MustUse__silence = True          # until the checks pass (see InputOffset)
        _check_stage(acc_width, lanes, groups, output_zero_point, act_min, act_max, weights)
        self.entries = requantizer_entries("fp32", lanes * groups, scales=scales)
        self.mantissas = [e["mantissa"] for e in self.entries]
        self.offsets = [e["offset"] for e in self.entries]
        super().__init__(acc_width, lanes, groups, output_zero_point, act_min, act_max, weights)

    def elaborate(self, platform):
        m = Module()
        advance, here = _pipeline_control(m, self)
        table = _channel_table(m, self, here, advance)
        for lane in range(self.lanes):
            self._lane(m, advance, table.entry[lane], lane)
        return m

    def _lane(self, m, advance, entry, lane):
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
        mantissa = delayed(entry.mantissa, unsigned(24), "mantissa", 4)
        offset = delayed(entry.offset, signed(10), "offset", 6)
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
            m.d.sync += a.eq(Mux(big, _round_even_at(magnitude3, drop, 8), magnitude3 << lift))
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
            m.d.sync += [r.eq(Mux(high, _round_even_at(product[:48], 24, 24),
                                  _round_even_at(product[:48], 23, 23))),
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
