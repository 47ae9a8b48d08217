"""What differs between the layer kinds a ``Design`` takes.

``kind_of(layer)`` gives one of three kinds:

``DEPTHWISE``
    A golden ``Layer`` (DepthwiseConv2D/1D, a depthwise grouped convolution): fixed-point
    formats, ``golden.fixed_ref``, ``hw.engine.DepthwiseEngine``.
``SEPARABLE``
    A ``golden.layer.SeparableLayer`` (SeparableConv2D/1D, or a DepthwiseConv2D joined with
    a 1x1 Conv2D): the depthwise formats plus ``pointwise`` and ``mid``,
    ``golden.separable_ref``, ``hw.separable.SeparableEngine``.
``INT8``
    A ``golden.int8_ref.Int8Layer`` from a ``.tflite`` model: its formats are fixed by the
    model (int8 in and out), the golden model is LiteRT's integer kernel in one of three
    roundings (``fp32``, ``double``, ``single``), the engine ``hw.int8.Int8Engine``.

Each kind answers the same questions of a Design ``d`` (its ``layer``, ``formats``, knobs):
formats and rounding, raw golden model, input quantization and output conversion, float
reference, overflow counts, engine, figures and the extra report fields.  Raw arrays are
int64 and channels_last: input (N, H, W, C), output (N, oh, ow, out channels).
"""

import numpy as np

from .errors import DesignError
from .golden.fixed import FormatError, QFormat
from .golden.formats import DEFAULT_FORMATS, LayerFormats
from .golden.layer import Layer, SeparableLayer
from .golden.spec import LayerError

__all__ = ["Kind", "DEPTHWISE", "SEPARABLE", "INT8", "kind_of", "resolve_formats"]


def _format_text(role, value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, QFormat):
        return str(value)
    raise FormatError(f"format {role!r} must be a format string like 'fixed<8,3,RND,SAT>' or "
                      f"a QFormat, not {value!r}")


def _parses(role, text):
    try:
        LayerFormats.from_strings(**{role: text})
        return True
    except FormatError:
        return False


def resolve_formats(layer, formats, roles=tuple(DEFAULT_FORMATS)):
    """LayerFormats from a LayerFormats, or a dict/None over the layer's stored formats and
    the defaults; only ``roles`` may be given."""
    if isinstance(formats, LayerFormats):
        return formats
    if formats is not None and not isinstance(formats, dict):
        raise FormatError(f"formats must be a LayerFormats or a dict of role -> format "
                          f"string, not {type(formats).__name__}")
    chosen = dict(getattr(layer, "formats", None) or {})
    for role, value in (formats or {}).items():
        if role not in roles:
            raise FormatError(f"unknown format role {role!r}; use {', '.join(roles)}")
        chosen[role] = _format_text(role, value)
    try:
        return LayerFormats.from_strings(**chosen)
    except FormatError as error:
        bad = next((role for role, text in chosen.items() if not _parses(role, text)), None)
        prefix = f"format {bad!r}: " if bad else ""
        raise FormatError(f"{prefix}{error}") from None


def _warning(counts, formats, roles):
    """One overflow warning line for ``counts`` over ``roles`` (``golden.overflow``'s
    wording), or None."""
    from .golden.overflow import _EFFECT, full_name
    found = [role for role in roles if counts.get(role) and getattr(formats, role) is not None]
    if not found:
        return None
    parts = [f"{counts[role]} {role} value(s) overflow {full_name(getattr(formats, role))} "
             f"and {_EFFECT[getattr(formats, role).overflow]}" for role in found]
    options = " / ".join(f"--{role}-format" for role in found)
    return (f"{'; '.join(parts)}; give a wider {options} (dwconv profile chooses formats from "
            f"data) to keep them")


