"""Formats chosen from data (``dwconv profile``).

The rule, for a total width W (default 8), every format rounding to nearest and saturating
(RND, SAT):

- each tensor's range is measured: the input from the calibration data, the weight and
  the bias from the layer's weights, the output from the float model's outputs on the
  calibration data (after the activation);
- a tensor whose values are all >= 0 gets an unsigned ``ufixed``, else a signed ``fixed``;
- its integer bits I are the fewest that hold its largest magnitude m: signed, the
  smallest I >= 0 with m < 2**(I-1); unsigned, the smallest I >= 0 with m < 2**I; at most
  W.  The other W - I bits are fraction;
- the accumulator stays exact; a layer without bias gets ``fixed<W,W>`` for its (zero)
  bias, which leaves the accumulator's binary point where the products put it.

Then the fixed golden model runs on the calibration data and is compared with the float
model: the largest absolute error and the RMS error are reported.
"""

import math
from dataclasses import dataclass

import numpy as np

from .golden.fixed import QFormat
from .golden.layer import to_channels_last

__all__ = ["ROLES", "TensorProfile", "LayerProfile", "int_bits", "choose_format",
           "profile_layer", "DEFAULT_WIDTH"]

#: The roles profile chooses (the accumulator stays exact, other roles as they were).
ROLES = ("input", "weight", "bias", "output")
DEFAULT_WIDTH = 8


def int_bits(magnitude, signed, width):
    """The fewest integer bits (sign included when ``signed``) holding ``magnitude``."""
    if not magnitude > 0:
        return 0
    bits = math.floor(math.log2(magnitude)) + (2 if signed else 1)
    return min(width, max(0, bits))


def choose_format(values, width):
    """The RND, SAT format of ``width`` bits for these values (see the module's rule)."""
    values = np.asarray(values, dtype=np.float64)
    signed = bool(values.size and values.min() < 0)
    if signed and width < 2:
        raise ValueError("a signed format needs at least 2 bits")
    magnitude = float(np.max(np.abs(values))) if values.size else 0.0
    return QFormat(signed=signed, width=width,
                   int_bits=int_bits(magnitude, signed, width), rounding="RND",
                   overflow="SAT")


@dataclass(frozen=True)
class TensorProfile:
    """One tensor's measured range and chosen format."""

    role: str
    low: float
    high: float
    format: QFormat

    def line(self):
        return f"{self.role:>6}: range [{self.low:.4g}, {self.high:.4g}] -> {self.format}"


@dataclass(frozen=True)
class LayerProfile:
    """The profile of one layer.

    Members
    -------
    name : str
    width : int
    tensors : tuple of TensorProfile
        input, weight, bias, output.
    formats : dict
        Role -> format string (``accum``: "exact"), for a Design or an export.
    max_abs_error, rms_error : float
        Fixed golden model against the float model on the calibration data.
    output_rms : float
        RMS of the float model's output, the scale the errors compare with (integer bits
        cannot go below 0, so outputs far below one step of the output format become 0).
    overflows : dict
        Values of the calibration run that overflow each format (``golden.overflow``).
    """

    name: str
    width: int
    tensors: tuple
    formats: dict
    max_abs_error: float
    rms_error: float
    overflows: dict
    output_rms: float = 0.0

    def lines(self):
        return ([f"{self.name}: width {self.width}"] + ["  " + t.line() for t in self.tensors]
                + [f"  error vs float: max abs {self.max_abs_error:.4g}, RMS "
                   f"{self.rms_error:.4g} (float output RMS {self.output_rms:.4g})"])

    def to_dict(self):
        return {"layer": self.name, "width": self.width, "formats": self.formats,
                "ranges": {t.role: [t.low, t.high] for t in self.tensors},
                "max_abs_error": self.max_abs_error, "rms_error": self.rms_error,
                "output_rms": self.output_rms,
                "overflows": self.overflows}


def profile_layer(layer, x, width=DEFAULT_WIDTH, *, base_formats=None):
    """Choose the input, weight, bias and output formats of ``layer`` from calibration
    input ``x`` (the layer's data_format) for ``width`` bits; returns a LayerProfile.

    ``base_formats`` (a dict) gives the roles profile does not choose (the accumulator is
    set to exact); by default the layer's stored formats.
    """
    from .design import Design

    if not isinstance(width, int) or isinstance(width, bool) or not 2 <= width <= 32:
        from .errors import DesignError
        raise DesignError(f"width must be a whole number from 2 to 32, not {width!r}")
    from .golden.fixed_ref import fixed_forward_raw
    from .golden.float_ref import float_forward_nhwc
    from .golden.overflow import count_overflows
    x_nhwc, _ = to_channels_last(layer.spec, x)
    y_float = float_forward_nhwc(layer, x_nhwc)
    measured = {"input": x_nhwc, "weight": layer.kernel, "output": y_float}
    if layer.spec.use_bias:
        measured["bias"] = layer.bias
    tensors, chosen = [], {}
    for role in ROLES:
        if role in measured:
            values = np.asarray(measured[role], dtype=np.float64)
            fmt = choose_format(values, width)
            tensors.append(TensorProfile(role, float(values.min()), float(values.max()), fmt))
        else:
            fmt = QFormat(signed=True, width=width, int_bits=width)
            tensors.append(TensorProfile(role, 0.0, 0.0, fmt))
        chosen[role] = str(fmt)
    base = dict(getattr(layer, "formats", None) or {}) if base_formats is None \
        else dict(base_formats)
    formats = {**base, **chosen, "accum": "exact"}
    design = Design(layer, formats)
    f = design.formats
    fixed_nhwc = f.output.to_float(fixed_forward_raw(layer, f, f.input.quantize(x_nhwc)))
    error = fixed_nhwc - y_float
    return LayerProfile(name=layer.name, width=width, tensors=tuple(tensors),
                        formats=design.formats.to_dict(),
                        max_abs_error=float(np.max(np.abs(error))) if error.size else 0.0,
                        rms_error=float(np.sqrt(np.mean(error ** 2))) if error.size else 0.0,
                        overflows=count_overflows(layer, f, x_nhwc),
                        output_rms=float(np.sqrt(np.mean(y_float ** 2))) if y_float.size
                        else 0.0)
