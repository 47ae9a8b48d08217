"""Differential fuzzing: random layers of every kind, each engine against its golden model.

hypothesis draws examples of three kinds, in proportions ``--mix`` sets:

- **depthwise** layers (kernel, strides, dilation, padding, channels, depth multiplier,
  lanes, bias, activation, data format, weight mode) with a format set for all five tensors
  (signed and unsigned, every width and integer-bit count the formats module accepts, every
  rounding and overflow mode, the accumulator exact or given); golden ``fixed_forward_raw``;
- **separable** blocks (SeparableConv2D and SeparableConv1D shapes, and joined
  DepthwiseConv2D + 1x1 Conv2D pairs with a depthwise bias and activation; F filters, the
  mid and pointwise formats, input and output lanes, both parts' reuse, weight mode);
  golden ``separable_ref.separable_forward_raw``;
- **int8** layers (``Int8Layer`` built here: int8 kernel, int32 bias, per-channel scales,
  zero points, the fused activation's clamp; lanes, reuse; every rounding: fp32, double,
  single); engine ``Int8Engine.from_layer``, golden ``int8_ref.predict_int8``.

Each example runs two frames back to back with random stalls on both sides, in the
simulator ``--sim`` names; the output must equal the golden model exactly, with well-formed
framing and no error flag.  Port weights are loaded through the port before the first frame.

The same strategies serve the test suite (a fixed, seeded budget) and ``make fuzz`` (a long
campaign, ``python -m dwconv.campaigns.fuzz``).  hypothesis is imported only when a strategy is
built, so importing this module needs none.  A failing example (the shrunk one) is kept as
a pickled case (and, for depthwise layers, an export folder and an input array) and
reported with a command that replays it.
"""

import argparse
import functools
import os
import pickle
import shlex
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.export import export_layer
from ..golden.fixed import MAX_ACCUM_WIDTH, MAX_WIDTH, OVERFLOW_MODES, ROUNDING_MODES, \
    FormatError, QFormat
from ..golden.fixed_ref import fixed_forward_raw, quantize_weights
from ..golden.formats import LayerFormats
from ..golden.int8_ref import Int8Layer, activation_range, predict_int8
from ..golden.layer import Layer, SeparableLayer, from_channels_last
from ..golden.separable_ref import separable_forward_raw, weights_raw
from ..golden.spec import ACTIVATIONS, DATA_FORMATS, PADDINGS, LayerSpec

__all__ = ["FuzzCase", "SeparableFuzzCase", "Int8FuzzCase", "fuzz_cases", "separable_cases",
           "int8_cases", "mixed_cases", "check_engine", "SIMULATORS", "KINDS", "main"]

#: Where failing examples are written (a pickled case, and more, each).
DEFAULT_FAILURE_DIR = Path("build") / "fuzz-failures"

SIMULATORS = ("amaranth", "verilator", "icarus", "cocotb-verilator", "cocotb-icarus")
KINDS = ("depthwise", "separable", "int8")
#: Default proportions of the kinds drawn (depthwise:separable:int8).
DEFAULT_MIX = "5:3:2"


class FuzzSetupError(RuntimeError):
    """The fuzzer cannot start (hypothesis missing, a bad option): one line for the user."""


@functools.cache
def _strategies():
    """hypothesis' strategies module, imported on first use."""
    try:
        from hypothesis import strategies
    except ImportError:
        raise FuzzSetupError("the fuzzer needs hypothesis, which is not installed; install "
                             "it with pip install hypothesis (it is in dwconv[dev])") from None
    return strategies


def _assume(condition):
    from hypothesis import assume
    assume(condition)


# -- formats ----------------------------------------------------------------------------------

def draw_format(draw, role, *, max_width=MAX_WIDTH):
    """A QFormat of any accepted shape: widths favour small ones but reach the limit."""
    st = _strategies()
    signed = draw(st.booleans())
    lowest = 2 if signed else 1
    width = draw(st.one_of(st.integers(lowest, min(12, max_width)),
                           st.integers(lowest, max_width)), label=f"{role} width")
    int_bits = draw(st.integers(0, width), label=f"{role} integer bits")
    return QFormat(signed, width, int_bits, draw(st.sampled_from(ROUNDING_MODES)),
                   draw(st.sampled_from(OVERFLOW_MODES)), max_width=max_width)