class Kind:
    """The depthwise kind; the other kinds override what differs.

    Members
    -------
    name : str
        The kind's name in reports ("depthwise", "separable", "int8").
    roles : tuple of str
        Format roles a Design of this kind takes (a depthwise layer takes the separable
        roles too and does not use them: one configuration's defaults serve every layer).
    """

    name = "depthwise"
    roles = tuple(DEFAULT_FORMATS)

    def accepts(self, layer):
        """Whether ``layer`` is of this kind."""
        return isinstance(layer, Layer)

    def layer_kind(self, layer):
        """The layer's class as a user knows it (DepthwiseConv2D, SeparableConv1D, ...)."""
        return layer.spec.kind

    # -- knobs -----------------------------------------------------------------------------

    def formats(self, layer, formats):
        """The resolved LayerFormats of a Design's ``formats`` argument (checked)."""
        resolved = resolve_formats(layer, formats, self.roles)
        resolved.exact_accumulator(layer.spec.taps)     # raises when it cannot be built
        return resolved

    def rounding(self, layer, rounding):
        """The resolved ``rounding`` argument (None: the layer has none)."""
        if rounding is not None:
            raise DesignError(f"rounding is for int8 TFLite layers only; layer "
                              f"{layer.spec.name!r} is a {self.layer_kind(layer)}: leave it "
                              f"None", "rounding")
        return None

    def check_weights_mode(self, d):
        """Raises when the layer cannot take ``d.weights`` (every fixed-point kind can)."""

    # -- golden models ---------------------------------------------------------------------

    def weights_raw(self, d):
        """The quantized weights the engine is built from: (kernel, bias, ...)."""
        from .golden.fixed_ref import quantize_weights
        return quantize_weights(d.layer, d.formats)

    def quantize(self, d, x_nhwc):
        """Raw input (int64) for input frames (N, H, W, C)."""
        return d.formats.input.quantize(np.asarray(x_nhwc, dtype=np.float64))

    def forward_raw(self, d, x_raw):
        """The golden model: raw output for raw input."""
        from .golden.fixed_ref import fixed_forward_raw
        return fixed_forward_raw(d.layer, d.formats, x_raw)

    def values(self, d, raw, x):
        """The output array users see for raw output ``raw`` of input ``x``: float64 exact
        dequantized values."""
        return d.formats.output.to_float(raw)

    def float_nhwc(self, d, x_nhwc):
        """The float reference (what Keras computes) for float frames, or None."""
        from .golden.float_ref import float_forward_nhwc
        return float_forward_nhwc(d.layer, np.asarray(x_nhwc, dtype=np.float64))

    def overflows(self, d, x_nhwc):
        """Values of a run on ``x_nhwc`` that overflow each format, by role."""
        from .golden.overflow import count_overflows
        return count_overflows(d.layer, d.formats, np.asarray(x_nhwc, dtype=np.float64))

    def overflow_warning(self, d, counts):
        """The one warning line for ``overflows``' counts, or None."""
        return _warning(counts, d.formats, ("input", "accum", "output"))

    # -- hardware --------------------------------------------------------------------------

    def engine(self, d, target):
        """The AXI4-Stream top for ``target`` (None: portable multipliers)."""
        from .hw.engine import DepthwiseEngine
        kernel_raw, bias_raw = self.weights_raw(d)
        return DepthwiseEngine(d.layer.spec, d.formats, d.lanes, kernel_raw, bias_raw,
                               weights=d.weights, reuse=d.reuse, target=target)

    def figures(self, d):
        """latency, multipliers, real_multipliers, line_buffer_words, out_lanes: from the
        engine's plan, no hardware built."""
        plan = d.plan()
        return {name: getattr(plan, name) for name in
                ("latency", "multipliers", "real_multipliers", "line_buffer_words",
                 "out_lanes")}

    def out_groups(self, d):
        """Output beats per output pixel."""
        return d.layer.spec.channels // d.lanes

    def report(self, d):
        """Fields of a simulation report (and ``figures()``) particular to the kind."""
        return {"kind": self.name, "layer_kind": self.layer_kind(d.layer)}

    def weight_load(self, d):
        """(values, width) of one weight-port load, in port order (or None)."""
        from .sim.beats import weight_load_values
        spec, formats = d.layer.spec, d.formats
        width = max(formats.weight.width, formats.bias.width if spec.use_bias else 0)
        kernel_raw, bias_raw = self.weights_raw(d)
        return weight_load_values(spec, kernel_raw, bias_raw, width), width


