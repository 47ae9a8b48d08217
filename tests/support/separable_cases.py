"""Separable block cases for tests: a random depthwise part and pointwise kernel, the
expected output (depthwise golden with mid as its output format, then the pointwise
reference) and the block."""

import dataclasses
from dataclasses import dataclass

import numpy as np

from dwconv.golden.fixed import QFormat
from dwconv.golden.fixed_ref import fixed_forward_raw, quantize_weights
from dwconv.golden.formats import LayerFormats
from dwconv.golden.layer import Layer, SeparableLayer
from dwconv.golden.separable_ref import separable_forward_raw
from dwconv.golden.spec import LayerSpec
from dwconv.hw.separable import SeparableEngine

from support.pointwise_reference import pointwise_reference

FORMAT_SETS = {
    "rnd_sat": dict(formats=dict(input="fixed<8,3>", weight="fixed<6,1>", bias="fixed<10,4>",
                                 output="fixed<10,5,RND,SAT>"),
                    mid="fixed<8,4,RND,SAT>", pointwise="fixed<8,2>"),
    "trn_wrap": dict(formats=dict(input="fixed<8,3>", weight="fixed<8,2>", bias="fixed<8,3>",
                                  output="fixed<8,4>"),
                     mid="fixed<9,5>", pointwise="fixed<7,1>"),
    "accum": dict(formats=dict(input="ufixed<6,2>", weight="fixed<7,2,RND_CONV,SAT>",
                               bias="fixed<8,4,RND,SAT>", accum="fixed<16,8,RND_ZERO,SAT_SYM>",
                               output="ufixed<8,4,RND_CONV,SAT>"),
                  mid="ufixed<8,4,RND_CONV,SAT>", pointwise="fixed<6,2,RND>"),
    # pointwise weights wider than the depthwise weights and bias (the load's width)
    "wide_pw": dict(formats=dict(input="fixed<8,3>", weight="fixed<6,1>", bias="fixed<8,3>",
                                 output="fixed<12,6,RND,SAT>"),
                    mid="fixed<8,4,RND,SAT>", pointwise="fixed<12,2>"),
    # the 8-bit block of the synthesis runs
    "int8": dict(formats=dict(input="fixed<8,3>", weight="fixed<8,1>", bias="fixed<8,3>",
                              output="fixed<8,4,RND,SAT>"),
                 mid="fixed<8,4,RND,SAT>", pointwise="fixed<8,1>"),
}