def draw_near_format(draw, role, int_bits, frac, *, max_width):
    """A format whose integer and fraction bits lie a few bits either side of the given
    ones: narrower and wider at both ends, any sign and any modes."""
    st = _strategies()
    signed = draw(st.booleans())
    int_bits = max(int_bits + draw(st.integers(-6, 6), label=f"{role} integer offset"), 0)
    frac = max(frac + draw(st.integers(-8, 8), label=f"{role} fraction offset"), 0)
    width = min(max(int_bits + frac, 2), max_width)
    return QFormat(signed, width, min(int_bits, width), draw(st.sampled_from(ROUNDING_MODES)),
                   draw(st.sampled_from(OVERFLOW_MODES)), max_width=max_width)


def draw_accumulator(draw, exact):
    """None (exact), a given accumulator near the exact one, or one anywhere."""
    kind = draw(_strategies().sampled_from(("exact", "near", "any")))
    if kind == "exact":
        return None
    if kind == "any":
        return draw_format(draw, "accum", max_width=MAX_ACCUM_WIDTH)
    return draw_near_format(draw, "accum", exact.int_bits, exact.frac,
                            max_width=MAX_ACCUM_WIDTH)


def draw_result_format(draw, role, exact, terms, *, max_width=MAX_WIDTH):
    """A format anywhere, or near the range a sum of ``terms`` products really reaches:
    random products add up like a random walk, about log2(sqrt(terms)) + 1 bits below the
    worst case, so results are neither all saturated nor all zero."""
    if draw(_strategies().booleans()):
        return draw_format(draw, role, max_width=max_width)
    typical = exact.int_bits - (terms.bit_length() + 1) // 2 - 1
    return draw_near_format(draw, role, typical, min(exact.frac, 10), max_width=max_width)


def _kernel_values(rng, fmt, shape):
    """Float weights across the format's range and a half beyond, on a half-LSB grid (so
    every rounding tie occurs), some at the extremes."""
    low, high = fmt.raw_min, fmt.raw_max
    span = max(high - low, 1)
    halves = rng.integers(2 * low - span, 2 * high + span + 1, size=shape)
    extremes = rng.choice([2 * low, 2 * high, 2 * low - 1, 2 * high + 1], size=shape)
    halves = np.where(rng.random(shape) < 0.15, extremes, halves)
    return (halves.astype(np.float64) * (fmt.lsb / 2)).astype(np.float32)


def _raw_frames(rng, fmt, shape):
    """Raw input values of ``fmt``, a fifth of them at the extremes or zero."""
    frames = rng.integers(fmt.raw_min, fmt.raw_max + 1, size=shape)
    extremes = rng.choice([fmt.raw_min, fmt.raw_max, 0], size=shape)
    return np.where(rng.random(shape) < 0.2, extremes, frames)


def _geometry(draw, *, max_kernel, max_step, max_side, one_row=False):
    """Kernel, strides, dilation, padding and an input height and width that fit them."""
    st = _strategies()
    kernel = (1 if one_row else draw(st.integers(1, max_kernel)),
              draw(st.integers(1, max_kernel)))
    strides = (1 if one_row else draw(st.integers(1, max_step)), draw(st.integers(1, max_step)))
    dilation = (1 if one_row else draw(st.integers(1, max_step)),
                draw(st.integers(1, max_step)))
    padding = draw(st.sampled_from(PADDINGS))
    reach = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    if padding == "valid":   # at least one output row and column
        height, width = (draw(st.integers(r, max(r, max_side) + 1)) for r in reach)
    else:
        height, width = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    if one_row:
        height = 1
    return kernel, strides, dilation, padding, height, width


def _divisor(draw, n, label):
    return draw(_strategies().sampled_from([p for p in range(1, n + 1) if n % p == 0]),
                label=label)


def _stalls(draw):
    st = _strategies()
    return (draw(st.sampled_from((0.0, 0.2, 0.5)), label="stall"),
            draw(st.integers(0, 1000), label="stall seed"))


