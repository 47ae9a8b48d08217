"""The int8 engine's plan: its checked parameters, figures and weight load, in plain Python.

``Int8Core`` and ``Int8Engine`` are built from an ``Int8Plan``; making one builds no
hardware, so figures (latency, load size) and load values cost nothing.
"""

from dataclasses import replace

import numpy as np

from ..golden.fixed import QFormat
from ..golden.formats import LayerFormats
from ..golden.spec import LayerError
from .int8_offset import InputOffset
from .int8_table import TABLE_WORD_BITS
from .plan import EnginePlan
from .requantize_int8 import (LATENCY, ROUNDINGS, Fp32Requantizer, PerChannelRequantizer,
                              requantizer_entries, table_words)

__all__ = ["Int8Plan", "INT8_ROUNDINGS", "layer_factors"]

#: "fp32": LiteRT's default interpreter; "double": its reference kernels; "single".
INT8_ROUNDINGS = ("fp32",) + ROUNDINGS


def layer_arguments(layer, rounding):
    """The positional and keyword arguments of ``Int8Plan`` (and ``Int8Engine``) for a golden
    ``Int8Layer``: its float32 scales, or M0/shift for the double and single roundings."""
    if rounding not in INT8_ROUNDINGS:
        raise ValueError(f"rounding must be fp32, double or single, not {rounding!r}")
    return ((layer.spec, layer.kernel, layer.bias),
            dict(input_zero_point=layer.input_zero_point,
                 output_zero_point=layer.output_zero_point, act_min=layer.act_min,
                 act_max=layer.act_max, rounding=rounding, **layer_factors(layer, rounding)))


def layer_factors(layer, rounding):
    """A golden ``Int8Layer``'s requantization factors for ``rounding``, as keywords."""
    if rounding == "fp32":
        return {"scales": [float(s) for s in layer.float_scales()]}
    multipliers, shifts = layer.quantized_multipliers(rounding)
    return {"multipliers": [int(v) for v in multipliers], "shifts": [int(v) for v in shifts]}