class _Separable(Kind):
    name = "separable"

    def accepts(self, layer):
        return isinstance(layer, SeparableLayer)

    def layer_kind(self, layer):
        return layer.kind

    def formats(self, layer, formats):
        resolved = resolve_formats(layer, formats, self.roles)
        resolved.exact_accumulator(layer.spec.taps)
        resolved.exact_pointwise_accumulator(layer.spec.out_channels)
        return resolved

    def weights_raw(self, d):
        from .golden.separable_ref import weights_raw
        return weights_raw(d.layer, d.formats)

    def forward_raw(self, d, x_raw):
        from .golden.separable_ref import separable_forward_raw
        return separable_forward_raw(d.layer, d.formats, x_raw)

    def float_nhwc(self, d, x_nhwc):
        from .golden.separable_ref import separable_float_nhwc
        return separable_float_nhwc(d.layer, np.asarray(x_nhwc, dtype=np.float64))

    def overflows(self, d, x_nhwc):
        """input, mid (the depthwise result into the mid format), accum (the pointwise sum,
        when an accumulator format is given), output."""
        import dataclasses

        from .golden.fixed_ref import accumulate_raw
        from .golden.overflow import overflow_count
        from .golden.separable_ref import depthwise_mid_raw, quantize_pointwise

        layer, formats = d.layer, d.formats
        x = np.asarray(x_nhwc, dtype=np.float64)
        x_raw = formats.input.quantize(x)
        acc, frac = accumulate_raw(layer.depthwise, dataclasses.replace(formats, accum=None),
                                   x_raw)
        counts = {"input": int(np.count_nonzero(formats.input.overflows(x))),
                  "mid": overflow_count(formats.mid, acc, frac)}
        # the pointwise sum, exact, as golden.separable_ref.pointwise_raw makes it
        pw_raw, bias_raw = quantize_pointwise(layer, formats)
        frac = formats.exact_pointwise_accumulator(layer.spec.out_channels).frac
        total = (np.matmul(depthwise_mid_raw(layer, formats, x_raw), pw_raw)
                 << np.int64(frac - formats.mid.frac - formats.pointwise.frac)) \
            + (bias_raw << np.int64(frac - formats.bias.frac))
        counts["accum"] = 0 if formats.accum is None else \
            overflow_count(formats.accum, total, frac)
        if formats.accum is not None:
            total, frac = formats.accum.convert(total, frac), formats.accum.frac
        if layer.activation == "relu":
            total = np.maximum(total, 0)
        elif layer.activation == "relu6":
            total = np.clip(total, 0, np.int64(6) << np.int64(frac))
        counts["output"] = overflow_count(formats.output, total, frac)
        return counts

    def overflow_warning(self, d, counts):
        return _warning(counts, d.formats, ("input", "mid", "accum", "output"))

    def _options(self, d):
        return {"reuse": d.reuse, "pointwise_reuse": d.pointwise_reuse,
                "out_lanes": d.pointwise_lanes}

    def engine(self, d, target):
        from .hw.separable import SeparableEngine
        layer = d.layer
        kernel_raw, dw_bias_raw, pw_raw, bias_raw = self.weights_raw(d)
        return SeparableEngine(layer.spec, d.formats, d.lanes, kernel_raw, dw_bias_raw,
                               pw_raw, bias_raw, activation=layer.activation,
                               use_bias=layer.use_bias, weights=d.weights, target=target,
                               **self._options(d))

    def figures(self, d):
        engine = self.engine(d, d.target)     # its figures need no elaboration
        return {"latency": engine.latency, "multipliers": engine.multipliers,
                "real_multipliers": engine.real_multipliers,
                "line_buffer_words": engine.line_buffer_words, "out_lanes": engine.out_lanes,
                "pointwise_lanes": engine.out_lanes,
                "pointwise_reuse": engine.pointwise_reuse,
                "cycles_per_input_beat": engine.cycles_per_input_beat}

    def out_groups(self, d):
        return d.layer.filters // d.out_lanes

    def report(self, d):
        return {**super().report(d), "filters": d.layer.filters}

    def weight_load(self, d):
        engine = self.engine(d, None)
        values = engine.load_values(*self.weights_raw(d))
        width = engine.load_width
        return [int(v) & ((1 << width) - 1) for v in values], width


#: The port formats of an int8 engine: int8 lanes in and out, int8 weights, int32 bias.
INT8_FORMATS = LayerFormats.from_strings(input="fixed<8,8>", weight="fixed<8,8>",
                                         bias="fixed<32,32>", output="fixed<8,8>")