# -- running an engine ----------------------------------------------------------------------

def _run(engine, frames_raw, sim, stall, seed, loads=None):
    """A StreamResult of ``engine`` on ``frames_raw`` in simulator ``sim``; an engine
    with a stream-native core (``core()``) runs as that core in Amaranth's simulator."""
    if sim == "amaranth":
        if hasattr(engine, "core"):
            from ..sim.core_sim import run_core
            return run_core(engine, frames_raw, stall=stall, seed=seed, loads=loads)
        from ..sim.amaranth_sim import run_amaranth
        return run_amaranth(engine, frames_raw, stall=stall, seed=seed, loads=loads)
    if sim.startswith("cocotb-"):
        from ..sim.cocotb_sim import run_cocotb
        return run_cocotb(engine, frames_raw, simulator=sim.removeprefix("cocotb-"),
                          stall=stall, seed=seed, loads=loads)
    from ..sim.native_sim import run_native
    return run_native(engine, frames_raw, simulator=sim, stall=stall, seed=seed, loads=loads)


# -- the three kinds ------------------------------------------------------------------------

class _Case:
    """What every kind of example does: run, compare, describe, keep."""

    kind = None

    def replay_command(self, path, sim):
        return shlex.join([sys.executable, "-m", "dwconv.campaigns.fuzz", "--replay", str(path),
                           "--sim", sim])

    def keep(self, folder, sim):
        """Write this example under ``folder``; return the command lines that replay it."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "case.pickle"
        path.write_bytes(pickle.dumps(self))
        return [self.replay_command(path, sim)]


@dataclass
class FuzzCase(_Case):
    """A depthwise example: a layer, its formats, the engine options and two raw frames."""

    layer: Layer
    formats: LayerFormats
    lanes: int
    weights: str
    frames_raw: np.ndarray
    stall: float
    stall_seed: int
    reuse: int = 1

    kind = "depthwise"

    def expected(self):
        return fixed_forward_raw(self.layer, self.formats, self.frames_raw)

    def run(self, sim):
        from ..hw.engine import DepthwiseEngine
        kernel_raw, bias_raw = quantize_weights(self.layer, self.formats)
        engine = DepthwiseEngine(self.layer.spec, self.formats, self.lanes, kernel_raw,
                                 bias_raw, weights=self.weights, reuse=self.reuse)
        loads = {0: (kernel_raw, bias_raw)} if self.weights == "port" else None
        return _run(engine, self.frames_raw, sim, self.stall, self.stall_seed, loads)

    def describe(self):
        s = self.layer.spec
        return (f"depthwise {s.input_shape} k={s.kernel_size} s={s.strides} "
                f"d={s.dilation_rate} {s.padding} M={s.depth_multiplier} bias={s.use_bias} "
                f"{s.activation} {s.data_format} P={self.lanes} R={self.reuse} "
                f"weights={self.weights} formats={self.formats.to_dict()}")

    def keep(self, folder, sim):
        """The pickled case, and a ``dwconv simulate`` of an export folder and input."""
        commands = super().keep(folder, sim)
        folder = Path(folder)
        export_layer(folder / "layer", self.layer, self.formats)
        x = from_channels_last(self.layer.spec, self.formats.input.to_float(self.frames_raw))
        np.save(folder / "x.npy", x)
        argv = ["dwconv", "simulate", str(folder / "layer"), "-i", str(folder / "x.npy"),
                "-o", str(folder / "y.npy")]
        for role, text in self.formats.to_dict().items():
            argv += [f"--{role}-format", text]
        argv += ["--lanes", str(self.lanes), "--reuse", str(self.reuse), "--weights",
                 self.weights, "--sim", sim, "--stall", repr(self.stall),
                 "--seed", str(self.stall_seed)]
        return commands + [shlex.join(argv)]


@dataclass
class SeparableFuzzCase(_Case):
    """A separable block example: the layer, its formats (with mid and pointwise), both
    parts' options and two raw frames."""

    layer: SeparableLayer
    formats: LayerFormats
    lanes: int
    out_lanes: int
    reuse: int
    pointwise_reuse: int
    weights: str
    frames_raw: np.ndarray
    stall: float
    stall_seed: int

    kind = "separable"

    def expected(self):
        return separable_forward_raw(self.layer, self.formats, self.frames_raw)

    def engine(self):
        from ..hw.separable import SeparableEngine
        kernel_raw, bias_raw, pw_raw, pw_bias_raw = weights_raw(self.layer, self.formats)
        return SeparableEngine(
            self.layer.spec, self.formats, self.lanes, kernel_raw, bias_raw, pw_raw,
            pw_bias_raw, activation=self.layer.activation, out_lanes=self.out_lanes,
            reuse=self.reuse, pointwise_reuse=self.pointwise_reuse,
            use_bias=self.layer.use_bias, weights=self.weights)

    def run(self, sim):
        engine = self.engine()
        loads = None
        if self.weights == "port":
            values = engine.load_values(*weights_raw(self.layer, self.formats))
            loads = {0: (values, np.zeros(0, dtype=np.int64))}
        return _run(engine, self.frames_raw, sim, self.stall, self.stall_seed, loads)

    def describe(self):
        s, layer = self.layer.spec, self.layer
        return (f"{layer.kind} {s.input_shape} k={s.kernel_size} s={s.strides} "
                f"d={s.dilation_rate} {s.padding} M={s.depth_multiplier} F={layer.filters} "
                f"dw bias={s.use_bias} dw {s.activation} bias={layer.use_bias} "
                f"{layer.activation} P={self.lanes} Q={self.out_lanes} R={self.reuse} "
                f"Rp={self.pointwise_reuse} weights={self.weights} "
                f"formats={self.formats.to_dict(separable=True)}")