class Int8Plan:
    """A checked description of an int8 DEPTHWISE_CONV_2D engine; builds no hardware.

    The depthwise part computes with input ``fixed<9,9>`` (the offset values), weights
    ``fixed<8,8>``, bias ``fixed<32,32>`` and, as its output format, its exact accumulator,
    so the requantizer receives each sum unchanged.

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
        M0 and shift, for the double and single roundings.
    scales : sequence of float, one per output channel
        float32 scales, for the fp32 rounding.
    rounding : "fp32", "double" or "single"
    weights : "const" or "port"
    reuse, target : as DepthwiseEngine's

    Members
    -------
    spec, lanes, rounding, weights, target, input_zero_point, output_zero_point, act_min,
    act_max
        As given.
    factors : dict
        ``multipliers``, ``shifts`` and ``scales`` as given (None where not).
    depthwise : EnginePlan
        The depthwise part's plan; ``acc_width`` the bits of its exact sums.
    formats : LayerFormats
        The formats at the ports: int8 in and out (what the simulators pack and unpack).
    groups, out_lanes, reuse, latency, queue_depth : int
        C/P; P*M; R; cycles from a window's shift decision to its int8 output (the
        depthwise part's latency, the offset's and the requantizer's); the depthwise part's
        output queue.
    multipliers, real_multipliers : int
        The depthwise part's (``EnginePlan``'s) and the requantizer's, whose lanes each
        multiply on four partial products of at most 18 x 18 bits
        (``requantizer_multipliers``).
    line_buffer_words : int
        The depthwise part's.
    store : WeightPlan
        The depthwise part's weight store (its kernel and bias formats' shapes).
    entries : list of dict
        The requantizer's per-channel constants (``requantize_int8.requantizer_entries``).
    table_values, depthwise_values, load_words, load_width : int
        Values of a weight load's requantizer part and depthwise part, of the whole load,
        and its width in bits (``weights="port"``, see ``load_values``).
    """

    def __init__(self, spec, lanes, kernel, bias, *, input_zero_point, output_zero_point,
                 multipliers=None, shifts=None, scales=None, act_min=-128, act_max=127,
                 rounding="fp32", weights="const", reuse=1, target=None):
        spec.check_lanes(lanes)
        if rounding not in INT8_ROUNDINGS:
            raise ValueError(f"rounding must be fp32, double or single, not {rounding!r}")
        for what, zp in (("input", input_zero_point), ("output", output_zero_point)):
            if not isinstance(zp, (int, np.integer)) or not -128 <= zp <= 127:
                raise ValueError(f"{what}_zero_point must be an int8 value, not {zp!r}")
        if not -128 <= act_min <= act_max <= 127:
            raise ValueError(f"the clamp [{act_min}, {act_max}] must be a range in int8")
        self.spec, self.lanes, self.rounding, self.weights = spec, lanes, rounding, weights
        self.input_zero_point, self.output_zero_point = int(input_zero_point), int(
            output_zero_point)
        self.act_min, self.act_max = int(act_min), int(act_max)
        self.groups = spec.channels // lanes
        self.out_lanes = lanes * spec.depth_multiplier
        self.entries = requantizer_entries(rounding, spec.out_channels,
                                           multipliers=multipliers, shifts=shifts,
                                           scales=scales)
        self.factors = {"multipliers": multipliers, "shifts": shifts, "scales": scales}
        int8 = QFormat.parse("fixed<8,8>")
        inner = LayerFormats(input=QFormat.parse("fixed<9,9>"), weight=int8,
                             bias=QFormat.parse("fixed<32,32>"), accum=None, output=int8)
        inner = replace(inner, output=inner.exact_accumulator(spec.taps))
        self.depthwise = EnginePlan(replace(spec, activation="linear"), inner, lanes,
                                    np.asarray(kernel), np.asarray(bias), weights=weights,
                                    reuse=reuse, target=target)
        self.formats = replace(inner, input=int8, output=int8)
        self.reuse, self.target = self.depthwise.reuse, target
        self.queue_depth = self.depthwise.queue_depth
        self.latency = self.depthwise.latency + InputOffset.latency + LATENCY[rounding]
        self.acc_width = inner.output.width
        # each output lane's requantizer multiplies on four registered partial products
        self.requantizer_multipliers = 4 * self.out_lanes
        self.multipliers = self.depthwise.multipliers + self.requantizer_multipliers
        self.real_multipliers = (self.depthwise.real_multipliers
                                 + self.requantizer_multipliers)
        self.line_buffer_words = self.depthwise.line_buffer_words
        self.store = self.depthwise.store
        self.table_values = spec.out_channels * (1 if rounding == "fp32" else 2)
        self.depthwise_values = spec.out_channels * (spec.taps + spec.use_bias)
        self.load_words = self.table_values + self.depthwise_values
        self.load_width = TABLE_WORD_BITS

    @classmethod
    def from_layer(cls, layer, lanes=1, rounding="fp32", **kwargs):
        """From a ``golden.int8_ref.Int8Layer`` (``layer_arguments``)."""
        (spec, kernel, bias), options = layer_arguments(layer, rounding)
        return cls(spec, lanes, kernel, bias, **options, **kwargs)

    def requantizer(self):
        """A fresh requantizer component of this plan."""
        common = dict(acc_width=self.acc_width, lanes=self.out_lanes, groups=self.groups,
                      output_zero_point=self.output_zero_point, act_min=self.act_min,
                      act_max=self.act_max, weights=self.weights)
        if self.rounding == "fp32":
            return Fp32Requantizer(**common, scales=self.factors["scales"])
        return PerChannelRequantizer(**common, multipliers=self.factors["multipliers"],
                                     shifts=self.factors["shifts"], rounding=self.rounding)

    def load_values(self, weights):
        """The values of one weight load (``weights="port"``), each as an unsigned
        ``load_width``-bit word, in the order the weight port takes them:

        1. per output channel o = 0 .. C*M-1: for the double and single roundings its M0
           (in [0, 2**31)) then its shift (in [-31, 30], two's complement); for fp32 the
           float32 scale's bits;
        2. the int8 kernel (kh, kw, C, M) in Keras order, sign-extended;
        3. with a bias, the C*M int32 biases.

        ``weights`` is a golden ``Int8Layer`` (its factors for this plan's rounding), or a
        mapping with ``kernel``, ``bias`` and ``multipliers`` and ``shifts`` or ``scales``.
        The zero points and the clamp are built in: a layer with others is refused.
        """
        if hasattr(weights, "quantized_multipliers"):
            layer = weights
            for name in ("input_zero_point", "output_zero_point", "act_min", "act_max"):
                if getattr(layer, name) != getattr(self, name):
                    raise LayerError(f"the engine is built with {name} {getattr(self, name)},"
                                     f" the layer has {getattr(layer, name)}: only weights, "
                                     f"biases and requantization factors are loaded")
            weights = dict(kernel=layer.kernel, bias=layer.bias,
                           **layer_factors(layer, self.rounding))
        weights = dict(weights)
        kernel, bias = weights.pop("kernel"), weights.pop("bias", None)
        checked = self.depthwise.replace(kernel_raw=np.asarray(kernel),
                                         bias_raw=None if bias is None else np.asarray(bias))
        table = table_words(self.rounding, self.spec.out_channels, **weights)
        parts = [np.array(table, dtype=np.int64), checked.kernel_raw.reshape(-1)]
        if self.spec.use_bias:
            parts.append(checked.bias_raw.reshape(-1))
        mask = (1 << self.load_width) - 1
        return np.concatenate(parts).astype(np.int64) & mask
