"""Float reference: what keras.layers.DepthwiseConv2D computes, in float64.

Keras rounds to float32 along the way; this model does not, so the two agree to float32
tolerance, and the difference is Keras' rounding, not ours.
"""

import numpy as np

from .layer import SeparableLayer, from_channels_last, to_channels_last

__all__ = ["float_forward", "float_forward_nhwc", "float_activation", "tap_views"]


def tap_views(spec, x):
    """For each kernel tap (i, j), the input pixels it meets at every output position.

    ``x`` is (N, H, W, C) channels_last; the padding is zeros around it, so taps that fall
    in the padding meet zeros and add nothing.  Yields ``(i, j, view)`` with view shape
    (N, oh, ow, C): a strided slice, no copy per tap.
    """
    kh, kw = spec.kernel_size
    sh, sw = spec.strides
    dh, dw = spec.dilation_rate
    oh, ow = spec.out_height, spec.out_width
    padded = np.pad(x, ((0, 0), (spec.pad_top, spec.pad_bottom),
                        (spec.pad_left, spec.pad_right), (0, 0)))
    for i in range(kh):
        for j in range(kw):
            top, left = i * dh, j * dw
            yield i, j, padded[:, top:top + (oh - 1) * sh + 1:sh,
                               left:left + (ow - 1) * sw + 1:sw, :]


def float_forward_nhwc(layer, x):
    """Float output (N, oh, ow, C*M) for float64 input (N, H, W, C).

    A SeparableLayer gives its block's output (N, oh, ow, F).
    """
    if isinstance(layer, SeparableLayer):
        from .separable_ref import separable_float_nhwc    # it builds on this module
        return separable_float_nhwc(layer, x)
    spec = layer.spec
    multiplier = spec.depth_multiplier
    kernel = layer.kernel.astype(np.float64)
    n = x.shape[0]
    acc = np.zeros((n, spec.out_height, spec.out_width, spec.channels, multiplier))
    for i, j, view in tap_views(spec, x):
        acc += view[..., np.newaxis] * kernel[i, j]
    acc = acc.reshape(n, spec.out_height, spec.out_width, spec.out_channels)
    acc += layer.bias.astype(np.float64)
    return float_activation(acc, spec.activation)


def float_activation(acc, activation):
    """``acc`` after the activation: relu max(0, .), relu6 clamped to [0, 6], else as is."""
    if activation == "relu":
        return np.maximum(acc, 0.0)
    if activation == "relu6":
        return np.clip(acc, 0.0, 6.0)
    return acc


def float_forward(layer, x):
    """Float output in the layer's data_format; ``x`` is (N, ...) or one image."""
    x, batched = to_channels_last(layer.spec, x)
    return from_channels_last(layer.spec, float_forward_nhwc(layer, x), batched)
