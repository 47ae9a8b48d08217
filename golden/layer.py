"""A depthwise layer with its weights, a separable block (depthwise then pointwise), and the
array layout conversions around them."""

import dataclasses
from dataclasses import dataclass

import numpy as np

from .spec import ACTIVATIONS, LayerError, LayerSpec

__all__ = ["Layer", "SeparableLayer", "SEPARABLE_KINDS", "to_channels_last",
           "from_channels_last"]

#: Kinds of a SeparableLayer: Keras' separable layers, and a depthwise layer joined with
#: the 1x1 Conv2D after it (``--fuse --pointwise``).
SEPARABLE_KINDS = ("SeparableConv2D", "SeparableConv1D", "DepthwiseConv2D+Conv2D")


@dataclass(frozen=True, eq=False)
class Layer:
    """A layer configuration with its float weights in Keras layout.

    Members
    -------
    spec : LayerSpec
    kernel : float32 array (kh, kw, C, M)
        A 1D kind may give Keras' (k, C, M); it is kept as (1, k, C, M).
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
        if self.spec.rank == 1 and kernel.shape == self.spec.kernel_shape[1:]:
            kernel = kernel[np.newaxis]
        if kernel.shape != self.spec.kernel_shape:
            need, axes = self.spec.kernel_shape, "kh, kw, C, M"
            if self.spec.rank == 1:
                need, axes = need[1:], "k, C, M"
            raise LayerError(f"kernel of layer {self.spec.name!r} has shape "
                             f"{list(kernel.shape)}, but its configuration needs "
                             f"{list(need)} ({axes})")
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

    kind = property(lambda self: self.spec.kind)
    out_channels = property(lambda self: self.spec.out_channels)
    data_format = property(lambda self: self.spec.data_format)

    @property
    def keras_kernel(self):
        """The kernel in Keras' depthwise layout: (kh, kw, C, M), a 1D kind's (k, C, M)."""
        return self.kernel[0] if self.spec.rank == 1 else self.kernel


def _float_array(what, name, array, shape, axes):
    array = np.asarray(array)
    if array.shape != tuple(shape):
        raise LayerError(f"{what} of layer {name!r} has shape {list(array.shape)}, but it "
                         f"needs {list(shape)} ({axes})")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise LayerError(f"{what} of layer {name!r} must be numbers, not {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise LayerError(f"{what} of layer {name!r} holds NaN or Inf")
    array = np.ascontiguousarray(array, dtype=np.float32)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class SeparableLayer:
    """A depthwise layer feeding a pointwise stage (a 1x1 convolution, C*M -> F filters).

    Members
    -------
    depthwise : Layer
        The depthwise part.  For Keras' SeparableConv1D/2D it has no bias and a linear
        activation; for a joined pair (kind "DepthwiseConv2D+Conv2D") it keeps its own.
    pointwise_kernel : float32 array (C*M, F)
        Filter f sums ``mid[..., k] * pointwise_kernel[k, f]`` over the C*M depthwise
        outputs (Keras' (1, 1, C*M, F) or (1, C*M, F) may be given).
    pointwise_bias : float32 array (F,) or None
        Zeros when ``use_bias`` is false.
    use_bias : bool
    activation : "linear", "relu" or "relu6"
        After the pointwise sum.
    kind : one of SEPARABLE_KINDS
    name : str
        The block's name (default: the depthwise part's).
    fused : tuple of str
        Layers folded in on import after the pointwise stage (or the 1x1 Conv2D joined);
        those folded into the depthwise part are in ``depthwise.fused``.
    spec : LayerSpec
        The depthwise part's: the block's input geometry and data_format (its output is
        ``output_shape``, (oh, ow, F)).
    filters, output_shape
        F and (oh, ow, F).
    """

    depthwise: Layer
    pointwise_kernel: np.ndarray
    pointwise_bias: np.ndarray | None = None
    use_bias: bool = True
    activation: str = "linear"
    kind: str = "SeparableConv2D"
    name: str | None = None
    fused: tuple = ()

    def __post_init__(self):
        if not isinstance(self.depthwise, Layer):
            raise TypeError(f"depthwise must be a Layer, not {type(self.depthwise).__name__}")
        set_ = lambda k, v: object.__setattr__(self, k, v)
        name = self.depthwise.name if self.name is None else str(self.name)
        set_("name", name)
        if self.kind not in SEPARABLE_KINDS:
            raise LayerError(f"kind must be one of {', '.join(SEPARABLE_KINDS)}, not "
                             f"{self.kind!r}")
        spec = self.depthwise.spec
        if (self.kind == "SeparableConv1D") != (spec.rank == 1):
            raise LayerError(f"layer {name!r}: a {self.kind} needs a "
                             f"{'1D' if spec.rank == 2 else '2D'} depthwise part")
        kernel = np.asarray(self.pointwise_kernel)
        if kernel.ndim in (3, 4) and all(n == 1 for n in kernel.shape[:-2]):
            kernel = kernel.reshape(kernel.shape[-2:])
        if kernel.ndim != 2 or kernel.shape[0] != spec.out_channels or not kernel.shape[1]:
            raise LayerError(f"pointwise kernel of layer {name!r} has shape "
                             f"{list(kernel.shape)}, but it needs [{spec.out_channels}, F] "
                             f"(C*M, filters)")
        filters = kernel.shape[1]
        set_("pointwise_kernel", _float_array("pointwise kernel", name, kernel, kernel.shape,
                                              "C*M, filters"))
        if not isinstance(self.use_bias, bool):
            raise LayerError(f"use_bias must be true or false, not {self.use_bias!r}")
        if self.pointwise_bias is None:
            if self.use_bias:
                raise LayerError(f"layer {name!r} uses a bias but none was given")
            bias = np.zeros(filters, dtype=np.float32)
        else:
            bias = self.pointwise_bias
        bias = _float_array("pointwise bias", name, bias, (filters,), "filters")
        if not self.use_bias and np.any(bias != 0):
            raise LayerError(f"layer {name!r} has use_bias false but a nonzero bias was given")
        set_("pointwise_bias", bias)
        activation = "linear" if self.activation in (None, "None") else self.activation
        if activation not in ACTIVATIONS:
            raise LayerError(f"activation {activation!r} of layer {name!r} is not supported; "
                             f"use one of {', '.join(ACTIVATIONS)}")
        set_("activation", activation)
        set_("fused", tuple(self.fused))

    spec = property(lambda self: self.depthwise.spec)
    filters = property(lambda self: self.pointwise_kernel.shape[1])
    out_channels = filters
    data_format = property(lambda self: self.depthwise.spec.data_format)
    output_shape = property(lambda self: self.depthwise.spec.output_shape[:2]
                            + (self.filters,))

    def replace(self, **changes):
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)


def to_channels_last(spec, x):
    """An array in the layer's data_format, (N, ...) or one image, as float64 (N, H, W, C).

    A 1D kind takes (N, L, C) or (L, C) ((N, C, L) or (C, L) channels_first) and gives
    (N, 1, L, C).  Returns the array and whether a batch axis was given, for
    ``from_channels_last``.  Raises LayerError for a shape that does not fit or values that
    are not finite.
    """
    x = np.asarray(x)
    h, w, c = spec.input_shape
    first = spec.data_format == "channels_first"
    if spec.rank == 1:
        image = (c, w) if first else (w, c)
        names = "(N, C, L) or (C, L)" if first else "(N, L, C) or (L, C)"
    else:
        image = (c, h, w) if first else (h, w, c)
        names = "(N, C, H, W) or (C, H, W)" if first else "(N, H, W, C) or (H, W, C)"
    rank = len(image)
    if (x.ndim not in (rank, rank + 1) or tuple(x.shape[-rank:]) != image
            or (x.ndim == rank + 1 and not x.shape[0])):
        raise LayerError(f"input array has shape {list(x.shape)}, but layer {spec.name!r} "
                         f"takes {names} = {list(image)} ({spec.data_format})")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
            or x.dtype == np.bool_):
        raise LayerError(f"input array holds {x.dtype} values, not numbers")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise LayerError("input array holds NaN or Inf values")
    batched = x.ndim == rank + 1
    if not batched:
        x = x[np.newaxis]
    if spec.rank == 1:
        x = x[:, :, np.newaxis, :] if first else x[:, np.newaxis]
    if first:
        x = x.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), batched


def from_channels_last(spec, y, batched=True):
    """(N, oh, ow, channels) back to the layer's data_format, dropping N if none was given
    (and the row axis of a 1D kind)."""
    if spec.data_format == "channels_first":
        y = y.transpose(0, 3, 1, 2)
        if spec.rank == 1:
            y = y[:, :, 0, :]
    elif spec.rank == 1:
        y = y[:, 0]
    y = np.ascontiguousarray(y)
    return y if batched else y[0]
