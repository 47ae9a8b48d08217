"""golden/layer.py: weight shape checks and the data_format adapters."""

import numpy as np
import pytest

from dwconv.golden.layer import Layer, from_channels_last, to_channels_last
from dwconv.golden.spec import LayerError, LayerSpec

SPEC = LayerSpec(input_shape=(4, 5, 3), kernel_size=(2, 3), depth_multiplier=2, name="dw")


def test_weights_are_float32_read_only_copies():
    kernel = np.ones(SPEC.kernel_shape)
    layer = Layer(SPEC, kernel, np.arange(6))
    assert layer.kernel.dtype == np.float32 and layer.bias.dtype == np.float32
    kernel[:] = 5
    assert layer.kernel.max() == 1
    with pytest.raises(ValueError):
        layer.kernel[0, 0, 0, 0] = 2


@pytest.mark.parametrize("kernel_shape, bias_shape, message", [
    ((2, 3, 3, 1), (6,), "kernel"),
    ((3, 2, 3, 2), (6,), "kernel"),
    ((2, 3, 3, 2), (3,), "bias"),
    ((2, 3, 3, 2), (6, 1), "bias"),
])
def test_shape_checks(kernel_shape, bias_shape, message):
    with pytest.raises(LayerError, match=f"{message} of layer 'dw' has shape"):
        Layer(SPEC, np.zeros(kernel_shape), np.zeros(bias_shape))


def test_bias_rules():
    no_bias = LayerSpec(input_shape=(4, 5, 3), kernel_size=1, use_bias=False)
    np.testing.assert_array_equal(Layer(no_bias, np.ones((1, 1, 3, 1))).bias, 0)
    with pytest.raises(LayerError, match="nonzero bias"):
        Layer(no_bias, np.ones((1, 1, 3, 1)), np.ones(3))
    with pytest.raises(LayerError, match="none was given"):
        Layer(SPEC, np.ones(SPEC.kernel_shape))
    with pytest.raises(LayerError, match="NaN"):
        Layer(SPEC, np.full(SPEC.kernel_shape, np.nan), np.zeros(6))


def test_channels_first_round_trip():
    spec = LayerSpec(input_shape=(4, 5, 3), kernel_size=1, data_format="channels_first")
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    nhwc, batched = to_channels_last(spec, x)
    assert batched and nhwc.shape == (2, 4, 5, 3) and nhwc.dtype == np.float64
    np.testing.assert_array_equal(nhwc[1, 2, 3], x[1, :, 2, 3])
    np.testing.assert_array_equal(from_channels_last(spec, nhwc), x)
    single, batched = to_channels_last(spec, x[0])
    assert not batched and single.shape == (1, 4, 5, 3)
    assert from_channels_last(spec, single, batched).shape == (3, 4, 5)
