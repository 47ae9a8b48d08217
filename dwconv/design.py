"""``Design``: one layer as hardware, described in plain Python.

A Design is a frozen dataclass of the layer and its generation knobs.  The layer is a
depthwise ``Layer``, a ``SeparableLayer`` or an int8 TFLite layer; what differs between the
kinds is in ``dwconv.kinds``, the Design is the same for all of them.  Its figures
(latency, multipliers, line-buffer words, ideal cycles) come without elaborating hardware,
and each thing a user does with it is a method: ``predict`` (golden models), ``simulate``,
``verilog``, ``vectors``, ``synth``, ``core`` (the Amaranth component).  Arrays in and out
are in the layer's data_format on every path.  ``dataclasses.replace(design, lanes=4)``
varies one knob.
"""

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from .config import TARGETS, WEIGHT_MODES, read_config
from .errors import DesignError
from .golden.fixed import FormatError
from .golden.layer import from_channels_last, to_channels_last
from .golden.spec import LayerError
from .kinds import kind_of

__all__ = ["Design", "SimulationResult"]


@dataclass(frozen=True)
class SimulationResult:
    """What ``Design.simulate`` returns.

    Members
    -------
    outputs : float64 array
        The engine's output, exact dequantized values, in the layer's data_format (no batch
        axis when the input had none); an int8 layer's integer input gives int8 values.
    raw : int64 array
        The same as raw integers of the output format, same layout.
    expected : array
        The fixed golden model's output, same layout and type as ``outputs``.
    mismatches : int
        Values where the engine differs from the fixed golden model.
    cycles : int
        First input beat accepted to the later of the last input beat accepted and the last
        output beat taken.
    report : dict
        What ``dwconv simulate --report`` writes (SPEC section 5).
    """

    outputs: np.ndarray
    raw: np.ndarray
    expected: np.ndarray
    mismatches: int
    cycles: int
    report: dict

    @property
    def passed(self):
        """No mismatch, no framing problem and no error flag."""
        r = self.report
        return not (r["mismatches"] or r["framing_errors"] or r["error_flag"])


def _builds(cls, layer, formats):
    try:
        cls(layer, formats)
        return True
    except (DesignError, FormatError, LayerError):
        return False


