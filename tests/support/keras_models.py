"""Small Keras models and layers built by the tests (imported only by tests that need Keras)."""

import numpy as np

import keras

from dwconv.golden.layer import Layer
from dwconv.golden.spec import LayerSpec


def keras_layer(spec, kernel, bias, name=None):
    """A built keras.layers.DepthwiseConv2D with the given weights."""
    layer = keras.layers.DepthwiseConv2D(
        kernel_size=spec.kernel_size, strides=spec.strides, padding=spec.padding,
        depth_multiplier=spec.depth_multiplier, dilation_rate=spec.dilation_rate,
        use_bias=spec.use_bias, activation=spec.activation, data_format=spec.data_format,
        name=name or spec.name)
    h, w, c = spec.input_shape
    shape = (None, c, h, w) if spec.data_format == "channels_first" else (None, h, w, c)
    layer.build(shape)
    layer.set_weights([kernel, bias] if spec.use_bias else [kernel])
    return layer


def random_layer(rng, spec, scale=1.0):
    """A Layer with random float32 weights for ``spec``."""
    kernel = (rng.normal(0, scale, spec.kernel_shape)).astype(np.float32)
    bias = (rng.normal(0, scale, spec.out_channels).astype(np.float32)
            if spec.use_bias else None)
    return Layer(spec, kernel, bias)


def random_input(rng, spec, batch=2, scale=2.0):
    h, w, c = spec.input_shape
    shape = (batch, c, h, w) if spec.data_format == "channels_first" else (batch, h, w, c)
    return rng.normal(0, scale, shape).astype(np.float32)


def keras_output(spec, layer, x):
    """What Keras computes for ``layer``'s weights on float32 input ``x``."""
    k = keras_layer(spec, layer.kernel, layer.bias)
    return np.asarray(keras.ops.convert_to_numpy(k(x)), dtype=np.float64)


__all__ = ["keras_layer", "random_layer", "random_input", "keras_output", "LayerSpec"]
