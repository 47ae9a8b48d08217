"""The requantizer: moves a value to a narrower fixed-point format, bit-exact with golden."""

from amaranth.hdl import Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .activation import Activation

__all__ = ["Requantizer", "format_shape", "output_stages"]


def format_shape(fmt):
    """Amaranth shape of a QFormat's raw integer."""
    return signed(fmt.width) if fmt.signed else unsigned(fmt.width)


def _above(value, high):
    """``value > high`` for a signed ``value``.  Against a format's top, 2**k - 1, that is a
    test of the high bits (a shallow OR) instead of a carry chain as long as the value."""
    k = (high + 1).bit_length() - 1
    if high < 0 or high + 1 != 1 << k:
        return value > high
    return ~value[-1] & value[k:-1].any() if k < len(value) - 1 else Const(0, 1)


def _below(value, low):
    """``value < low`` for a signed ``value``; against 0 or -2**k, a test of the high bits."""
    if low == 0:
        return value[-1]
    k = (-low).bit_length() - 1
    if low > 0 or -low != 1 << k:
        return value < low
    return value[-1] & ~value[k:-1].all() if k < len(value) - 1 else Const(0, 1)


class Requantizer(wiring.Component):
    """Converts ``i`` (``in_frac`` fraction bits) to ``fmt`` with its rounding and overflow.

    The same three steps as ``QFormat.convert``: floor by an arithmetic shift, add the
    rounding increment chosen from the first dropped bit, the OR of the bits below it, the
    sign and the parity of the floor; then wrap or saturate into the target range.  Two
    register stages: rounding, then overflow.

    Parameters
    ----------
    in_shape : Shape
    in_frac : int
    fmt : QFormat

    Members
    -------
    i : In(in_shape)
    o : Out(format_shape(fmt)), ``latency`` cycles after ``i``
        From a register without reset: flags beside the datapath say when it is valid.
    """

    latency = 2

    def __init__(self, in_shape, in_frac, fmt):
        self.in_shape, self.in_frac, self.fmt = Shape.cast(in_shape), in_frac, fmt
        super().__init__({"i": In(self.in_shape), "o": Out(format_shape(fmt))})

    def _increment(self, negative, odd, round_bit, sticky):
        mode = self.fmt.rounding
        above_half = round_bit & sticky
        tie = round_bit & ~sticky
        return {
            "TRN": 0,
            "TRN_ZERO": negative & (round_bit | sticky),
            "RND": round_bit,
            "RND_ZERO": above_half | (tie & negative),
            "RND_INF": above_half | (tie & ~negative),
            "RND_MIN_INF": above_half,
            "RND_CONV": above_half | (tie & odd),
        }[mode]

    def elaborate(self, platform):
        m = Module()
        fmt, value = self.fmt, self.i
        shift = self.in_frac - fmt.frac
        width = self.in_shape.width
        if shift <= 0:
            rounded = Signal(signed(width - shift + 1), reset_less=True)
            m.d.sync += rounded.eq(value << -shift)
        else:
            floor = value >> shift
            round_bit = value[shift - 1]
            sticky = value[:shift - 1].any() if shift > 1 else 0
            negative = value[-1] if self.in_shape.signed else 0
            odd = value[shift] if width > shift else 0
            rounded = Signal(signed(max(width - shift, 1) + 2), reset_less=True)
            m.d.sync += rounded.eq(floor + self._increment(negative, odd, round_bit, sticky))

        low, high = fmt.raw_min, fmt.raw_max
        # WRAP keeps the low W bits of the two's complement value.  The rounded value may be
        # narrower than W (a wider accumulator format): sign-extend it to W bits first, or a
        # negative value would be taken as a large positive one.
        extended = Signal(signed(max(len(rounded), fmt.width)))
        m.d.comb += extended.eq(rounded)
        wrapped = extended[:fmt.width]
        if fmt.overflow == "SAT_SYM" and fmt.signed:
            low = -high
        above, below = _above(rounded, high), _below(rounded, low)
        if fmt.overflow == "WRAP":
            result = wrapped
        elif fmt.overflow == "SAT_ZERO":
            result = Mux(above | below, 0, wrapped)
        else:  # SAT, SAT_SYM
            result = Mux(above, high, Mux(below, low, wrapped))
        result_q = Signal(format_shape(fmt), reset_less=True)
        m.d.sync += result_q.eq(result)
        m.d.comb += self.o.eq(result_q)
        return m


def output_stages(m, index, value, frac, *, accum, activation, output):
    """A sum's way out, in module ``m``: the accumulator format ``accum`` (if not None),
    the activation, the output format, as submodules ``accum{index}``, ``act{index}`` and
    ``out{index}``.  ``value`` has ``frac`` fraction bits; returns the output value,
    ``Requantizer.latency`` * (1 or 2) + ``Activation.latency`` cycles later."""
    shape = value.shape()
    if accum is not None:
        m.submodules[f"accum{index}"] = stage = Requantizer(shape, frac, accum)
        m.d.comb += stage.i.eq(value)
        value, shape, frac = stage.o, stage.o.shape(), accum.frac
    m.submodules[f"act{index}"] = act = Activation(activation, shape, frac)
    m.submodules[f"out{index}"] = out = Requantizer(shape, frac, output)
    m.d.comb += [act.i.eq(value), out.i.eq(act.o)]
    return out.o