@dataclass
class Int8FuzzCase(_Case):
    """An int8 example: an ``Int8Layer``, lanes, reuse, rounding and two int8 frames."""

    layer: Int8Layer
    lanes: int
    reuse: int
    rounding: str
    frames_raw: np.ndarray
    stall: float
    stall_seed: int

    kind = "int8"

    def expected(self):
        return predict_int8(self.layer, self.frames_raw.astype(np.int8),
                            self.rounding).astype(np.int64)

    def run(self, sim):
        from ..hw.int8 import Int8Engine
        engine = Int8Engine.from_layer(self.layer, self.lanes, self.rounding,
                                       reuse=self.reuse)
        return _run(engine, self.frames_raw, sim, self.stall, self.stall_seed)

    def describe(self):
        s, layer = self.layer.spec, self.layer
        return (f"int8 {s.input_shape} k={s.kernel_size} s={s.strides} d={s.dilation_rate} "
                f"{s.padding} M={s.depth_multiplier} P={self.lanes} R={self.reuse} "
                f"rounding={self.rounding} {layer.to_dict()}")


# -- strategies -----------------------------------------------------------------------------

def _draw_depthwise(draw, max_side):
    st = _strategies()
    kernel, strides, dilation, padding, height, width = _geometry(
        draw, max_kernel=5, max_step=3, max_side=max_side)
    channels = draw(st.integers(1, 8))
    lanes = _divisor(draw, channels, "lanes")
    spec = LayerSpec(input_shape=(height, width, channels), kernel_size=kernel,
                     strides=strides, dilation_rate=dilation, padding=padding,
                     depth_multiplier=draw(st.integers(1, 3)), use_bias=draw(st.booleans()),
                     activation=draw(st.sampled_from(ACTIVATIONS)),
                     data_format=draw(st.sampled_from(DATA_FORMATS)), name="fuzz")

    input_fmt, weight_fmt, bias_fmt = (
        draw_format(draw, role) for role in ("input", "weight", "bias"))
    formats = LayerFormats(input_fmt, weight_fmt, bias_fmt, None, input_fmt)
    try:
        exact = formats.exact_accumulator(spec.taps)
    except FormatError:
        _assume(False)      # a documented refusal: the exact sum would not fit 62 bits
    accum = draw_accumulator(draw, exact)
    formats = LayerFormats(input_fmt, weight_fmt, bias_fmt, accum,
                           draw_result_format(draw, "output", exact, spec.taps))

    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="data seed"))
    kernel_float = _kernel_values(rng, weight_fmt, spec.kernel_shape)
    bias_float = _kernel_values(rng, bias_fmt, (spec.out_channels,)) if spec.use_bias else None
    layer = Layer(spec, kernel_float, bias_float)
    frames = _raw_frames(rng, input_fmt, (2, *spec.input_shape))
    weights = draw(st.sampled_from(("const", "port")))
    reuse = draw(st.integers(1, min(spec.taps, 3)), label="reuse")
    return FuzzCase(layer, formats, lanes, weights, frames, *_stalls(draw), reuse=reuse)


