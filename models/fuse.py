"""Fold the layers around a depthwise-like layer into it (``--fuse``).

A ZeroPadding1D/2D directly before it (its only consumer) becomes part of its padding:
explicit pads, the same output from the unpadded input.

BatchNormalization is affine per channel, so it folds exactly into the kernel and bias:
``scale = gamma / sqrt(var + eps)``, ``kernel *= scale`` per output channel,
``bias = (bias - mean) * scale + beta``.  ReLU and ReLU6 become the layer's activation.
Folding stops at the first layer that cannot be folded, or where the chain branches (the
intermediate value is needed elsewhere), and a BatchNormalization after an activation
cannot be folded (it does not commute with the clamp).  After a separable layer they fold
into its pointwise stage.  With ``pointwise``, a 1x1 Conv2D (stride 1, no groups) after a
DepthwiseConv2D [+ BatchNormalization + ReLU/ReLU6] joins it into a SeparableLayer of kind
"DepthwiseConv2D+Conv2D" (the depthwise part keeps its bias and activation); what follows
the Conv2D then folds into the pointwise stage.
"""

import dataclasses

import numpy as np

from ..golden.layer import Layer, SeparableLayer
from ..golden.spec import LayerError

__all__ = ["fold_batchnorm", "combine_activations", "fuse_following", "fold_zero_padding",
           "join_pointwise"]


def combine_activations(first, second):
    """The single activation equal to ``second(first(x))`` for linear/relu/relu6."""
    if first == "linear":
        return second
    if second == "linear":
        return first
    return "relu6" if "relu6" in (first, second) else "relu"


def fold_batchnorm(layer, gamma, beta, mean, variance, epsilon, name="batch_normalization"):
    """A Layer equal to ``layer`` followed by inference-mode batch normalization.

    Parameters are per output channel (C*M,; a SeparableLayer's F,); the layer gains a
    bias if it had none.
    """
    if isinstance(layer, SeparableLayer):
        return _fold_batchnorm_pointwise(layer, gamma, beta, mean, variance, epsilon, name)
    if layer.spec.activation != "linear":
        raise LayerError(f"cannot fold {name} into {layer.name!r}: it follows the activation "
                         f"{layer.spec.activation}")
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(variance, np.float64) + epsilon)
    kernel = layer.kernel.astype(np.float64) * scale.reshape(layer.spec.channels,
                                                             layer.spec.depth_multiplier)
    bias = (layer.bias.astype(np.float64) - mean) * scale + np.asarray(beta, np.float64)
    spec = _replace(layer.spec, use_bias=True)
    return Layer(spec, kernel.astype(np.float32), bias.astype(np.float32),
                 fused=layer.fused + (name,))


def _fold_batchnorm_pointwise(layer, gamma, beta, mean, variance, epsilon, name):
    if layer.activation != "linear":
        raise LayerError(f"cannot fold {name} into {layer.name!r}: it follows the activation "
                         f"{layer.activation}")
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(variance, np.float64) + epsilon)
    kernel = layer.pointwise_kernel.astype(np.float64) * scale
    bias = (layer.pointwise_bias.astype(np.float64) - mean) * scale + np.asarray(beta,
                                                                                 np.float64)
    return layer.replace(pointwise_kernel=kernel.astype(np.float32),
                         pointwise_bias=bias.astype(np.float32), use_bias=True,
                         fused=layer.fused + (name,))


def _activation(layer):
    return layer.activation if isinstance(layer, SeparableLayer) else layer.spec.activation


def _with_activation(layer, activation, name):
    """``layer`` followed by ``activation`` (the layer called ``name``)."""
    combined = combine_activations(_activation(layer), activation)
    if isinstance(layer, SeparableLayer):
        return layer.replace(activation=combined, fused=layer.fused + (name,))
    spec = _replace(layer.spec, activation=combined)
    return Layer(spec, layer.kernel, layer.bias, fused=layer.fused + (name,))


def fold_zero_padding(graph, model_layer, layer):
    """``layer`` with the ZeroPadding layers directly before ``model_layer`` folded into its
    (depthwise part's) padding, where it is their only consumer."""
    from .keras_io import ZERO_PADDING_CLASSES, _zero_pads

    current = model_layer
    while True:
        source = graph.input_of(current)
        if (source is None or source.class_name not in ZERO_PADDING_CLASSES or
                graph.is_output(source) or len(graph.consumers(source)) != 1):
            return layer
        pads = _zero_pads(source)
        spec = layer.spec
        data_format = source.config.get("data_format") or "channels_last"
        if pads is None or data_format != spec.data_format or len(pads) != spec.rank:
            return layer
        spec = spec.with_pads(((0, 0),) + pads if spec.rank == 1 else pads)
        fused = (source.name,)
        if isinstance(layer, SeparableLayer):
            depthwise = layer.depthwise
            layer = layer.replace(depthwise=Layer(spec, depthwise.kernel, depthwise.bias,
                                                  fused=fused + depthwise.fused))
        else:
            layer = Layer(spec, layer.kernel, layer.bias, fused=fused + layer.fused)
        current = source


