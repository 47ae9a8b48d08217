"""Fixed-point formats in ap_fixed notation, and exact integer conversion between them.

A value is held as a raw integer ``raw`` meaning ``raw * 2**-frac``.  Every conversion here
is integer arithmetic on int64 arrays (float input is split exactly into an integer part and
a fraction, so no float rounding takes part), and it is the same arithmetic the hardware
``Requantizer`` performs: shift right, add a rounding increment chosen from the round bit,
the sticky bits and the sign, then handle overflow.
"""

import re
from dataclasses import dataclass

import numpy as np

__all__ = ["FormatError", "QFormat", "ROUNDING_MODES", "OVERFLOW_MODES", "MAX_WIDTH"]

ROUNDING_MODES = ("TRN", "RND", "RND_CONV", "RND_ZERO", "RND_INF", "RND_MIN_INF", "TRN_ZERO")
OVERFLOW_MODES = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")
#: Widest format accepted; keeps every intermediate of the datapath inside int64.
MAX_WIDTH = 32
#: Widest accumulator (exact or given) the int64 golden model and the hardware accept.
MAX_ACCUM_WIDTH = 62

_FORMAT_RE = re.compile(
    r"^\s*(?:ap_)?(u?fixed)\s*<\s*(-?\d+)\s*,\s*(-?\d+)\s*"
    r"(?:,\s*(?:AP_)?([A-Z_]+)\s*)?(?:,\s*(?:AP_)?([A-Z_]+)\s*)?(?:,\s*0\s*)?>\s*$",
    re.IGNORECASE | re.ASCII)   # ASCII: \d would take other scripts' digits


class FormatError(ValueError):
    """A format string or format combination that cannot be used."""


