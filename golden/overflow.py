"""Overflow accounting: how many values of a run do not fit the input, accumulator and
output formats, counted on the fixed reference's own intermediate values.

A value overflows a format when, rounded to that format's binary point with its rounding
mode, it lies outside the format's range; the format's overflow mode then saturates or
wraps it.  The counts are those the datapath meets (docs/formats.md, "The datapath"): the
input as given, the exact sum of products and bias when an accumulator format is given (an
exact accumulator never overflows: 0), and the value after the activation going into the
output format.
"""

import dataclasses

import numpy as np

from .fixed import MAX_ACCUM_WIDTH, QFormat
from .fixed_ref import accumulate_raw

__all__ = ["ROLES", "count_overflows", "overflow_count", "full_name", "overflow_warning"]

#: The roles counted, in datapath order.
ROLES = ("input", "accum", "output")


def _wide(fmt):
    """``fmt``'s binary point and rounding with room for any int64 datapath value."""
    width = MAX_ACCUM_WIDTH
    return QFormat(signed=True, width=width, int_bits=width - fmt.frac, rounding=fmt.rounding,
                   overflow="SAT", max_width=MAX_ACCUM_WIDTH)


def overflow_count(fmt, raw, frac):
    """How many of the raw integers (``frac`` fractional bits) overflow ``fmt``."""
    rounded = _wide(fmt).convert(raw, frac)
    return int(np.count_nonzero((rounded < fmt.raw_min) | (rounded > fmt.raw_max)))


def count_overflows(layer, formats, x_nhwc):
    """``{"input": n, "accum": n, "output": n}`` for float input (N, H, W, C).

    The accumulator and output counts are taken on the values the fixed reference computes
    from the quantized input (wrapped or saturated as the input format says), so they are the
    overflows the hardware meets.
    """
    x = np.asarray(x_nhwc, dtype=np.float64)
    counts = {"input": int(np.count_nonzero(formats.input.overflows(x)))}
    x_raw = formats.input.quantize(x)
    if formats.accum is None:
        counts["accum"] = 0
    else:
        # the exact sum before the accumulator format and the activation
        linear = dataclasses.replace(layer, spec=dataclasses.replace(layer.spec,
                                                                     activation="linear"))
        exact, frac = accumulate_raw(linear, dataclasses.replace(formats, accum=None), x_raw)
        counts["accum"] = overflow_count(formats.accum, exact, frac)
    acc, frac = accumulate_raw(layer, formats, x_raw)
    counts["output"] = overflow_count(formats.output, acc, frac)
    return counts


def full_name(fmt):
    """``fixed<W,I,Q,O>`` with the modes spelled out (``str`` leaves the defaults off)."""
    return (f"{'fixed' if fmt.signed else 'ufixed'}<{fmt.width},{fmt.int_bits},"
            f"{fmt.rounding},{fmt.overflow}>")


_EFFECT = {"WRAP": "wrap", "SAT": "saturate", "SAT_SYM": "saturate", "SAT_ZERO": "become 0"}


def overflow_warning(counts, formats):
    """The one warning line for ``counts`` (without the ``dwconv: warning:`` prefix), or
    None when nothing overflows."""
    parts = []
    for role in ROLES:
        fmt = getattr(formats, role)
        if counts.get(role) and fmt is not None:
            parts.append(f"{counts[role]} {role} value(s) overflow {full_name(fmt)} and "
                         f"{_EFFECT[fmt.overflow]}")
    if not parts:
        return None
    options = " / ".join(f"--{role}-format" for role in ROLES if counts.get(role))
    return (f"{'; '.join(parts)}; give a wider {options} (dwconv profile chooses formats from "
            f"data) to keep them")