def _draw_separable(draw, max_side):
    st = _strategies()
    one_row = draw(st.booleans(), label="SeparableConv1D")
    kernel, strides, dilation, padding, height, width = _geometry(
        draw, max_kernel=3, max_step=2, max_side=max_side, one_row=one_row)
    channels = draw(st.integers(1, 4))
    lanes = _divisor(draw, channels, "lanes")
    # a joined DepthwiseConv2D + Conv2D pair keeps the depthwise bias and activation
    pair = not one_row and draw(st.booleans(), label="joined pair")
    spec = LayerSpec(input_shape=(height, width, channels), kernel_size=kernel,
                     strides=strides, dilation_rate=dilation, padding=padding,
                     depth_multiplier=draw(st.integers(1, 2)),
                     use_bias=pair and draw(st.booleans(), label="depthwise bias"),
                     activation=draw(st.sampled_from(ACTIVATIONS)) if pair else "linear",
                     kind="DepthwiseConv1D" if one_row else "DepthwiseConv2D", name="fuzz")
    filters = draw(st.integers(1, 6), label="filters")
    out_lanes = _divisor(draw, filters, "out_lanes")
    reuse = draw(st.integers(1, min(spec.taps, 3)), label="reuse")
    pointwise_reuse = draw(st.integers(1, lanes * spec.depth_multiplier),
                           label="pointwise reuse")

    # 16 bits at most: two accumulators in a row stay within the engine's limits
    input_fmt, weight_fmt, bias_fmt, pointwise_fmt = (
        draw_format(draw, role, max_width=16)
        for role in ("input", "weight", "bias", "pointwise"))
    formats = LayerFormats(input_fmt, weight_fmt, bias_fmt, None, input_fmt)
    try:
        exact = formats.exact_accumulator(spec.taps)
    except FormatError:
        _assume(False)
    mid = draw_result_format(draw, "mid", exact, spec.taps, max_width=16)
    formats = LayerFormats(input_fmt, weight_fmt, bias_fmt, None, input_fmt,
                           pointwise=pointwise_fmt, mid=mid)
    try:
        exact_pw = formats.exact_pointwise_accumulator(spec.out_channels)
    except FormatError:
        _assume(False)
    formats = LayerFormats(input_fmt, weight_fmt, bias_fmt, draw_accumulator(draw, exact_pw),
                           draw_result_format(draw, "output", exact_pw, spec.out_channels),
                           pointwise=pointwise_fmt, mid=mid)

    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="data seed"))
    use_bias = draw(st.booleans(), label="pointwise bias")
    depthwise = Layer(spec, _kernel_values(rng, weight_fmt, spec.kernel_shape),
                      _kernel_values(rng, bias_fmt, (spec.out_channels,))
                      if spec.use_bias else None)
    layer = SeparableLayer(
        depthwise, _kernel_values(rng, pointwise_fmt, (spec.out_channels, filters)),
        _kernel_values(rng, bias_fmt, (filters,)) if use_bias else None, use_bias=use_bias,
        activation=draw(st.sampled_from(ACTIVATIONS)),
        kind="SeparableConv1D" if one_row else
        "DepthwiseConv2D+Conv2D" if pair else "SeparableConv2D")
    frames = _raw_frames(rng, input_fmt, (2, *spec.input_shape))
    weights = draw(st.sampled_from(("const", "port")))
    return SeparableFuzzCase(layer, formats, lanes, out_lanes, reuse, pointwise_reuse,
                             weights, frames, *_stalls(draw))