class _Int8(Kind):
    """Int8 arrays in give int8 arrays out (the interpreter's tensors); float arrays are
    quantized as TFLite's QUANTIZE does and the output dequantized (float64).  There is no
    float model of a .tflite layer: ``float_nhwc`` is None, and ``predict(x, float=True)``
    is an error."""

    name = "int8"
    roles = ()

    def accepts(self, layer):
        from .golden.int8_ref import Int8Layer
        return isinstance(layer, Int8Layer)

    def layer_kind(self, layer):
        return "int8 DEPTHWISE_CONV_2D"

    def formats(self, layer, formats):
        if formats is not None and formats != {} and formats != INT8_FORMATS:
            raise FormatError(f"layer {layer.spec.name!r} is an int8 TFLite layer and takes no "
                              f"formats: its model's quantization fixes them (int8 in and out, "
                              f"per-channel requantization); leave formats None (on the "
                              f"command line: drop the --*-format options)")
        return INT8_FORMATS

    def rounding(self, layer, rounding):
        from .golden.int8_ref import DEFAULT_ROUNDING, ROUNDINGS
        if rounding is None:
            return DEFAULT_ROUNDING
        if rounding not in ROUNDINGS:
            raise DesignError(f"rounding must be one of {', '.join(ROUNDINGS)} (fp32: LiteRT's "
                              f"default interpreter, double: its reference kernels), not "
                              f"{rounding!r}", "rounding")
        return rounding

    def check_weights_mode(self, d):
        if d.weights != "const" and not hasattr(self._engine_class(), "load_values"):
            raise DesignError(f"weights={d.weights!r}: this int8 engine builds its weights in "
                              f"as constants only; use weights='const'", "weights")

    @staticmethod
    def _engine_class():
        from .hw.int8 import Int8Engine
        return Int8Engine

    def weights_raw(self, d):
        return d.layer.kernel.astype(np.int64), d.layer.bias.astype(np.int64)

    def quantize(self, d, x_nhwc):
        from .golden.int8_ref import quantize_input
        x = np.asarray(x_nhwc)
        if np.issubdtype(x.dtype, np.integer):
            if x.size and (x.min() < -128 or x.max() > 127):
                raise LayerError(f"int8 input of layer {d.layer.name!r} holds values outside "
                                 f"[-128, 127]; give int8 values or a float array")
            return x.astype(np.int64)
        return quantize_input(d.layer, x, d.rounding).astype(np.int64)

    def forward_raw(self, d, x_raw):
        import dataclasses

        from .golden.int8_ref import predict_int8
        # x_raw is channels_last whatever the layer's data_format
        layer = d.layer
        if layer.spec.data_format != "channels_last":
            layer = dataclasses.replace(layer, spec=dataclasses.replace(
                layer.spec, data_format="channels_last"))
        return predict_int8(layer, np.asarray(x_raw).astype(np.int8),
                            d.rounding).astype(np.int64)

    def values(self, d, raw, x):
        from .golden.int8_ref import dequantize_output
        if np.issubdtype(np.asarray(x).dtype, np.integer):
            return np.asarray(raw).astype(np.int8)
        return dequantize_output(d.layer, raw)

    def float_nhwc(self, d, x_nhwc):
        return None

    def overflows(self, d, x_nhwc):
        """None: the int8 datapath saturates by design (int32 sums, the output clamp)."""
        return {"input": 0, "accum": 0, "output": 0}

    def overflow_warning(self, d, counts):
        return None

    def engine(self, d, target):
        options = {"weights": d.weights} if d.weights != "const" else {}
        engine = self._engine_class().from_layer(d.layer, d.lanes, d.rounding, reuse=d.reuse,
                                                 target=target, **options)
        return _with_figures(engine, target, lambda other: self.engine(d, other))

    def figures(self, d):
        engine = self.engine(d, d.target)
        return {name: getattr(engine, name) for name in
                ("latency", "multipliers", "real_multipliers", "line_buffer_words",
                 "out_lanes")}

    def report(self, d):
        layer = d.layer
        return {**super().report(d), "rounding": d.rounding,
                "quantization": {"input_scale": layer.input_scale,
                                 "input_zero_point": layer.input_zero_point,
                                 "output_scale": layer.output_scale,
                                 "output_zero_point": layer.output_zero_point,
                                 "act_min": layer.act_min, "act_max": layer.act_max}}

    def weight_load(self, d):
        """None while the int8 engine has no weight port (``load_values``)."""
        engine = self.engine(d, None)
        if not hasattr(engine, "load_values"):
            return None
        values = engine.load_values(d.layer)
        width = engine.load_width
        return [int(v) & ((1 << width) - 1) for v in values], width


#: The figures ``flows.synth`` and the reports read of an engine.
_ENGINE_FIGURES = ("multipliers", "real_multipliers", "line_buffer_words", "store")


def _with_figures(engine, target, rebuild):
    """``engine`` (an Int8Engine) with what ``flows.synth`` and the reports read of every
    engine, where it does not have it itself: its inner depthwise engine's figures, its
    target, ``retargeted`` (``rebuild(target)``).  Its parts, built with it, are no
    forgotten hardware when it is made for its figures alone (Amaranth warns about unused
    components at garbage collection)."""
    from amaranth.hdl import Elaboratable

    inner = getattr(engine, "engine", None)
    for name in _ENGINE_FIGURES:
        if not hasattr(engine, name) and hasattr(inner, name):
            setattr(engine, name, getattr(inner, name))
    if not hasattr(engine, "target"):
        engine.target = target
    if not hasattr(engine, "retargeted"):
        engine.retargeted = rebuild
    for part in vars(engine).values():
        if isinstance(part, Elaboratable):
            part._MustUse__silence = True
    return engine


DEPTHWISE, SEPARABLE, INT8 = Kind(), _Separable(), _Int8()


def kind_of(layer):
    """The kind of ``layer``; a DesignError for anything else."""
    for kind in (SEPARABLE, INT8, DEPTHWISE):
        if kind.accepts(layer):
            return kind
    raise DesignError(f"layer must be a layer from dwconv.load (a depthwise Layer, a "
                      f"SeparableLayer or an int8 TFLite layer), not {type(layer).__name__}")
