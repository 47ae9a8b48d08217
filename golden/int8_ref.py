"""LiteRT's affine int8 depthwise convolution, bit for bit, in NumPy.

A full-integer TFLite DEPTHWISE_CONV_2D computes, per output pixel and channel ``o``::

    acc = bias[o] + sum(w[tap, o] * (x[tap] - zp_in))       # taps outside the frame add nothing
    out = clamp(requantize(acc, o) + zp_out, act_min, act_max)

where ``requantize`` scales by ``in_scale * w_scale[o] / out_scale`` and rounds to an integer,
in one of three ways (``rounding``):

``"fp32"`` (default)
    What LiteRT's default interpreter gives (``OpResolverType.AUTO``: the XNNPACK delegate
    takes the op): the scale computed in float32 as ``(in_scale * w_scale[o]) / out_scale``,
    ``float32(acc) * scale`` rounded to float32, then to the nearest integer, ties to even.
``"double"``
    TFLite's ``MultiplyByQuantizedMultiplier(acc, M0, shift)`` of its reference kernels
    (``BUILTIN_REF``): gemmlowp's ``SaturatingRoundingDoublingHighMul(acc << max(shift, 0),
    M0)``, then ``RoundingDivideByPOT`` by ``max(-shift, 0)``; both round halves away from
    zero.
``"single"``
    The single-rounding form of the same: ``(acc * M0 + 2**(30 - shift)) >> (31 - shift)``
    in 64 bits, halves rounded up.

``M0``/``shift`` represent the scale (computed in double precision) as a Q31 mantissa and a
power of two, as TFLite's ``QuantizeMultiplier`` makes them (the mantissa rounded half away
from zero to 31 bits).  All arithmetic is on int64 (or IEEE float32 where that is the rule),
so results are exact.
"""

from dataclasses import dataclass, field

import numpy as np

from .spec import LayerError, LayerSpec

__all__ = ["Int8Layer", "ROUNDINGS", "DEFAULT_ROUNDING", "quantize_multiplier",
           "requantize", "rounding_high_mul", "rounding_divide_by_pot", "accumulate",
           "requantize_fp32", "predict_int8", "predict", "quantize_input", "dequantize_output",
           "activation_range"]

ROUNDINGS = ("fp32", "double", "single")
#: The form LiteRT's default interpreter follows (see the module docstring).
DEFAULT_ROUNDING = "fp32"

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def _check_rounding(rounding):
    if rounding is None:
        return DEFAULT_ROUNDING
    if rounding not in ROUNDINGS:
        raise LayerError(f"tflite rounding must be one of {', '.join(ROUNDINGS)}, "
                         f"not {rounding!r}")
    return rounding


def quantize_multiplier(real, rounding="double"):
    """TFLite's ``QuantizeMultiplier``: ``real ~= M0 * 2**(shift - 31)``, ``M0`` in [2**30, 2**31).

    ``real`` is a float (computed in double precision as TFLite does).  Multipliers below
    2**-32 flush to (0, 0); with the single rounding a shift above 30 saturates to
    (2**31 - 1, 30), as TFLite's single-rounding build does.
    """
    rounding = _check_rounding(rounding)
    if rounding == "fp32":
        raise LayerError("the fp32 rounding uses a float32 scale, not a quantized multiplier")
    real = float(real)
    if real < 0 or not np.isfinite(real):
        raise LayerError(f"a requantization multiplier must be finite and not negative, "
                         f"not {real}")
    if real == 0.0:
        return 0, 0
    mantissa, shift = np.frexp(real)
    shift = int(shift)
    # np.round is half-to-even; TFLite's std::round is half away from zero
    q = int(np.floor(mantissa * float(1 << 31) + 0.5))
    if q == 1 << 31:
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if rounding == "single" and shift > 30:
        return INT32_MAX, 30
    return q, shift


