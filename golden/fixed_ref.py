"""Fixed reference: the engine's datapath, bit for bit (docs/formats.md, "The datapath").

1. input, kernel and bias quantized to their formats (bias zero without use_bias);
2. products summed exactly at the exact accumulator's binary point
   ``Fa = max(Fx + Fw, Fb)``, the bias aligned to it and added; nothing rounds;
3. with a given accumulator format, the sum is converted to it (its Q and O apply);
4. activation on the raw sum (relu6 clamps at ``6 << frac``);
5. conversion to the output format with its Q and O.
"""

import numpy as np

from .float_ref import float_forward, tap_views
from .layer import SeparableLayer, from_channels_last, to_channels_last
from .spec import LayerError

__all__ = ["quantize_weights", "fixed_forward_raw", "fixed_forward", "float_forward",
           "accumulate_raw"]


def quantize_weights(layer, formats):
    """Raw int64 kernel (kh, kw, C, M) and bias (C*M,) in the weight and bias formats."""
    kernel_raw = formats.weight.quantize(layer.kernel)
    if layer.spec.use_bias:
        bias_raw = formats.bias.quantize(layer.bias)
    else:
        bias_raw = np.zeros(layer.spec.out_channels, dtype=np.int64)
    return kernel_raw, bias_raw


def accumulate_raw(layer, formats, x_raw):
    """Steps 1-4 on raw input: returns ``(acc, frac)``, acc int64 (N, oh, ow, C*M)."""
    spec = layer.spec
    x_raw = np.asarray(x_raw)
    if x_raw.ndim != 4 or tuple(x_raw.shape[1:]) != spec.input_shape:
        shape = ", ".join(map(str, spec.input_shape))
        raise LayerError(f"raw input has shape {list(x_raw.shape)}, but layer "
                         f"{spec.name!r} takes (N, H, W, C) = (N, {shape})")
    if not np.issubdtype(x_raw.dtype, np.integer):
        raise LayerError(f"raw input must be integers, not {x_raw.dtype}")
    x_raw = x_raw.astype(np.int64)
    if np.any(x_raw < formats.input.raw_min) or np.any(x_raw > formats.input.raw_max):
        raise LayerError(f"raw input values lie outside the input format {formats.input}")
    kernel_raw, bias_raw = quantize_weights(layer, formats)
    exact = formats.exact_accumulator(spec.taps)
    frac = exact.frac
    product_frac = formats.input.frac + formats.weight.frac

    n = x_raw.shape[0]
    acc = np.zeros((n, spec.out_height, spec.out_width, spec.channels, spec.depth_multiplier),
                   dtype=np.int64)
    for i, j, view in tap_views(spec, x_raw):
        acc += view[..., np.newaxis] * kernel_raw[i, j]
    acc = acc.reshape(n, spec.out_height, spec.out_width, spec.out_channels)
    # Shifting the sum equals shifting each product: all of it is exact integer arithmetic.
    acc = (acc << np.int64(frac - product_frac)) + (bias_raw << np.int64(frac - formats.bias.frac))

    if formats.accum is not None:
        acc = formats.accum.convert(acc, frac)
        frac = formats.accum.frac
    if spec.activation == "relu":
        acc = np.maximum(acc, 0)
    elif spec.activation == "relu6":
        acc = np.clip(acc, 0, np.int64(6) << np.int64(frac))
    return acc, frac


def fixed_forward_raw(layer, formats, x_raw):
    """Raw output (N, oh, ow, C*M) in the output format, for raw input (N, H, W, C).

    Both are int64 and channels_last, whatever the layer's data_format.  A SeparableLayer
    gives its block's output (N, oh, ow, F) (see ``golden.separable_ref``).
    """
    if isinstance(layer, SeparableLayer):
        from .separable_ref import separable_forward_raw   # it builds on this module
        return separable_forward_raw(layer, formats, x_raw)
    acc, frac = accumulate_raw(layer, formats, x_raw)
    return formats.output.convert(acc, frac)


def fixed_forward(layer, formats, x):
    """Float64 input in the layer's data_format to the exact (dequantized) fixed output."""
    x, batched = to_channels_last(layer.spec, x)
    out_raw = fixed_forward_raw(layer, formats, formats.input.quantize(x))
    return from_channels_last(layer.spec, formats.output.to_float(out_raw), batched)