def _whole(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Design:
    """A layer with its formats and hardware knobs.

    Parameters
    ----------
    layer : Layer, SeparableLayer or Int8Layer
        From ``dwconv.load`` (a .keras/.h5 model, an export folder, a .tflite model), or a
        golden layer made by hand.
    formats : LayerFormats, dict or None
        A dict maps roles (``input``, ``weight``, ``bias``, ``accum``, ``output``; for a
        separable block also ``pointwise`` and ``mid``: the keys of
        ``golden.formats.DEFAULT_FORMATS``) to format strings (``"exact"`` or None for the
        exact accumulator); it is merged over the formats stored with the layer and the
        defaults.  After construction the field holds the resolved ``LayerFormats``.  An
        int8 layer's formats are fixed by its model (int8 in and out): give None.
    lanes : int
        P, channels per stream beat; divides C.
    reuse : int
        R, 1 to kh*kw: one input beat every R cycles on ceil(kh*kw/R) multipliers per lane
        (a separable block's depthwise part).
    weights : "const" or "port"
        Weights built in as constants, or loaded at run time through the weight port.
    target : None, "ecp5" or "ice40"
        FPGA family whose DSP blocks the multipliers use; None: portable Verilog.
    rounding : None, "fp32", "double" or "single"
        Int8 layers only (None there means "fp32"): the requantization of LiteRT's default
        interpreter (fp32), of its reference kernels (double), or the single-rounding form.
    pointwise_lanes, pointwise_reuse : int or None
        Separable blocks only: Q, filters per output beat (divides F), and Rp, the pointwise
        stage's folding (1 to P*M); None takes ``hw.separable.SeparableEngine``'s defaults
        (the fewest lanes that keep the input rate, Rp = min(R, P*M)).

    Members
    -------
    kind, layer_kind, spec, name, kernel_raw, bias_raw, accumulator
    latency, multipliers, real_multipliers, line_buffer_words, line_buffer_min_words,
    out_lanes, ideal_cycles(frames)
        Figures, computed without building hardware.
    """

    layer: object
    formats: object = None
    lanes: int = 1
    reuse: int = 1
    weights: str = "const"
    target: str | None = None
    rounding: str | None = None
    pointwise_lanes: int | None = None
    pointwise_reuse: int | None = None

    def __post_init__(self):
        layer = self.layer
        kind = kind_of(layer)
        spec = layer.spec
        object.__setattr__(self, "formats", kind.formats(layer, self.formats))
        object.__setattr__(self, "rounding", kind.rounding(layer, self.rounding))
        channels = spec.channels
        if not _whole(self.lanes) or self.lanes < 1 or channels % self.lanes:
            valid = ", ".join(str(p) for p in range(1, channels + 1) if channels % p == 0)
            raise DesignError(f"lanes {self.lanes!r} does not divide the {channels} channels "
                              f"of layer {spec.name!r}; use one of {valid}", "lanes")
        taps = spec.taps
        if not _whole(self.reuse) or not 1 <= self.reuse <= taps:
            raise DesignError(f"reuse {self.reuse!r} is not from 1 to the {taps} taps of the "
                              f"{spec.kernel_size[0]}x{spec.kernel_size[1]} kernel of layer "
                              f"{spec.name!r}", "reuse")
        object.__setattr__(self, "lanes", int(self.lanes))
        object.__setattr__(self, "reuse", int(self.reuse))
        if self.weights not in WEIGHT_MODES:
            raise DesignError(f"weights must be one of {', '.join(WEIGHT_MODES)}, not "
                              f"{self.weights!r}", "weights")
        if self.target is not None and self.target not in TARGETS:
            raise DesignError(f"target must be None or one of {', '.join(TARGETS)}, not "
                              f"{self.target!r}", "target")
        self._check_pointwise_knobs(kind)
        kind.check_weights_mode(self)

    def _check_pointwise_knobs(self, kind):
        from .kinds import SEPARABLE

        given = {key: getattr(self, key) for key in ("pointwise_lanes", "pointwise_reuse")
                 if getattr(self, key) is not None}
        if not given:
            return
        if kind is not SEPARABLE:
            raise DesignError(f"{', '.join(given)} are for separable blocks only; layer "
                              f"{self.name!r} is a {self.layer_kind}", next(iter(given)))
        filters, inputs = self.layer.filters, self.lanes * self.spec.depth_multiplier
        q, rp = self.pointwise_lanes, self.pointwise_reuse
        if q is not None and (not _whole(q) or q < 1 or filters % q):
            valid = ", ".join(str(n) for n in range(1, filters + 1) if filters % n == 0)
            raise DesignError(f"pointwise_lanes {q!r} does not divide the {filters} filters of "
                              f"layer {self.name!r}; use one of {valid}", "pointwise_lanes")
        if rp is not None and (not _whole(rp) or not 1 <= rp <= inputs):
            raise DesignError(f"pointwise_reuse {rp!r} is not from 1 to the {inputs} lanes "
                              f"the pointwise stage takes (P*M)", "pointwise_reuse")

    @classmethod
    def from_config(cls, layer, config, *, formats=None, **knobs):
        """The Design for ``layer`` with a configuration's settings for it.

        The layer's entry overrides the configuration's defaults; ``formats`` (a dict, role
        by role) and the other knobs given here (not None) override both.  An entry that
        does not fit the layer is a ``ConfigError`` naming the layer and the key.
        """
        from .errors import ConfigError

        config = read_config(config)
        settings = {} if config is None else config.settings(
            getattr(layer, "layer_id", None), layer.name)
        stored = {**(getattr(layer, "formats", None) or {}), **settings.pop("formats", {})}
        if not kind_of(layer).roles:        # an int8 layer's formats are its model's
            stored = {}
        chosen = {**stored, **(formats or {})}
        for key, value in knobs.items():
            if key not in ("lanes", "reuse", "weights", "target", "rounding",
                           "pointwise_lanes", "pointwise_reuse"):
                raise TypeError(f"Design.from_config() got an unexpected argument {key!r}")
            if value is not None:
                settings[key] = value
        try:
            return cls(layer, chosen, **settings)
        except (DesignError, FormatError, LayerError) as error:
            if config is None:
                raise
            key = getattr(error, "key", None) or "formats"
            if key in knobs and knobs[key] is not None:
                raise                   # the caller's own argument, not the entry
            if key == "formats" and formats and _builds(cls, layer, {
                    **(getattr(layer, "formats", None) or {}),
                    **{k: v for k, v in chosen.items() if k not in formats}}):
                raise                   # the caller's formats are the ones that do not fit
            raise ConfigError(f"{config.where(getattr(layer, 'layer_id', None), layer.name)}: "
                              f"key {key!r}: {error}") from None

    # -- figures ---------------------------------------------------------------------------

    @property
    def kind(self):
        """The layer's kind, a ``dwconv.kinds.Kind`` (``.name``: depthwise, separable,
        int8)."""
        return kind_of(self.layer)

    @property
    def layer_kind(self):
        """The layer's class as its model names it (DepthwiseConv2D, SeparableConv2D,
        int8 DEPTHWISE_CONV_2D, ...)."""
        return self.kind.layer_kind(self.layer)

    @property
    def spec(self):
        """The layer's LayerSpec (a separable block's: its depthwise part's)."""
        return self.layer.spec

    @property
    def name(self):
        """The layer's name."""
        return self.layer.spec.name

    @functools.cached_property
    def _weights_raw(self):
        return self.kind.weights_raw(self)

    @property
    def kernel_raw(self):
        """The (depthwise) kernel (kh, kw, C, M) as raw integers of the weight format."""
        return self._weights_raw[0]

    @property
    def bias_raw(self):
        """The (depthwise) bias (C*M,) as raw integers of the bias format (zeros without a
        bias)."""
        return self._weights_raw[1]

    @property
    def accumulator(self):
        """The exact accumulator format of the depthwise sum (the given one, if any,
        applies after it)."""
        return self.formats.exact_accumulator(self.spec.taps)

    def plan(self):
        """The depthwise engine's ``hw.plan.EnginePlan``: every figure, no Amaranth
        component built (depthwise layers; ``figures()`` serves every kind)."""
        from .hw.plan import EnginePlan
        from .kinds import DEPTHWISE

        if self.kind is not DEPTHWISE:
            raise DesignError(f"plan() is the depthwise engine's; layer {self.name!r} is a "
                              f"{self.layer_kind}: use figures()")
        return EnginePlan(self.spec, self.formats, self.lanes, self.kernel_raw, self.bias_raw,
                          weights=self.weights, reuse=self.reuse, target=self.target)

    @functools.cached_property
    def _figures(self):
        return self.kind.figures(self)

    latency = property(lambda self: self._figures["latency"],
                       doc="Cycles from a window to the output queue's input (a separable "
                           "block: to its first output beat).")
    multipliers = property(lambda self: self._figures["multipliers"],
                           doc="Multipliers: ceil(kh*kw/R)*P*M (and a separable block's "
                               "pointwise stage's).")
    real_multipliers = property(lambda self: self._figures["real_multipliers"],
                                doc="Multipliers built as such (constant weights at R = 1 "
                                    "become shift-and-add logic: 0).")
    line_buffer_words = property(lambda self: self._figures["line_buffer_words"],
                                 doc="Words of the line buffer.")
    out_lanes = property(lambda self: self._figures["out_lanes"],
                         doc="Lanes of an output beat: P*M (a separable block: Q filters).")

    @property
    def line_buffer_min_words(self):
        """((kh-1)*dh*W + (kw-1)*dw + 1)*C: the least a sliding window can store."""
        from .sim.simulate import line_buffer_minimum
        return line_buffer_minimum(self.spec)

    def ideal_cycles(self, frames=1):
        """frames*H*W*C/P*R: cycles at one input beat every R cycles."""
        spec = self.spec
        return frames * spec.height * spec.width * spec.channels // self.lanes * self.reuse

    def figures(self):
        """The figures as a dict (what ``dwconv verilog`` prints, and more)."""
        return {**self._figures, **self.kind.report(self), "lanes": self.lanes,
                "reuse": self.reuse, "line_buffer_min_words": self.line_buffer_min_words,
                "ideal_cycles_per_frame": self.ideal_cycles(1)}

    # -- golden models -----------------------------------------------------------------------

    def _channels_last(self, x):
        """(N, H, W, C) frames of ``x`` and whether it had a batch axis; integer arrays of
        an int8 layer stay integers."""
        from .kinds import INT8

        try:
            frames, batched = to_channels_last(self.spec, x)
        except LayerError as error:
            raise LayerError(f"{error}; give an array of that shape") from None
        if self.kind is INT8 and np.issubdtype(np.asarray(x).dtype, np.integer):
            frames = frames.astype(np.int64)
        return frames, batched

    def predict(self, x, float=False):
        """The golden model on ``x`` ((N, ...) or one image, the layer's data_format).

        Fixed point (exact dequantized float64 values) unless ``float``: then what Keras
        computes (in float64).  An int8 layer: int8 arrays in give the int8 arrays LiteRT's
        interpreter gives; float arrays are quantized as its QUANTIZE op does and the
        output dequantized (float64).  It has no float model: ``float=True`` is an error.
        """
        frames, batched = self._channels_last(x)
        if float:
            y = self.kind.float_nhwc(self, frames)
            if y is None:
                raise DesignError(f"layer {self.name!r} is a {self.layer_kind} and has no "
                                  f"float model; predict(x) of a float array gives its "
                                  f"dequantized int8 result")
        else:
            y = self.raw_values(self.kind.forward_raw(self, self.kind.quantize(self, frames)),
                                x)
        return from_channels_last(self.spec, y, batched)

    def raw_values(self, raw, x):
        """Raw outputs (channels_last) as users see them for input ``x``: exact dequantized
        float64 values (int8 values for an int8 layer's integer input)."""
        return self.kind.values(self, raw, x)

    def overflows(self, x):
        """``{"input", "accum", "output"}`` (a separable block also ``"mid"``): how many
        values of a run on ``x`` overflow each format (``golden.overflow``).  An int8
        layer's datapath saturates by design: all 0."""
        return self.kind.overflows(self, self._channels_last(x)[0])

    def overflow_warning(self, x):
        """The warning line (no prefix) for ``overflows(x)``, or None."""
        return self.kind.overflow_warning(self, self.overflows(x))

    # -- hardware ----------------------------------------------------------------------------

    def _engine(self, target):
        return self.kind.engine(self, target)

    def engine(self):
        """The AXI4-Stream-ported engine (the top ``verilog`` writes)."""
        return self._engine(self.target)

    def core(self):
        """The stream-native Amaranth component: ports ``i``, ``o``, ``w`` (with
        weights="port") and ``error``.  Depthwise: ``hw.core.DepthwiseCore``; the other
        kinds: their engine's ``core()``."""
        return self.engine().core()

    def verilog(self, top="dwconv"):
        """The Verilog text ``dwconv verilog`` writes, with top module ``top``."""
        import re

        from .flows.verilog import engine_verilog

        if not isinstance(top, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", top):
            raise DesignError(f"top {top!r} is not a Verilog module name; use letters, digits "
                              f"and _")
        return engine_verilog(self.engine(), top=top, kind=self.layer_kind)

    def vectors(self, x, folder):
        """Write golden vectors for ``x`` into ``folder`` (all-or-nothing); returns the
        content written, by file name (see ``sim.vectors``)."""
        from .sim.vectors import write_design_vectors
        self._channels_last(x)
        return write_design_vectors(folder, self, x)

    def simulate(self, x, sim="amaranth", stall=0.0, seed=0, *, build_dir=None,
                 progress=None):
        """Simulate the engine on ``x`` (the layer's data_format) and compare it with the
        fixed golden model; frames back to back, random valid/ready stalls with
        probability ``stall``.

        ``sim``: amaranth, verilator, icarus, cocotb-verilator or cocotb-icarus.  The
        simulated engine is the portable one (a target's DSP instances give the same cycles
        and values).  ``progress``: a callable(total, what) -> ``progress.Progress``.
        Returns a ``SimulationResult``.
        """
        from .sim.simulate import SIMULATORS, simulate_design

        if sim not in SIMULATORS:
            raise DesignError(f"sim must be one of {', '.join(SIMULATORS)}, not {sim!r}")
        if not isinstance(stall, (int, float)) or not 0.0 <= stall < 1.0:
            raise DesignError(f"stall must be a probability in [0, 1), not {stall!r}")
        frames, batched = self._channels_last(x)
        raw, expected_raw, report = simulate_design(self, frames, sim=sim, stall=stall,
                                                    seed=seed, build_dir=build_dir,
                                                    progress=progress)
        out = lambda a: from_channels_last(self.spec, a, batched)
        return SimulationResult(outputs=out(self.raw_values(raw, x)), raw=out(raw),
                                expected=out(self.raw_values(expected_raw, x)),
                                mismatches=report["mismatches"], cycles=report["cycles"],
                                report=report)

    def synth(self, target=None, device=None, seeds=1, *, dsp=True, seed_timeout=None,
              build_dir=None, progress=None):
        """Synthesize, place and route with yosys + nextpnr; returns the dict ``dwconv synth
        --report`` writes (``fmax_mhz``, ``luts``, ``ffs``, ``dsps``, ``brams``, ...).

        ``target`` defaults to the Design's; ``seeds`` nextpnr seeds 1..N (the best one's
        figures, the median Fmax).  Raises FileNotFoundError when a tool is missing and
        RuntimeError when one fails.
        """
        import tempfile

        from .progress import progress_for
        from .flows.synth import DEVICES, run_synth

        target = target or self.target
        if target not in DEVICES:
            raise DesignError(f"synth needs a target, one of {', '.join(DEVICES)}, not "
                              f"{target!r}")
        if device is not None and device not in DEVICES[target]:
            raise DesignError(f"device {device!r} is not a {target} device; use one of "
                              f"{', '.join(DEVICES[target])}")
        if not _whole(seeds) or seeds < 1:
            raise DesignError(f"seeds must be a whole number >= 1, not {seeds!r}")
        bar = progress_for(progress, 1 + seeds, f"synth {target}")

        def report_line(line):
            # each tool run (yosys, then one nextpnr per seed) ends with "done in"
            if ": done in " in line:
                bar.step(line)
            else:
                bar.note(line)

        with bar, tempfile.TemporaryDirectory(prefix="dwconv-synth-") as temp:
            result = run_synth(self._engine(None), target, device=device,
                               build_dir=build_dir or temp, dsp=dsp,
                               seeds=range(1, seeds + 1), seed_timeout=seed_timeout,
                               progress=report_line)
        result["layer"] = self.name
        result["formats"] = self.formats.to_dict(self.kind.name == "separable")
        result.update(self.kind.report(self))
        return result

    def replace(self, **changes):
        """``dataclasses.replace(self, **changes)``.  A ``formats`` dict given here is
        merged over the layer's stored formats, like the constructor's; ``with_formats``
        changes some roles of this Design's formats."""
        return dataclasses.replace(self, **changes)

    def with_formats(self, **roles):
        """This Design with some formats changed: ``design.with_formats(output="fixed<8,3>")``."""
        current = self.formats.to_dict(self.kind.name == "separable")
        return dataclasses.replace(self, formats={**current, **roles})