def rounding_high_mul(a, b):
    """gemmlowp's SaturatingRoundingDoublingHighMul on int64 arrays holding int32 values."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    product = a * b
    nudge = np.where(product >= 0, 1 << 30, 1 - (1 << 30))
    total = product + nudge
    # C++ integer division truncates toward zero
    high = np.where(total >= 0, total >> 31, -((-total) >> 31))
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, high)


def rounding_divide_by_pot(x, exponent):
    """gemmlowp's RoundingDivideByPOT: x / 2**exponent, halves away from zero."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def _wrap32(x):
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def requantize(acc, multiplier, shift, rounding="double"):
    """TFLite's ``MultiplyByQuantizedMultiplier(acc, M0, shift)`` on arrays, exactly.

    ``acc`` int32 values; ``multiplier`` in [0, 2**31); ``shift`` in [-31, 30].  The double
    form shifts left in 32 bits before the high multiply (wrapping, as the C++ does on its
    targets); the single form works in 64 bits.  Returns int64 values (int32 range).
    """
    rounding = _check_rounding(rounding)
    if rounding not in ("double", "single"):
        raise LayerError(f"requantize takes the double or single rounding, not {rounding!r}")
    acc = np.asarray(acc, dtype=np.int64)
    multiplier = np.asarray(multiplier, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if rounding == "double":
        left = np.maximum(shift, 0)
        right = np.maximum(-shift, 0)
        return rounding_divide_by_pot(rounding_high_mul(_wrap32(acc << left), multiplier),
                                      right)
    total = 31 - shift
    return (acc * multiplier + (np.int64(1) << (total - 1))) >> total


def requantize_fp32(acc, scale):
    """XNNPACK's fp32 requantization: ``rint(float32(acc) * scale)``, ties to even.

    ``scale`` float32 per channel.  Returns int64 values; huge products saturate to the
    int32 range (they are clamped to int8 afterwards anyway).
    """
    with np.errstate(over="ignore"):         # an infinite product saturates below
        product = np.asarray(acc, dtype=np.int64).astype(np.float32) * \
            np.asarray(scale, np.float32)
    product = np.clip(product, np.float32(INT32_MIN), np.float32(2.0 ** 31 - 128))
    return np.rint(product).astype(np.int64)


def activation_range(activation, scale, zero_point):
    """TFLite's CalculateActivationRangeQuantized for int8: (act_min, act_max)."""
    scale = np.float32(scale)

    def quantize(value):
        # zero_point + round(f / scale): the division in float32, halves away from zero
        q = float(np.float32(value) / scale)
        return int(zero_point) + int(np.sign(q) * np.floor(abs(q) + 0.5))

    if activation == "NONE":
        return -128, 127
    if activation == "RELU":
        return max(-128, quantize(0.0)), 127
    if activation == "RELU6":
        return max(-128, quantize(0.0)), min(127, quantize(6.0))
    if activation == "RELU_N1_TO_1":
        return max(-128, quantize(-1.0)), min(127, quantize(1.0))
    raise LayerError(f"fused activation {activation} is not supported; use NONE, RELU, "
                     f"RELU6 or RELU_N1_TO_1")


@dataclass(frozen=True, eq=False)
class Int8Layer:
    """A full-integer int8 DEPTHWISE_CONV_2D as LiteRT runs it.

    Members
    -------
    spec : LayerSpec
        Geometry (kernel, strides, dilation, padding, depth multiplier); its activation is
        the float name of the clamp where there is one (relu, relu6), else linear.
    kernel : int8 array (kh, kw, C, M)
        Keras order: output channel ``c*M + m`` uses ``kernel[:, :, c, m]``.
    bias : int32 array (C*M,)
        In units of ``input_scale * weight_scales[o]``; zeros without a bias.
    weight_scales : float32 array (C*M,)
        One per output channel (a per-tensor model repeats its one scale).
    input_scale, output_scale : float
    input_zero_point, output_zero_point : int in [-128, 127]
    act_min, act_max : int
        The output clamp, from the fused activation.
    activation : str
        TFLite's fused activation name (NONE, RELU, RELU6, RELU_N1_TO_1).
    per_channel : bool
        Whether the file gives one weight scale per output channel.
    source : str or None
        The file name of the model the layer was read from.
    multiplier, shift : int64 arrays (C*M,)
        ``QuantizeMultiplier(input_scale * weight_scales[o] / output_scale)``, derived (the
        double rounding's; see ``quantized_multipliers``).
    """

    spec: LayerSpec
    kernel: np.ndarray
    bias: np.ndarray
    weight_scales: np.ndarray
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    act_min: int = -128
    act_max: int = 127
    activation: str = "NONE"
    per_channel: bool = True
    source: str | None = None
    multiplier: np.ndarray = field(init=False)
    shift: np.ndarray = field(init=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)
        spec = self.spec
        name = spec.name
        kernel = np.asarray(self.kernel)
        if kernel.shape != spec.kernel_shape or kernel.dtype != np.int8:
            raise LayerError(f"kernel of layer {name!r} must be int8 of shape "
                             f"{list(spec.kernel_shape)}, not {kernel.dtype} "
                             f"{list(kernel.shape)}")
        outputs = spec.out_channels
        bias = np.asarray(self.bias)
        if bias.shape != (outputs,) or bias.dtype != np.int32:
            raise LayerError(f"bias of layer {name!r} must be int32 of shape [{outputs}], "
                             f"not {bias.dtype} {list(bias.shape)}")
        scales = np.asarray(self.weight_scales, dtype=np.float32)
        if scales.shape != (outputs,):
            raise LayerError(f"layer {name!r} needs {outputs} weight scales, "
                             f"not {scales.size}")
        for what, value in (("input", self.input_scale), ("output", self.output_scale)):
            if not (np.isfinite(value) and value > 0):
                raise LayerError(f"{what} scale of layer {name!r} must be positive, "
                                 f"not {value}")
        if not (np.all(np.isfinite(scales)) and np.all(scales >= 0)):
            raise LayerError(f"weight scales of layer {name!r} must be finite and not "
                             f"negative")
        for what, zp in (("input", self.input_zero_point),
                         ("output", self.output_zero_point)):
            if not -128 <= int(zp) <= 127:
                raise LayerError(f"{what} zero point of layer {name!r} is {zp}, outside int8")
        if not -128 <= self.act_min <= self.act_max <= 127:
            raise LayerError(f"layer {name!r} has an empty or out-of-range output clamp "
                             f"[{self.act_min}, {self.act_max}]")
        set_("kernel", np.ascontiguousarray(kernel))
        set_("bias", np.ascontiguousarray(bias))
        set_("weight_scales", scales)
        set_("input_scale", float(np.float32(self.input_scale)))
        set_("output_scale", float(np.float32(self.output_scale)))
        set_("input_zero_point", int(self.input_zero_point))
        set_("output_zero_point", int(self.output_zero_point))
        set_("act_min", int(self.act_min))
        set_("act_max", int(self.act_max))
        multipliers, shifts = self.quantized_multipliers("double")
        set_("multiplier", multipliers)
        set_("shift", shifts)

    def real_multipliers(self):
        """``in_scale * w_scale[o] / out_scale`` in double precision, as TFLite's Prepare."""
        return [float(self.input_scale) * float(s) / float(self.output_scale)
                for s in self.weight_scales]

    def float_scales(self):
        """The float32 scales of the fp32 rounding: ``(in_scale * w_scale[o]) / out_scale``."""
        product = np.float32(self.input_scale) * self.weight_scales
        return (product / np.float32(self.output_scale)).astype(np.float32)

    def quantized_multipliers(self, rounding="double"):
        """(M0, shift) int64 arrays for the double or single rounding (they differ only for
        scales of 2**30 and above, which the single rounding saturates)."""
        pairs = [quantize_multiplier(r, rounding) for r in self.real_multipliers()]
        return (np.array([p[0] for p in pairs], dtype=np.int64),
                np.array([p[1] for p in pairs], dtype=np.int64))

    @property
    def name(self):
        return self.spec.name

    def to_dict(self):
        """The quantization parameters, for layer.json (float32 values written as floats,
        which read back exactly)."""
        return {
            "input_scale": self.input_scale, "input_zero_point": self.input_zero_point,
            "output_scale": self.output_scale, "output_zero_point": self.output_zero_point,
            "weight_scales": [float(s) for s in self.weight_scales],
            "per_channel": self.per_channel,
            # TFLite's filter is [1, kh, kw, C*M]: per-channel scales run along dimension 3
            "quantized_dimension": 3 if self.per_channel else None,
            "fused_activation": self.activation,
            "act_min": self.act_min, "act_max": self.act_max,
            "source_model": self.source,
        }


def _frames(layer, x):
    """x as an int64 (N, H, W, C) array in channels_last, and whether it had a batch axis."""
    spec = layer.spec
    x = np.asarray(x)
    batched = x.ndim == 4
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise LayerError(f"input of layer {spec.name!r} must be (N, H, W, C) or (H, W, C), "
                         f"not {list(x.shape)}")
    if spec.data_format == "channels_first":
        x = x.transpose(0, 2, 3, 1)
    if x.shape[1:] != spec.input_shape:
        raise LayerError(f"input of layer {spec.name!r} has shape {list(x.shape[1:])} "
                         f"(H, W, C), but the layer takes {list(spec.input_shape)}")
    return x, batched


def _layout(layer, y, batched):
    if layer.spec.data_format == "channels_first":
        y = y.transpose(0, 3, 1, 2)
    return y if batched else y[0]


def accumulate(layer, x):
    """The int32 accumulators (N, OH, OW, C*M) for int8 frames x (N, H, W, C) channels_last,
    as int64 values."""
    spec = layer.spec
    kh, kw = spec.kernel_size
    sh, sw = spec.strides
    dh, dw = spec.dilation_rate
    oh, ow, _ = spec.output_shape
    m = spec.depth_multiplier
    offset = np.asarray(x, dtype=np.int64) - layer.input_zero_point
    # padded taps equal the zero point: after the offset they are 0 and add nothing
    padded = np.pad(offset, ((0, 0), (spec.pad_top, spec.pad_bottom),
                             (spec.pad_left, spec.pad_right), (0, 0)))
    acc = np.zeros((offset.shape[0], oh, ow, spec.channels, m), dtype=np.int64)
    kernel = layer.kernel.astype(np.int64)
    for i in range(kh):
        for j in range(kw):
            window = padded[:, i * dh: i * dh + (oh - 1) * sh + 1: sh,
                            j * dw: j * dw + (ow - 1) * sw + 1: sw, :]
            acc += window[..., None] * kernel[i, j]
    acc = acc.reshape(acc.shape[0], oh, ow, spec.out_channels) + layer.bias.astype(np.int64)
    # TFLite's accumulator is an int32 (a sum past it wraps in the C++ on its targets)
    return _wrap32(acc)


def predict_int8(layer, x, rounding=None):
    """int8 frames in (the interpreter's input tensor), int8 frames out, exactly.

    ``x`` is (N, H, W, C) or (H, W, C) in the layer's data_format, int8 values.
    """
    rounding = _check_rounding(rounding)
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise LayerError(f"int8 input of layer {layer.name!r} must be integers, not {x.dtype}")
    if x.size and (x.min() < -128 or x.max() > 127):
        raise LayerError(f"int8 input of layer {layer.name!r} holds values outside "
                         f"[-128, 127]")
    frames, batched = _frames(layer, x)
    acc = accumulate(layer, frames)
    if rounding == "fp32":
        out = requantize_fp32(acc, layer.float_scales())
    else:
        multiplier, shift = layer.quantized_multipliers(rounding)
        out = requantize(acc, multiplier, shift, rounding)
    out = out + layer.output_zero_point
    out = np.clip(out, layer.act_min, layer.act_max).astype(np.int8)
    return _layout(layer, out, batched)


def quantize_input(layer, x, rounding=None):
    """Float values to int8 as the QUANTIZE op of the matching interpreter does.

    ``"double"``/``"single"`` (TFLite's own kernel): ``round(x / scale) + zp``, the division
    in float32, halves away from zero.  ``"fp32"`` (XNNPACK's, the default interpreter's):
    ``x * (1 / scale)`` in float32, halves to even.  Clamped to [-128, 127].
    """
    rounding = _check_rounding(rounding)
    x = np.asarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise LayerError(f"input of layer {layer.name!r} holds NaN or Inf")
    scale = np.float32(layer.input_scale)
    if rounding == "fp32":
        q = np.rint((x * (np.float32(1) / scale)).astype(np.float64))
    else:
        q = (x / scale).astype(np.float64)
        # in float64 the half added to a float32 quotient is exact
        q = np.sign(q) * np.floor(np.abs(q) + 0.5)
    q = np.clip(q, -1e6, 1e6)
    return np.clip(q.astype(np.int64) + layer.input_zero_point, -128, 127).astype(np.int8)


def dequantize_output(layer, y):
    """int8 outputs as float64: ``(y - zp_out) * scale``."""
    return (np.asarray(y, dtype=np.float64) - layer.output_zero_point) * layer.output_scale


def predict(layer, x, rounding=None):
    """int8 arrays in give int8 arrays out; float arrays are quantized, the output dequantized."""
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.integer):
        return predict_int8(layer, x, rounding)
    if not np.issubdtype(x.dtype, np.floating):
        raise LayerError(f"input of layer {layer.name!r} must be int8 or float numbers, "
                         f"not {x.dtype}")
    return dequantize_output(layer, predict_int8(layer, quantize_input(layer, x, rounding),
                                                 rounding))