@dataclass
class BlockCase:
    spec: LayerSpec
    formats: LayerFormats
    mid: QFormat
    pointwise: QFormat
    layer: Layer
    kernel_raw: np.ndarray
    bias_raw: np.ndarray
    pw_raw: np.ndarray
    pw_bias_raw: np.ndarray
    activation: str
    block: SeparableEngine

    @property
    def depthwise_formats(self):
        return dataclasses.replace(self.formats, accum=None, output=self.mid)

    def frames(self, count, rng):
        fmt = self.formats.input
        return rng.integers(fmt.raw_min, fmt.raw_max + 1, size=(count, *self.spec.input_shape))

    def mid_values(self, frames):
        return fixed_forward_raw(self.layer, self.depthwise_formats, frames)

    def expected(self, frames, weights=None):
        """The block's raw output; ``weights`` (layer, pointwise raw, pointwise bias raw)
        replace the case's own."""
        layer, pw_raw, pw_bias_raw = weights or (self.layer, self.pw_raw, self.pw_bias_raw)
        f = self.formats
        mid = fixed_forward_raw(layer, self.depthwise_formats, frames)
        return pointwise_reference(mid, pw_raw, pw_bias_raw, mid=self.mid,
                                   pointwise=self.pointwise, bias=f.bias, accum=f.accum,
                                   output=f.output, activation=self.activation)

    def separable_layer(self, weights=None):
        """The block as a ``SeparableLayer`` with the case's (or ``weights``') values, for
        ``golden.separable_ref``: the raw pointwise values are on their formats' grids."""
        layer, pw_raw, pw_bias_raw = weights or (self.layer, self.pw_raw, self.pw_bias_raw)
        use_bias = self.block.pointwise.use_bias
        spec = layer.spec
        keras_like = not spec.use_bias and spec.activation == "linear"
        return SeparableLayer(layer, self.pointwise.to_float(pw_raw),
                              self.formats.bias.to_float(pw_bias_raw) if use_bias else None,
                              use_bias=use_bias, activation=self.activation,
                              kind="SeparableConv2D" if keras_like else "DepthwiseConv2D+Conv2D")

    def golden(self, frames, weights=None):
        """``golden.separable_ref.separable_forward_raw`` of the block on raw frames."""
        formats = dataclasses.replace(self.formats, mid=self.mid, pointwise=self.pointwise)
        return separable_forward_raw(self.separable_layer(weights), formats, frames)

    def other_weights(self, rng):
        """Random weights for a load: (layer, pointwise raw, pointwise bias raw)."""
        spec = self.spec
        bias = rng.normal(size=spec.out_channels).astype(np.float32) if spec.use_bias else None
        layer = Layer(spec, rng.normal(size=spec.kernel_shape).astype(np.float32), bias)
        pw_raw = self.pointwise.quantize(rng.normal(size=self.pw_raw.shape))
        pw_bias_raw = (self.formats.bias.quantize(rng.normal(size=self.pw_bias_raw.shape))
                       if self.block.pointwise.use_bias else np.zeros_like(self.pw_bias_raw))
        return layer, pw_raw, pw_bias_raw

    def load_values(self, weights):
        """The weight port's raw values for (layer, pointwise raw, pointwise bias raw)."""
        layer, pw_raw, pw_bias_raw = weights
        kernel_raw, bias_raw = quantize_weights(layer, self.depthwise_formats)
        return self.block.load_values(kernel_raw, bias_raw, pw_raw, pw_bias_raw)


def make_block(*, shape, kernel, filters, strides=1, dilation=1, padding="same", multiplier=1,
               lanes=None, out_lanes=None, reuse=1, pointwise_reuse=None, formats="rnd_sat",
               activation="linear", depthwise_bias=False, depthwise_activation="linear",
               pointwise_bias=True, weights="const", target=None, seed=0):
    rng = np.random.default_rng(seed)
    spec = LayerSpec(input_shape=shape, kernel_size=kernel, strides=strides,
                     dilation_rate=dilation, padding=padding, depth_multiplier=multiplier,
                     use_bias=depthwise_bias, activation=depthwise_activation)
    kernel_f = rng.normal(size=spec.kernel_shape).astype(np.float32)
    bias_f = rng.normal(size=spec.out_channels).astype(np.float32) if depthwise_bias else None
    layer = Layer(spec, kernel_f, bias_f)
    sets = FORMAT_SETS[formats]
    fmts = LayerFormats.from_strings(**sets["formats"])
    mid, pointwise = QFormat.parse(sets["mid"]), QFormat.parse(sets["pointwise"])
    dw_formats = dataclasses.replace(fmts, accum=None, output=mid)
    kernel_raw, bias_raw = quantize_weights(layer, dw_formats)
    pw_raw = pointwise.quantize(rng.normal(size=(spec.out_channels, filters)))
    pw_bias_raw = (fmts.bias.quantize(rng.normal(size=filters)) if pointwise_bias
                   else np.zeros(filters, dtype=np.int64))
    block = SeparableEngine(spec, fmts, lanes or spec.channels, kernel_raw, bias_raw, pw_raw,
                            pw_bias_raw, activation=activation, mid=mid, pointwise=pointwise,
                            out_lanes=out_lanes, reuse=reuse, pointwise_reuse=pointwise_reuse,
                            use_bias=pointwise_bias, weights=weights, target=target)
    return BlockCase(spec, fmts, mid, pointwise, layer, kernel_raw, bias_raw, pw_raw,
                     pw_bias_raw, activation, block)
