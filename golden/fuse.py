"""Fold the layers that directly follow a DepthwiseConv2D into it (``--fuse``).

BatchNormalization is affine per channel, so it folds exactly into the kernel and bias:
``scale = gamma / sqrt(var + eps)``, ``kernel *= scale`` per output channel,
``bias = (bias - mean) * scale + beta``.  ReLU and ReLU6 become the layer's activation.
Folding stops at the first layer that cannot be folded, or where the chain branches (the
intermediate value is needed elsewhere), and a BatchNormalization after an activation
cannot be folded (it does not commute with the clamp).
"""

import dataclasses

import numpy as np

from .layer import Layer
from .spec import LayerError

__all__ = ["fold_batchnorm", "combine_activations", "fuse_following"]


def combine_activations(first, second):
    """The single activation equal to ``second(first(x))`` for linear/relu/relu6."""
    if first == "linear":
        return second
    if second == "linear":
        return first
    return "relu6" if "relu6" in (first, second) else "relu"


def fold_batchnorm(layer, gamma, beta, mean, variance, epsilon, name="batch_normalization"):
    """A Layer equal to ``layer`` followed by inference-mode batch normalization.

    Parameters are per output channel (C*M,); the layer gains a bias if it had none.
    """
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
    channel_axes = (1, -3) if layer.spec.data_format == "channels_first" else (3, -1)
    if axis not in channel_axes:
        return None
    arrays = graph.weights(model_layer)
    center, scale = cfg.get("center", True), cfg.get("scale", True)
    if len(arrays) != 2 + int(bool(center)) + int(bool(scale)):
        return None
    outputs = layer.spec.out_channels
    if any(a.shape != (outputs,) for a in arrays):
        return None
    arrays = list(arrays)
    gamma = arrays.pop(0) if scale else np.ones(outputs)
    beta = arrays.pop(0) if center else np.zeros(outputs)
    mean, variance = arrays
    return gamma, beta, mean, variance, float(cfg.get("epsilon", 1e-3))


def fuse_following(graph, model_layer, layer, quantized=False, output_quantized=False):
    """Fold what directly follows ``model_layer`` in ``graph`` into ``layer``.

    Only layers of ``model_layer``'s own (sub-)model are folded: a nested model's output
    goes on outside it, and is not followed there.  ``quantized``: the kernel is QKeras'
    quantized kernel, into which a BatchNormalization cannot fold without leaving the
    quantizer's grid (QKeras' QDepthwiseConv2DBatchnorm folds before quantizing).
    ``output_quantized``: the layer's output is already quantized (a QKeras output
    quantizer), which a BatchNormalization after it does not commute with.
    """
    current = model_layer
    while True:
        if graph.is_output(current):
            return layer
        consumers = graph.consumers(current)
        if len(consumers) != 1 or len(consumers[0].inputs) != 1:
            return layer
        following = consumers[0]
        if following.class_name == "BatchNormalization":
            if layer.spec.activation != "linear" or output_quantized:
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
            spec = _replace(layer.spec, activation=combine_activations(layer.spec.activation,
                                                                       activation))
            layer = Layer(spec, layer.kernel, layer.bias, fused=layer.fused + (following.name,))
        current = following