def _pointwise_conv(graph, model_layer, layer):
    """The (kernel (C*M, F), bias or None, activation) of a 1x1 Conv2D that can join
    ``layer`` as its pointwise stage, or None."""
    cfg = model_layer.config
    if model_layer.class_name != "Conv2D" or not isinstance(layer, Layer) or \
            layer.spec.rank != 2:
        return None
    ones = lambda key: cfg.get(key, 1) in (1, [1, 1])
    if not (ones("kernel_size") and ones("strides") and ones("groups")):
        return None
    if (cfg.get("data_format") or "channels_last") != layer.spec.data_format:
        return None
    activation = cfg.get("activation", "linear")
    if activation not in (None, "linear", "relu", "relu6"):
        return None
    use_bias = bool(cfg.get("use_bias", True))
    arrays = graph.weights(model_layer)
    if len(arrays) != 1 + use_bias or arrays[0].shape[:3] != (1, 1, layer.spec.out_channels):
        return None
    return arrays[0], arrays[1] if use_bias else None, activation or "linear"


def join_pointwise(layer, kernel, bias, activation, name):
    """A SeparableLayer: ``layer`` then a 1x1 convolution (kernel (1, 1, C*M, F))."""
    return SeparableLayer(layer, kernel, bias, use_bias=bias is not None,
                          activation=activation, kind="DepthwiseConv2D+Conv2D",
                          name=layer.name, fused=(name,))


def _replace(spec, **changes):
    return dataclasses.replace(spec, **changes)


def _activation_of(model_layer):
    """The activation a ReLU/Activation layer computes, or None if it is not foldable."""
    cfg = model_layer.config
    if model_layer.class_name == "Activation":
        activation = cfg.get("activation")
        return activation if activation in ("linear", "relu", "relu6") else None
    if model_layer.class_name == "ReLU":
        if float(cfg.get("negative_slope") or 0) != 0 or float(cfg.get("threshold") or 0) != 0:
            return None
        max_value = cfg.get("max_value")
        if max_value is None:
            return "relu"
        return "relu6" if float(max_value) == 6.0 else None
    return None


def _batchnorm_params(graph, model_layer, layer):
    """(gamma, beta, mean, variance, epsilon) of a BatchNormalization, or None."""
    cfg = model_layer.config
    axis = cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    rank = layer.spec.rank + 2            # the arrays' axes: N, spatial..., channels
    channel_axes = (1, 1 - rank) if layer.data_format == "channels_first" else (rank - 1, -1)
    if axis not in channel_axes:
        return None
    arrays = graph.weights(model_layer)
    center, scale = cfg.get("center", True), cfg.get("scale", True)
    if len(arrays) != 2 + int(bool(center)) + int(bool(scale)):
        return None
    outputs = layer.out_channels
    if any(a.shape != (outputs,) for a in arrays):
        return None
    arrays = list(arrays)
    gamma = arrays.pop(0) if scale else np.ones(outputs)
    beta = arrays.pop(0) if center else np.zeros(outputs)
    mean, variance = arrays
    return gamma, beta, mean, variance, float(cfg.get("epsilon", 1e-3))


def fuse_following(graph, model_layer, layer, quantized=False, output_quantized=False,
                   pointwise=False):
    """Fold what directly follows ``model_layer`` in ``graph`` into ``layer``.

    Only layers of ``model_layer``'s own (sub-)model are folded: a nested model's output
    goes on outside it, and is not followed there.  ``quantized``: the kernel is QKeras'
    quantized kernel, into which a BatchNormalization cannot fold without leaving the
    quantizer's grid (QKeras' QDepthwiseConv2DBatchnorm folds before quantizing).
    ``output_quantized``: the layer's output is already quantized (a QKeras output
    quantizer), which a BatchNormalization after it does not commute with.  ``pointwise``:
    join a 1x1 Conv2D after a (non-QKeras) depthwise layer, see ``join_pointwise``.
    """
    current = model_layer
    while True:
        if graph.is_output(current):
            return layer
        consumers = graph.consumers(current)
        if len(consumers) != 1 or len(consumers[0].inputs) != 1:
            return layer
        following = consumers[0]
        joined = (_pointwise_conv(graph, following, layer)
                  if pointwise and not quantized and not output_quantized else None)
        if joined is not None:
            layer = join_pointwise(layer, *joined, name=following.name)
        elif following.class_name == "BatchNormalization":
            if _activation(layer) != "linear" or output_quantized:
                return layer
            if quantized:
                raise LayerError(f"cannot fold {following.name!r} into the QKeras layer "
                                 f"{layer.name!r}: its kernel is quantized and the folded one "
                                 f"would not be; drop --fuse, or train with "
                                 f"QDepthwiseConv2DBatchnorm")
            params = _batchnorm_params(graph, following, layer)
            if params is None:
                return layer
            layer = fold_batchnorm(layer, *params, name=following.name)
        else:
            activation = _activation_of(following)
            if activation is None:
                return layer
            layer = _with_activation(layer, activation, following.name)
        current = following
