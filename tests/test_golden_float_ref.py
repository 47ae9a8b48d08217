"""golden/float_ref.py against keras.layers.DepthwiseConv2D (JAX backend), every option."""

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

pytest.importorskip("keras")

from support.keras_models import keras_output, random_input, random_layer  # noqa: E402

from dwconv.golden.float_ref import float_forward  # noqa: E402
from dwconv.golden.layer import Layer  # noqa: E402
from dwconv.golden.spec import LayerError, LayerSpec  # noqa: E402


def assert_float32_close(keras_y, ours, layer, x):
    """Equal up to float32 rounding: bound each element by eps times its sum of |terms|."""
    linear = dataclasses.replace(layer.spec, activation="linear")
    magnitude = float_forward(Layer(linear, np.abs(layer.kernel), np.abs(layer.bias)),
                              np.abs(x))
    tolerance = 16 * np.finfo(np.float32).eps * (magnitude + 1.0)
    assert keras_y.shape == ours.shape
    assert np.all(np.abs(keras_y - ours) <= tolerance), np.max(np.abs(keras_y - ours))



SWEEP = [
    dict(kernel_size=3),
    dict(kernel_size=3, padding="same"),
    dict(kernel_size=1),
    dict(kernel_size=(1, 3), padding="same"),
    dict(kernel_size=2, padding="same"),                      # even: asymmetric padding
    dict(kernel_size=(4, 2), padding="same", strides=2),
    dict(kernel_size=3, strides=2),
    dict(kernel_size=3, strides=(2, 3), padding="same"),
    dict(kernel_size=3, dilation_rate=2),
    dict(kernel_size=3, dilation_rate=(1, 2), padding="same"),
    dict(kernel_size=3, strides=2, dilation_rate=2, padding="same"),
    dict(kernel_size=2, strides=(1, 2), dilation_rate=(2, 1), padding="same"),
    dict(kernel_size=3, strides=2, dilation_rate=2),
    dict(kernel_size=3, depth_multiplier=2),
    dict(kernel_size=2, depth_multiplier=3, padding="same", strides=2),
    dict(kernel_size=3, use_bias=False),
    dict(kernel_size=3, activation="relu", padding="same"),
    dict(kernel_size=3, activation="relu6", padding="same"),
    dict(kernel_size=3, data_format="channels_first", padding="same"),
    dict(kernel_size=(2, 3), data_format="channels_first", depth_multiplier=2, strides=2,
         dilation_rate=(1, 2), activation="relu6", padding="same"),
    dict(kernel_size=5, padding="same", input_shape=(3, 4, 2)),  # kernel larger than input
]


@pytest.mark.parametrize("options", SWEEP, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_sweep_matches_keras(options):
    options = {"input_shape": (7, 6, 3), **options}
    spec = LayerSpec(**options)
    rng = np.random.default_rng(abs(hash(repr(sorted(options.items())))) % 2**32)
    layer = random_layer(rng, spec)
    x = random_input(rng, spec)
    if spec.activation == "relu6":
        x *= 3      # so that some outputs reach 6
    ours = float_forward(layer, x)
    assert_float32_close(keras_output(spec, layer, x), ours, layer, x)


@st.composite
def configurations(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["valid", "same"]))
    low_h = (kh - 1) * dh + 1 if padding == "valid" else 1
    low_w = (kw - 1) * dw + 1 if padding == "valid" else 1
    return LayerSpec(
        input_shape=(draw(st.integers(low_h, low_h + 5)), draw(st.integers(low_w, low_w + 5)),
                     draw(st.integers(1, 3))),
        kernel_size=(kh, kw), strides=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        dilation_rate=(dh, dw), padding=padding, depth_multiplier=draw(st.integers(1, 3)),
        use_bias=draw(st.booleans()),
        activation=draw(st.sampled_from(["linear", "relu", "relu6"])),
        data_format=draw(st.sampled_from(["channels_last", "channels_first"])))


@given(configurations(), st.integers(0, 2**32 - 1))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_configurations_match_keras(spec, seed):
    rng = np.random.default_rng(seed)
    layer = random_layer(rng, spec)
    x = random_input(rng, spec, batch=1, scale=3.0)
    assert_float32_close(keras_output(spec, layer, x), float_forward(layer, x), layer, x)


def test_single_image_keeps_its_rank():
    spec = LayerSpec(input_shape=(4, 4, 2), kernel_size=3, data_format="channels_first")
    layer = random_layer(np.random.default_rng(0), spec)
    x = np.ones((2, 4, 4))
    y = float_forward(layer, x)
    assert y.shape == (2, 2, 2)
    np.testing.assert_array_equal(y, float_forward(layer, x[np.newaxis])[0])


@pytest.mark.parametrize("shape", [(4, 4), (4, 4, 3), (1, 4, 5, 2), (0, 4, 4, 2), (1, 1, 4, 4, 2)])
def test_bad_input_shape(shape):
    spec = LayerSpec(input_shape=(4, 4, 2), kernel_size=3)
    layer = random_layer(np.random.default_rng(0), spec)
    with pytest.raises(LayerError, match="shape"):
        float_forward(layer, np.zeros(shape))


def test_nan_input():
    spec = LayerSpec(input_shape=(4, 4, 2), kernel_size=3)
    layer = random_layer(np.random.default_rng(0), spec)
    with pytest.raises(LayerError, match="NaN"):
        float_forward(layer, np.full((4, 4, 2), np.inf))