def _draw_int8(draw, max_side):
    st = _strategies()
    kernel, strides, dilation, padding, height, width = _geometry(
        draw, max_kernel=3, max_step=2, max_side=max_side)
    channels = draw(st.integers(1, 4))
    lanes = _divisor(draw, channels, "lanes")
    spec = LayerSpec(input_shape=(height, width, channels), kernel_size=kernel,
                     strides=strides, dilation_rate=dilation, padding=padding,
                     depth_multiplier=draw(st.integers(1, 2)), activation="linear",
                     name="fuzz")
    outputs = spec.out_channels
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="data seed"))
    kernel_values = rng.integers(-128, 128, size=spec.kernel_shape).astype(np.int8)
    # none, biases as converters give them (a few times the sums), anywhere in int32, or
    # at its ends (the sum wraps in 32 bits, as in LiteRT's C++)
    bias_kind = draw(st.sampled_from(("none", "small", "wide", "limits")), label="bias")
    if bias_kind == "limits":          # within 2**16 of either end
        offset = rng.integers(0, 1 << 16, size=outputs)
        bias = np.where(rng.random(outputs) < 0.5, -(1 << 31) + offset, (1 << 31) - 1 - offset)
    else:
        bias_range = {"none": 1, "small": 1 << 12, "wide": 1 << 31}[bias_kind]
        bias = rng.integers(-bias_range, bias_range, size=outputs) * (bias_kind != "none")
    bias = bias.astype(np.int32)
    # scales as powers of two apart: real multipliers from about 2**-24 to 2**6
    input_scale = float(2.0 ** rng.uniform(-10, 0))
    output_scale = float(2.0 ** rng.uniform(-8, 2))
    per_channel = draw(st.booleans(), label="per channel")
    scales = 2.0 ** rng.uniform(-12, -2, size=outputs if per_channel else 1)
    scales = np.broadcast_to(scales, (outputs,)).astype(np.float32)
    input_zp, output_zp = (draw(st.integers(-128, 127), label=f"{what} zero point")
                           for what in ("input", "output"))
    activation = draw(st.sampled_from(("NONE", "RELU", "RELU6", "RELU_N1_TO_1")))
    act_min, act_max = activation_range(activation, output_scale, output_zp)
    layer = Int8Layer(spec, kernel_values, bias, scales, input_scale, input_zp, output_scale,
                      output_zp, act_min, act_max, activation, per_channel)
    frames = rng.integers(-128, 128, size=(2, *spec.input_shape))
    extremes = rng.choice([-128, 127, input_zp], size=frames.shape)
    frames = np.where(rng.random(frames.shape) < 0.2, extremes, frames)
    return Int8FuzzCase(layer, lanes, draw(st.integers(1, min(spec.taps, 3)), label="reuse"),
                        draw(st.sampled_from(("fp32", "double", "single"))), frames,
                        *_stalls(draw))


def fuzz_cases(*, max_side=7):
    """A strategy of depthwise examples (``FuzzCase``)."""
    return _strategies().composite(_draw_depthwise)(max_side)


def separable_cases(*, max_side=6):
    """A strategy of separable block examples (``SeparableFuzzCase``)."""
    return _strategies().composite(_draw_separable)(max_side)


def int8_cases(*, max_side=6):
    """A strategy of int8 examples (``Int8FuzzCase``)."""
    return _strategies().composite(_draw_int8)(max_side)


_STRATEGIES = {"depthwise": fuzz_cases, "separable": separable_cases, "int8": int8_cases}


def mixed_cases(mix=None, *, max_side=6):
    """Examples of every kind in the proportions ``mix`` ({kind: weight}, default
    ``DEFAULT_MIX``)."""
    st = _strategies()
    mix = parse_mix(DEFAULT_MIX) if mix is None else mix
    kinds = [kind for kind in KINDS for _ in range(mix.get(kind, 0))]
    return st.sampled_from(kinds).flatmap(lambda kind: _STRATEGIES[kind](max_side=max_side))


