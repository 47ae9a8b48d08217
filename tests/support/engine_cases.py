"""Building an engine case for tests: a random layer, its golden output and its engine."""

from dataclasses import dataclass

import numpy as np

from dwconv.golden.fixed_ref import fixed_forward_raw, quantize_weights
from dwconv.golden.formats import LayerFormats
from dwconv.golden.layer import Layer
from dwconv.golden.spec import LayerSpec
from dwconv.hw.engine import DepthwiseEngine

#: Format sets the sweeps cycle through: plain truncation and wrap, rounding with saturation,
#: convergent rounding into an unsigned output, and a given (narrow) accumulator.
FORMAT_SETS = {
    "trn_wrap": dict(input="fixed<8,3>", weight="fixed<8,2>", bias="fixed<8,3>",
                     output="fixed<8,4>"),
    "rnd_sat": dict(input="fixed<8,3>", weight="fixed<6,1>", bias="fixed<10,4>",
                    output="fixed<10,5,RND,SAT>"),
    "conv_sym": dict(input="ufixed<6,2>", weight="fixed<7,2,RND_CONV,SAT>",
                     bias="fixed<8,4,RND,SAT>", output="ufixed<8,4,RND_CONV,SAT>"),
    "accum": dict(input="fixed<8,3>", weight="fixed<8,2>", bias="fixed<8,3>",
                  accum="fixed<14,7,RND_ZERO,SAT_SYM>", output="fixed<9,5,RND_INF,SAT_ZERO>"),
}


@dataclass
class EngineCase:
    layer: Layer
    formats: LayerFormats
    lanes: int
    kernel_raw: np.ndarray
    bias_raw: np.ndarray
    engine: DepthwiseEngine

    def frames(self, count, rng):
        """Random raw input frames covering the input format's whole range."""
        fmt = self.formats.input
        return rng.integers(fmt.raw_min, fmt.raw_max + 1,
                            size=(count, *self.layer.spec.input_shape))

    def expected(self, frames_raw, layer=None):
        return fixed_forward_raw(layer or self.layer, self.formats, frames_raw)


def random_layer(spec, rng, scale=1.0):
    kernel = rng.normal(scale=scale, size=spec.kernel_shape).astype(np.float32)
    bias = (rng.normal(scale=scale, size=spec.out_channels).astype(np.float32)
            if spec.use_bias else None)
    return Layer(spec, kernel, bias)


def make_case(*, shape, kernel, strides=1, dilation=1, padding="valid", multiplier=1,
              lanes=None, activation="linear", use_bias=True, formats="rnd_sat",
              weights="const", seed=0):
    rng = np.random.default_rng(seed)
    spec = LayerSpec(input_shape=shape, kernel_size=kernel, strides=strides,
                     dilation_rate=dilation, padding=padding, depth_multiplier=multiplier,
                     activation=activation, use_bias=use_bias)
    layer = random_layer(spec, rng)
    fmts = LayerFormats.from_strings(**FORMAT_SETS[formats])
    lanes = lanes or spec.channels
    kernel_raw, bias_raw = quantize_weights(layer, fmts)
    engine = DepthwiseEngine(spec, fmts, lanes, kernel_raw, bias_raw, weights=weights)
    return EngineCase(layer, fmts, lanes, kernel_raw, bias_raw, engine)
