"""Separable blocks, fixed and float: a depthwise stage, then a pointwise (1x1) stage.

The fixed datapath (docs/formats.md, "The datapath"), bit for bit as the hardware:

1. input, depthwise kernel, pointwise kernel and the biases quantized to the input, weight,
   pointwise and bias formats (a joined pair's depthwise bias uses the bias format too);
2. the depthwise sum, exact, plus the depthwise bias and activation where the block has
   them (a joined DepthwiseConv2D+Conv2D pair; Keras' separable layers have neither),
   converted to the **mid** format with its Q and O: the pointwise stage's input;
3. the pointwise sum of the C*M mid values times the pointwise kernel, exact at the binary
   point ``Fp = max(Fmid + Fpw, Fb)``, plus the bias aligned to it;
4. the accumulator format if given (its Q and O), the activation, the output format.

The accumulator format applies to the pointwise sum only; the depthwise sum stays exact
until the mid conversion.
"""

import dataclasses

import numpy as np

from .fixed_ref import accumulate_raw, quantize_weights
from .float_ref import float_activation, float_forward_nhwc
from .layer import SeparableLayer, from_channels_last, to_channels_last
from .spec import LayerError

__all__ = ["quantize_pointwise", "depthwise_mid_raw", "pointwise_raw",
           "separable_forward_raw", "separable_forward", "separable_float_nhwc",
           "separable_float_forward", "weights_raw"]


def _check(layer):
    if not isinstance(layer, SeparableLayer):
        raise TypeError(f"layer must be a SeparableLayer, not {type(layer).__name__}")


def quantize_pointwise(layer, formats):
    """Raw int64 pointwise kernel (C*M, F) and bias (F,) in the pointwise and bias formats."""
    _check(layer)
    kernel_raw = formats.pointwise.quantize(layer.pointwise_kernel)
    if layer.use_bias:
        bias_raw = formats.bias.quantize(layer.pointwise_bias)
    else:
        bias_raw = np.zeros(layer.filters, dtype=np.int64)
    return kernel_raw, bias_raw


def depthwise_mid_raw(layer, formats, x_raw):
    """Steps 1-2: raw mid values (N, oh, ow, C*M) in the mid format for raw input."""
    _check(layer)
    exact = dataclasses.replace(formats, accum=None)     # the depthwise sum stays exact
    acc, frac = accumulate_raw(layer.depthwise, exact, x_raw)
    return formats.mid.convert(acc, frac)


def pointwise_raw(mid_raw, pw_raw, bias_raw, formats, activation="linear"):
    """Steps 3-4: raw output (..., F) in the output format.

    ``mid_raw`` (..., C*M) in the mid format, ``pw_raw`` (C*M, F) in the pointwise format,
    ``bias_raw`` (F,) in the bias format, all integers; ``activation`` linear, relu, relu6.
    """
    mid_raw, pw_raw, bias_raw = (np.asarray(a) for a in (mid_raw, pw_raw, bias_raw))
    for what, array in (("mid", mid_raw), ("pointwise kernel", pw_raw), ("bias", bias_raw)):
        if not np.issubdtype(array.dtype, np.integer):
            raise LayerError(f"raw {what} must be integers, not {array.dtype}")
    if pw_raw.ndim != 2 or mid_raw.shape[-1:] != pw_raw.shape[:1] or \
            bias_raw.shape != pw_raw.shape[1:]:
        raise LayerError(f"raw shapes do not fit: mid {list(mid_raw.shape)}, pointwise kernel "
                         f"{list(pw_raw.shape)} (C*M, F), bias {list(bias_raw.shape)} (F,)")
    for fmt, array, what in ((formats.mid, mid_raw, "mid"),
                             (formats.pointwise, pw_raw, "pointwise kernel"),
                             (formats.bias, bias_raw, "bias")):
        if array.size and (array.min() < fmt.raw_min or array.max() > fmt.raw_max):
            raise LayerError(f"raw {what} values lie outside the {what} format {fmt}")
    if activation not in ("linear", "relu", "relu6"):
        raise LayerError(f"activation {activation!r} is not supported; use linear, relu or "
                         f"relu6")
    exact = formats.exact_pointwise_accumulator(pw_raw.shape[0])   # raises if too wide
    frac = exact.frac
    product_frac = formats.mid.frac + formats.pointwise.frac
    # exact integer sums: the exact accumulator's width bounds every partial sum
    acc = np.matmul(mid_raw.astype(np.int64), pw_raw.astype(np.int64))
    acc = (acc << np.int64(frac - product_frac)) + \
        (bias_raw.astype(np.int64) << np.int64(frac - formats.bias.frac))
    if formats.accum is not None:
        acc = formats.accum.convert(acc, frac)
        frac = formats.accum.frac
    if activation == "relu":
        acc = np.maximum(acc, 0)
    elif activation == "relu6":
        acc = np.clip(acc, 0, np.int64(6) << np.int64(frac))
    return formats.output.convert(acc, frac)


def separable_forward_raw(layer, formats, x_raw):
    """Raw output (N, oh, ow, F) in the output format for raw input (N, H, W, C).

    Both int64 and channels_last (a 1D kind: H = 1), whatever the layer's data_format.
    """
    mid = depthwise_mid_raw(layer, formats, x_raw)
    pw_raw, bias_raw = quantize_pointwise(layer, formats)
    return pointwise_raw(mid, pw_raw, bias_raw, formats, layer.activation)


def separable_forward(layer, formats, x):
    """Float64 input in the layer's data_format to the exact (dequantized) fixed output."""
    _check(layer)
    x, batched = to_channels_last(layer.spec, x)
    out_raw = separable_forward_raw(layer, formats, formats.input.quantize(x))
    return from_channels_last(layer.spec, formats.output.to_float(out_raw), batched)


def separable_float_nhwc(layer, x):
    """Float output (N, oh, ow, F) for float64 input (N, H, W, C): what Keras computes."""
    _check(layer)
    mid = float_forward_nhwc(layer.depthwise, x)
    acc = mid @ layer.pointwise_kernel.astype(np.float64) + \
        layer.pointwise_bias.astype(np.float64)
    return float_activation(acc, layer.activation)


def separable_float_forward(layer, x):
    """Float output in the layer's data_format; ``x`` is (N, ...) or one image."""
    _check(layer)
    x, batched = to_channels_last(layer.spec, x)
    return from_channels_last(layer.spec, separable_float_nhwc(layer, x), batched)


def weights_raw(layer, formats):
    """Every raw weight of the block: depthwise kernel and bias, pointwise kernel and bias."""
    kernel_raw, dw_bias_raw = quantize_weights(layer.depthwise, formats)
    pw_raw, bias_raw = quantize_pointwise(layer, formats)
    return kernel_raw, dw_bias_raw, pw_raw, bias_raw