def parse_mix(text):
    """"5:3:2" (depthwise:separable:int8 weights, whole numbers) as {kind: weight}."""
    parts = text.split(":")
    if len(parts) != len(KINDS) or not all(p.isdigit() for p in parts) or \
            not any(int(p) for p in parts):
        raise FuzzSetupError(f"--mix takes three whole numbers depthwise:separable:int8, not "
                             f"all zero (e.g. {DEFAULT_MIX}), not {text!r}")
    return dict(zip(KINDS, map(int, parts)))


# -- checking -------------------------------------------------------------------------------

def check_engine(case, *, sim="amaranth", failure_dir=None):
    """Run ``case`` (any kind) through its engine in ``sim``; AssertionError on any
    difference from the golden model, a framing problem or a raised error flag.  With a
    ``failure_dir``, the failing example is kept there and the message says how to replay
    it."""
    expected = case.expected()
    result = case.run(sim)
    outputs = result.outputs
    mismatches = int(np.count_nonzero(outputs != expected)) if \
        np.shape(outputs) == expected.shape else expected.size
    if mismatches or result.framing or result.error:
        text = (f"{sim}: {mismatches} of {expected.size} values differ from the golden "
                f"model, {len(result.framing)} framing problem(s), error flag "
                f"{bool(result.error)}; {case.describe()}")
        if failure_dir is not None:
            text += "\n" + keep_failure(case, failure_dir, sim)
        raise AssertionError(text)


def keep_failure(case, failure_dir, sim):
    """Write ``case`` under a new folder of ``failure_dir``; the replay lines."""
    folder = Path(failure_dir) / f"{case.kind}-{os.getpid()}-{time.monotonic_ns()}"
    return "\n".join(f"replay: {command}" for command in case.keep(folder, sim))


def _cpu_seconds():
    """CPU time of this process and of the simulators it ran (children waited for)."""
    return sum(os.times()[:4])


