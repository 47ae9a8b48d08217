"""A DepthwiseConv2D layer with its weights, and the array layout conversions around it."""

from dataclasses import dataclass

import numpy as np

from .spec import LayerError, LayerSpec

__all__ = ["Layer", "to_channels_last", "from_channels_last"]


@dataclass(frozen=True, eq=False)
class Layer:
    """A layer configuration with its float weights in Keras layout.

    Members
    -------
    spec : LayerSpec
    kernel : float32 array (kh, kw, C, M)
    bias : float32 array (C*M,)
        Zeros when ``spec.use_bias`` is false (given as None or zeros), so that code reading
        it needs no special case; a nonzero bias on a layer without bias is an error.
    fused : tuple of str
        Names of the layers folded into this one on import (BatchNormalization, ReLU, ...).
    """

    spec: LayerSpec
    kernel: np.ndarray
    bias: np.ndarray | None = None
    fused: tuple = ()

    def __post_init__(self):
        if not isinstance(self.spec, LayerSpec):
            raise TypeError(f"spec must be a LayerSpec, not {type(self.spec).__name__}")
        kernel = np.asarray(self.kernel)
        if kernel.shape != self.spec.kernel_shape:
            raise LayerError(f"kernel of layer {self.spec.name!r} has shape "
                             f"{list(kernel.shape)}, but its configuration needs "
                             f"{list(self.spec.kernel_shape)} (kh, kw, C, M)")
        outputs = self.spec.out_channels
        if self.bias is None:
            if self.spec.use_bias:
                raise LayerError(f"layer {self.spec.name!r} uses a bias but none was given")
            bias = np.zeros(outputs, dtype=np.float32)
        else:
            bias = np.asarray(self.bias)
            if bias.shape != (outputs,):
                raise LayerError(f"bias of layer {self.spec.name!r} has shape "
                                 f"{list(bias.shape)}, but it needs [{outputs}] (C*M)")
            if not self.spec.use_bias and np.any(bias != 0):
                raise LayerError(f"layer {self.spec.name!r} has use_bias false but a "
                                 f"nonzero bias was given")
        for what, array in (("kernel", kernel), ("bias", bias)):
            if not np.issubdtype(array.dtype, np.floating) and \
                    not np.issubdtype(array.dtype, np.integer):
                raise LayerError(f"{what} of layer {self.spec.name!r} must be numbers, "
                                 f"not {array.dtype}")
            if not np.all(np.isfinite(array)):
                raise LayerError(f"{what} of layer {self.spec.name!r} holds NaN or Inf")
        object.__setattr__(self, "kernel", np.ascontiguousarray(kernel, dtype=np.float32))
        object.__setattr__(self, "bias", np.ascontiguousarray(bias, dtype=np.float32))
        object.__setattr__(self, "fused", tuple(self.fused))
        self.kernel.setflags(write=False)
        self.bias.setflags(write=False)

    @property
    def name(self):
        return self.spec.name


def to_channels_last(spec, x):
    """An array in the layer's data_format, (N, ...) or one image, as float64 (N, H, W, C).

    Returns the array and whether a batch axis was given, for ``from_channels_last``.
    Raises LayerError for a shape that does not fit or values that are not finite.
    """
    x = np.asarray(x)
    h, w, c = spec.input_shape
    first = spec.data_format == "channels_first"
    image = (c, h, w) if first else (h, w, c)
    if x.ndim not in (3, 4) or tuple(x.shape[-3:]) != image or (x.ndim == 4 and not x.shape[0]):
        names = "(N, C, H, W) or (C, H, W)" if first else "(N, H, W, C) or (H, W, C)"
        raise LayerError(f"input array has shape {list(x.shape)}, but layer {spec.name!r} "
                         f"takes {names} = {list(image)} ({spec.data_format})")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
            or x.dtype == np.bool_):
        raise LayerError(f"input array holds {x.dtype} values, not numbers")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise LayerError("input array holds NaN or Inf values")
    batched = x.ndim == 4
    if not batched:
        x = x[np.newaxis]
    if first:
        x = x.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), batched


def from_channels_last(spec, y, batched=True):
    """(N, oh, ow, C*M) back to the layer's data_format, dropping N if none was given."""
    if spec.data_format == "channels_first":
        y = y.transpose(0, 3, 1, 2)
    y = np.ascontiguousarray(y)
    return y if batched else y[0]