@dataclass(frozen=True)
class QFormat:
    """A fixed-point format ``fixed<W,I,Q,O>`` (signed) or ``ufixed<W,I,Q,O>``.

    Members
    -------
    signed : bool
        Two's complement (``fixed``) or unsigned (``ufixed``).
    width : int
        W, total bits, 1 to ``MAX_WIDTH`` (``MAX_ACCUM_WIDTH`` for accumulators).
    int_bits : int
        I, integer bits including the sign bit, 0 to W.
    rounding : str
        Q, applied when bits below the binary point are dropped.
    overflow : str
        O, applied when the value does not fit the integer bits.
    """

    signed: bool
    width: int
    int_bits: int
    rounding: str = "TRN"
    overflow: str = "WRAP"
    max_width: int = MAX_WIDTH

    def __post_init__(self):
        kind = "fixed" if self.signed else "ufixed"
        if not 1 <= self.width <= self.max_width:
            raise FormatError(f"{kind} width W={self.width} must be between 1 and "
                              f"{self.max_width}")
        if not 0 <= self.int_bits <= self.width:
            raise FormatError(f"{kind}<{self.width},{self.int_bits}>: integer bits I must be "
                              f"between 0 and the width {self.width}")
        if self.signed and self.width < 2:
            raise FormatError("fixed<...> needs at least 2 bits (sign and one more); "
                              "use ufixed<1,...> for one bit")
        if self.rounding not in ROUNDING_MODES:
            raise FormatError(f"unknown rounding mode {self.rounding!r}; use one of "
                              f"{', '.join(ROUNDING_MODES)}")
        if self.overflow not in OVERFLOW_MODES:
            raise FormatError(f"unknown overflow mode {self.overflow!r}; use one of "
                              f"{', '.join(OVERFLOW_MODES)}")

    @classmethod
    def parse(cls, text, *, max_width=MAX_WIDTH):
        """Parse ``fixed<W,I[,Q[,O]]>`` or ``ufixed<...>``; ``ap_`` and ``AP_`` prefixes allowed."""
        if not isinstance(text, str):
            raise FormatError(f"a format must be a string like 'fixed<16,6>', not {text!r}")
        match = _FORMAT_RE.match(text)
        if match is None:
            raise FormatError(f"bad format {text!r}; write fixed<W,I>, fixed<W,I,Q,O> or "
                              f"ufixed<W,I,Q,O>, e.g. fixed<8,3,RND,SAT>")
        kind, width, int_bits, rounding, overflow = match.groups()
        return cls(signed=kind.lower() == "fixed", width=int(width), int_bits=int(int_bits),
                   rounding=(rounding or "TRN").upper(), overflow=(overflow or "WRAP").upper(),
                   max_width=max_width)

    def __str__(self):
        text = f"{'fixed' if self.signed else 'ufixed'}<{self.width},{self.int_bits}"
        if self.rounding != "TRN" or self.overflow != "WRAP":
            text += f",{self.rounding}"
        if self.overflow != "WRAP":
            text += f",{self.overflow}"
        return text + ">"

    @property
    def frac(self):
        """F = W - I, the number of bits below the binary point."""
        return self.width - self.int_bits

    @property
    def raw_min(self):
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def raw_max(self):
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def lsb(self):
        """Value of one raw step, 2**-F."""
        return 2.0 ** -self.frac

    def to_float(self, raw):
        """Raw integers to their exact float64 values."""
        return np.asarray(raw, dtype=np.int64).astype(np.float64) * self.lsb

    def quantize(self, x):
        """Float values to raw integers of this format, with its rounding and overflow.

        ``x * 2**F`` is exact in float64, and so are its floor and the remaining fraction;
        from there on the rounding decision and the overflow are the same integer steps as
        ``convert``.
        """
        return self._fit_float(self._round_float(x))

    def overflows(self, x):
        """Which float values do not fit this format once rounded (bool array): those its
        overflow mode saturates or wraps."""
        rounded = self._round_float(x)
        return (rounded < self.raw_min) | (rounded > self.raw_max)

    def _round_float(self, x):
        """``x * 2**F`` rounded to an integer by this format's rounding, as float64."""
        y = np.asarray(x, dtype=np.float64) * (2.0 ** self.frac)
        if not np.all(np.isfinite(y)):
            raise FormatError("cannot quantize NaN or Inf values")
        floor = np.floor(y)
        rem = y - floor                       # exact, in [0, 1)
        round_bit = rem >= 0.5
        sticky = (rem - 0.5 * round_bit) != 0.0
        odd = np.fmod(floor, 2.0) != 0.0
        # exact: |floor| >= 2**53 implies rem == 0 and a zero increment
        return floor + self._increment(floor < 0, odd, round_bit, sticky)

    def convert(self, raw, frac):
        """Raw integers with ``frac`` fractional bits to raw integers of this format."""
        raw = np.asarray(raw, dtype=np.int64)
        shift = frac - self.frac
        if shift <= 0:
            if self.overflow != "WRAP" and shift < 0:
                # A left shift past int64 would wrap and hide the overflow from the
                # saturating modes; clipping first keeps the sign and still overflows,
                # since any format's range is inside +-2**62.  (WRAP only needs the low
                # bits, which the int64 shift keeps.)
                limit = np.int64(1 << max(62 + shift, 0))
                raw = np.clip(raw, -limit, limit)
            return self._fit(raw << np.int64(-shift))
        floor = raw >> np.int64(shift)
        round_bit = ((raw >> np.int64(shift - 1)) & 1).astype(bool)
        sticky = (raw & np.int64((1 << (shift - 1)) - 1)) != 0
        odd = (floor & 1).astype(bool)
        return self._fit(floor + self._increment(raw < 0, odd, round_bit, sticky))

    def _increment(self, negative, odd, round_bit, sticky):
        """Rounding increment (0 or 1) added to the floor of the value.

        round_bit is the first dropped bit, sticky the OR of the bits below it: the dropped
        fraction is above one half when both are set, exactly one half with round_bit alone.
        """
        above_half = round_bit & sticky
        tie = round_bit & ~sticky
        mode = self.rounding
        if mode == "TRN":
            inc = np.zeros_like(round_bit)
        elif mode == "TRN_ZERO":
            inc = negative & (round_bit | sticky)
        elif mode == "RND":
            inc = round_bit
        elif mode == "RND_ZERO":
            inc = above_half | (tie & negative)
        elif mode == "RND_INF":
            inc = above_half | (tie & ~negative)
        elif mode == "RND_MIN_INF":
            inc = above_half
        else:  # RND_CONV
            inc = above_half | (tie & odd)
        return np.asarray(inc).astype(np.int64)

    def _fit(self, value):
        """Overflow handling of an integer already at this format's binary point."""
        value = np.asarray(value, dtype=np.int64)
        lo, hi = self.raw_min, self.raw_max
        mode = self.overflow
        if mode == "WRAP":
            wrapped = value & np.int64((1 << self.width) - 1)
            if self.signed:
                wrapped = np.where(wrapped > hi, wrapped - np.int64(1 << self.width), wrapped)
            return wrapped.astype(np.int64)
        if mode == "SAT":
            return np.clip(value, lo, hi)
        if mode == "SAT_ZERO":
            return np.where((value < lo) | (value > hi), 0, value).astype(np.int64)
        # SAT_SYM: the signed range is made symmetric, -max..max
        return np.clip(value, -hi if self.signed else lo, hi)

    def _fit_float(self, value):
        """``_fit`` for integral float64 values of any magnitude (exact: fmod is exact)."""
        if self.overflow == "WRAP":
            modulus = float(1 << self.width)
            value = np.fmod(value, modulus)
            value = np.where(value < 0, value + modulus, value)
            return self._fit(value.astype(np.int64))
        limit = float(1 << 62)
        return self._fit(np.clip(value, -limit, limit).astype(np.int64))


def accumulator_format(input_format, weight_format, bias_format, taps):
    """The exact accumulator: holds any sum of ``taps`` products plus a bias, unrounded.

    Its binary point is the finer of the product's and the bias'; its width covers the
    extremes of the sum, signed, so activation and output conversion see true values.
    """
    product_frac = input_format.frac + weight_format.frac
    frac = max(product_frac, bias_format.frac)
    corners = [a * b for a in (input_format.raw_min, input_format.raw_max)
               for b in (weight_format.raw_min, weight_format.raw_max)]
    scale_p = 1 << (frac - product_frac)
    scale_b = 1 << (frac - bias_format.frac)
    low = taps * min(corners) * scale_p + bias_format.raw_min * scale_b
    high = taps * max(corners) * scale_p + bias_format.raw_max * scale_b
    width = max(high.bit_length() + 1, (-low - 1).bit_length() + 1 if low < 0 else 0,
                frac + 1)
    if width > MAX_ACCUM_WIDTH:
        raise FormatError(f"the exact accumulator for these formats needs {width} bits, more "
                          f"than {MAX_ACCUM_WIDTH}; use narrower formats")
    return QFormat(signed=True, width=width, int_bits=width - frac,
                   max_width=MAX_ACCUM_WIDTH)