def _campaign(examples, seed_value, sim, failure_dir, mix):
    """Run one seeded hypothesis campaign of ``examples`` mixed examples.  Returns
    (examples run per kind, CPU seconds per kind, failure text or None); the shrunk
    failing example is kept under ``failure_dir``."""
    from hypothesis import HealthCheck, given, seed, settings

    ran, seconds, failing = Counter(), Counter(), []

    @seed(seed_value)
    @settings(max_examples=examples, deadline=None, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(mixed_cases(mix))
    def run(case):
        started = _cpu_seconds()
        ran[case.kind] += 1
        try:
            check_engine(case, sim=sim)
        except Exception:    # a mismatch, or the engine refusing a valid case
            failing[:] = [case]
            raise
        finally:
            seconds[case.kind] += _cpu_seconds() - started

    try:
        run()
    except Exception as failure:
        # hypothesis ends by replaying the shrunk example: the last one that failed
        text = f"{type(failure).__name__}: {failure}"
        if failing:
            text += "\n" + keep_failure(failing[0], failure_dir, sim)
        return dict(ran), dict(seconds), text
    return dict(ran), dict(seconds), None


#: Examples per seeded chunk (one progress step each).
CHUNK = 10


def _chunk(chunk_seed, examples, deadline, sim, failure_dir, mix):
    """One chunk, unless the time is up: (ran, seconds, failure text or None)."""
    if time.monotonic() >= deadline:
        return {}, {}, None
    return _campaign(examples, chunk_seed, sim, failure_dir, mix)


def replay(path, sim):
    """Run a kept example again; 0 if it passes now, 1 with the difference if not."""
    case = pickle.loads(Path(path).read_bytes())
    try:
        check_engine(case, sim=sim)
    except AssertionError as failure:
        print(f"fuzz: {failure}")
        return 1
    print(f"fuzz: {case.describe()}: equal to the golden model in {sim}")
    return 0


def _arguments(argv):
    parser = argparse.ArgumentParser(
        prog="python -m dwconv.campaigns.fuzz",
        description="Differential fuzzing of the engines (depthwise, separable, int8) "
                    "against their golden models.")
    parser.add_argument("--examples", type=int, default=5000, help="examples in all")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop starting new chunks after this long (default: no limit)")
    parser.add_argument("--seed", type=int, default=None, help="campaign seed (default: "
                        "random, printed)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="parallel worker processes")
    parser.add_argument("--sim", default="amaranth", choices=SIMULATORS,
                        help="the simulator (default amaranth)")
    parser.add_argument("--mix", default=DEFAULT_MIX,
                        help=f"proportions depthwise:separable:int8 (default {DEFAULT_MIX})")
    parser.add_argument("--failures", default=str(DEFAULT_FAILURE_DIR),
                        help="where failing examples are written")
    parser.add_argument("--replay", metavar="CASE", default=None,
                        help="run one kept example (a case.pickle) again")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress output (a bar on a terminal, else a line per chunk)")
    return parser.parse_args(argv)


def main(argv=None):
    args = _arguments(argv)
    try:
        if args.examples < 1 or args.workers < 1:
            raise FuzzSetupError("--examples and --workers must be at least 1")
        mix = parse_mix(args.mix)
        if args.sim != "amaranth":
            from ..flows.tools import MissingToolError, require_tools
            try:
                require_tools(args.sim)
            except MissingToolError as missing:
                raise FuzzSetupError(str(missing)) from None
        _strategies()
        if args.replay is not None:
            if not Path(args.replay).is_file():
                raise FuzzSetupError(f"--replay needs a kept case.pickle; {args.replay} is "
                                     f"not a file")
            return replay(args.replay, args.sim)
    except FuzzSetupError as problem:
        print(f"fuzz: error: {problem}", file=sys.stderr)
        return 2
    return _fuzz(args, mix)


def _fuzz(args, mix):
    from ..progress import Progress

    base = args.seed if args.seed is not None else int.from_bytes(os.urandom(3), "little")
    sizes = [CHUNK] * (args.examples // CHUNK) + [args.examples % CHUNK] * bool(
        args.examples % CHUNK)
    workers = min(args.workers, len(sizes))
    limit = f", at most {args.minutes:g} min" if args.minutes else ""
    if not args.quiet:
        print(f"fuzz: {args.examples} examples ({args.mix} depthwise:separable:int8){limit}, "
              f"{workers} worker(s), simulator {args.sim}, seed {base} (chunk k of "
              f"{CHUNK} examples: seed {base} + k)", flush=True)
    start = time.monotonic()
    deadline = start + 60 * args.minutes if args.minutes else float("inf")
    ran, seconds, failures = Counter(), Counter(), []
    with Progress(len(sizes), "fuzz", mode="off" if args.quiet else "auto") as bar, \
            ProcessPoolExecutor(workers) as pool:
        chunks = {pool.submit(_chunk, base + k, size, deadline, args.sim, args.failures,
                              mix): base + k for k, size in enumerate(sizes)}
        for done in as_completed(chunks):
            chunk_ran, chunk_seconds, failure = done.result()
            ran.update(chunk_ran)
            seconds.update(chunk_seconds)
            if failure:
                failures.append((chunks[done], failure))
                bar.note(f"fuzz: chunk seed {chunks[done]} failed (details at the end)")
            bar.step(f"{sum(ran.values())} examples, {len(failures)} failing chunk(s)")
    elapsed = time.monotonic() - start
    total = sum(ran.values())
    per_kind = ", ".join(f"{kind} {ran[kind]} ({ran[kind] / max(seconds[kind], 1e-9):.2f}/s)"
                         for kind in KINDS if ran[kind])
    shrinking = " (shrinking runs included)" if failures else ""
    print(f"fuzz: {total} examples{shrinking} in {elapsed:.0f} s "
          f"({total / max(elapsed, 1e-9):.2f}/s on {workers} worker(s)); per kind, examples "
          f"(per CPU-second): {per_kind}; {len(failures)} failing chunk(s)")
    for chunk_seed, text in sorted(failures):
        print(f"\nfailure (chunk seed {chunk_seed}, shrunk):\n{text}")
    return 1 if failures else 0


if __name__ == "__main__":
    # run as the importable module, so kept cases name its classes, not __main__'s
    from dwconv.campaigns import fuzz
    sys.exit(fuzz.main())
