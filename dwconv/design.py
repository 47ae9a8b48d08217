"""``Design``: one depthwise layer as hardware, described in plain Python.

A Design is a frozen dataclass of the layer and its generation knobs; its figures
(latency, multipliers, line-buffer words, ideal cycles) come without building hardware,
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
from .golden.fixed import FormatError, QFormat
from .golden.formats import DEFAULT_FORMATS, LayerFormats
from .golden.layer import from_channels_last, to_channels_last
from .golden.spec import LayerError

__all__ = ["Design", "SimulationResult"]


@dataclass(frozen=True)
class SimulationResult:
    """What ``Design.simulate`` returns.

    Members
    -------
    outputs : float64 array
        The engine's output, exact dequantized values, in the layer's data_format (no batch
        axis when the input had none).
    raw : int64 array
        The same as raw integers of the output format, same layout.
    expected : float64 array
        The fixed golden model's output, same layout.
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


def _format_text(role, value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, QFormat):
        return str(value)
    raise FormatError(f"format {role!r} must be a format string like 'fixed<8,3,RND,SAT>' or "
                      f"a QFormat, not {value!r}")


def _resolve_formats(layer, formats):
    """LayerFormats from a LayerFormats, or a dict/None over the layer's stored formats and
    the defaults."""
    if isinstance(formats, LayerFormats):
        return formats
    if formats is not None and not isinstance(formats, dict):
        raise FormatError(f"formats must be a LayerFormats or a dict of role -> format "
                          f"string, not {type(formats).__name__}")
    chosen = dict(getattr(layer, "formats", None) or {})
    for role, value in (formats or {}).items():
        if role not in DEFAULT_FORMATS:
            raise FormatError(f"unknown format role {role!r}; use {', '.join(DEFAULT_FORMATS)}")
        chosen[role] = _format_text(role, value)
    try:
        return LayerFormats.from_strings(**chosen)
    except FormatError as error:
        bad = next((role for role, text in chosen.items()
                    if not _parses(role, text)), None)
        prefix = f"format {bad!r}: " if bad else ""
        raise FormatError(f"{prefix}{error}") from None


def _parses(role, text):
    try:
        LayerFormats.from_strings(**{role: text})
        return True
    except FormatError:
        return False


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
    """A depthwise layer with its fixed-point formats and hardware knobs.

    Parameters
    ----------
    layer : Layer
        From ``dwconv.load``, or a ``golden.layer.Layer`` made by hand.
    formats : LayerFormats, dict or None
        A dict maps roles (``input``, ``weight``, ``bias``, ``accum``, ``output``, ...: the
        keys of ``golden.formats.DEFAULT_FORMATS``) to format strings (``"exact"`` or None
        for the exact accumulator); it is merged over the formats stored with the layer and
        the defaults.  After construction the field holds the resolved ``LayerFormats``.
    lanes : int
        P, channels per stream beat; divides C.
    reuse : int
        R, 1 to kh*kw: one input beat every R cycles on ceil(kh*kw/R) multipliers per lane.
    weights : "const" or "port"
        Weights built in as constants, or loaded at run time through the weight port.
    target : None, "ecp5" or "ice40"
        FPGA family whose DSP blocks the multipliers use; None: portable Verilog.

    Members
    -------
    spec, name, kernel_raw, bias_raw, accumulator
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

    def __post_init__(self):
        layer = self.layer
        spec = getattr(layer, "spec", None)
        if spec is None or not hasattr(layer, "kernel"):
            raise DesignError(f"layer must be a layer from dwconv.load (or a golden Layer), "
                              f"not {type(layer).__name__}")
        object.__setattr__(self, "formats", _resolve_formats(layer, self.formats))
        self.formats.exact_accumulator(spec.taps)       # raises when it cannot be built
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
        chosen = {**(getattr(layer, "formats", None) or {}), **settings.pop("formats", {}),
                  **(formats or {})}
        for key, value in knobs.items():
            if key not in ("lanes", "reuse", "weights", "target"):
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
    def spec(self):
        """The layer's LayerSpec."""
        return self.layer.spec

    @property
    def name(self):
        """The layer's name."""
        return self.layer.spec.name

    @functools.cached_property
    def _weights_raw(self):
        from .golden.fixed_ref import quantize_weights
        return quantize_weights(self.layer, self.formats)

    @property
    def kernel_raw(self):
        """The kernel (kh, kw, C, M) as raw integers of the weight format."""
        return self._weights_raw[0]

    @property
    def bias_raw(self):
        """The bias (C*M,) as raw integers of the bias format (zeros without a bias)."""
        return self._weights_raw[1]

    @property
    def accumulator(self):
        """The exact accumulator format (the given one, if any, applies after it)."""
        return self.formats.exact_accumulator(self.spec.taps)

    def plan(self):
        """The engine's ``hw.plan.EnginePlan``: every figure, no Amaranth component built."""
        from .hw.plan import EnginePlan
        return EnginePlan(self.spec, self.formats, self.lanes, self.kernel_raw, self.bias_raw,
                          weights=self.weights, reuse=self.reuse, target=self.target)

    @functools.cached_property
    def _figures(self):
        plan = self.plan()
        return {name: getattr(plan, name) for name in
                ("latency", "multipliers", "real_multipliers", "line_buffer_words",
                 "out_lanes")}

    latency = property(lambda self: self._figures["latency"],
                       doc="Cycles from a window to the output queue's input.")
    multipliers = property(lambda self: self._figures["multipliers"],
                           doc="Multipliers: ceil(kh*kw/R)*P*M.")
    real_multipliers = property(lambda self: self._figures["real_multipliers"],
                                doc="Multipliers built as such (constant weights at R = 1 "
                                    "become shift-and-add logic: 0).")
    line_buffer_words = property(lambda self: self._figures["line_buffer_words"],
                                 doc="Words of the line buffer.")
    out_lanes = property(lambda self: self._figures["out_lanes"],
                         doc="Lanes of an output beat, P*M.")

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
        return {**self._figures, "lanes": self.lanes, "reuse": self.reuse,
                "line_buffer_min_words": self.line_buffer_min_words,
                "ideal_cycles_per_frame": self.ideal_cycles(1)}

    # -- golden models -----------------------------------------------------------------------

    def _channels_last(self, x):
        try:
            return to_channels_last(self.spec, x)
        except LayerError as error:
            raise LayerError(f"{error}; give an array of that shape") from None

    def predict(self, x, float=False):
        """The golden model on ``x`` ((N, ...) or one image, the layer's data_format).

        Fixed point (exact dequantized float64 values) unless ``float``: then what Keras
        computes (in float64).
        """
        from .golden.fixed_ref import fixed_forward_raw
        from .golden.float_ref import float_forward_nhwc

        x, batched = self._channels_last(x)
        if float:
            y = float_forward_nhwc(self.layer, x)
        else:
            y = self.formats.output.to_float(
                fixed_forward_raw(self.layer, self.formats, self.formats.input.quantize(x)))
        return from_channels_last(self.spec, y, batched)

    def overflows(self, x):
        """``{"input", "accum", "output"}``: how many values of a run on ``x`` overflow
        each format (``golden.overflow``)."""
        from .golden.overflow import count_overflows
        return count_overflows(self.layer, self.formats, self._channels_last(x)[0])

    def overflow_warning(self, x):
        """The warning line (no prefix) for ``overflows(x)``, or None."""
        from .golden.overflow import overflow_warning
        return overflow_warning(self.overflows(x), self.formats)

    # -- hardware ----------------------------------------------------------------------------

    def _engine(self, target):
        from .hw.engine import DepthwiseEngine
        return DepthwiseEngine(self.spec, self.formats, self.lanes, self.kernel_raw,
                               self.bias_raw, weights=self.weights, reuse=self.reuse,
                               target=target)

    def engine(self):
        """The AXI4-Stream-ported engine (the top ``verilog`` writes)."""
        return self._engine(self.target)

    def core(self):
        """The Amaranth component ``hw.core.DepthwiseCore``: stream ports ``i``, ``o``, ``w``
        (with weights="port") and ``error``."""
        from .hw.core import DepthwiseCore
        return DepthwiseCore(self.plan())

    def verilog(self, top="dwconv"):
        """The Verilog text ``dwconv verilog`` writes, with top module ``top``."""
        import re

        from .sim.verilog import engine_verilog

        if not isinstance(top, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", top):
            raise DesignError(f"top {top!r} is not a Verilog module name; use letters, digits "
                              f"and _")
        return engine_verilog(self.engine(), top=top)

    def vectors(self, x, folder):
        """Write golden vectors for ``x`` into ``folder`` (all-or-nothing); returns the
        content written, by file name (see ``sim.vectors``)."""
        from .sim.vectors import write_vectors
        self._channels_last(x)
        return write_vectors(folder, self.layer, self.formats, np.asarray(x, dtype=np.float64),
                             self.lanes, reuse=self.reuse)

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
        from .sim.simulate import SIMULATORS, simulate_layer

        if sim not in SIMULATORS:
            raise DesignError(f"sim must be one of {', '.join(SIMULATORS)}, not {sim!r}")
        if not isinstance(stall, (int, float)) or not 0.0 <= stall < 1.0:
            raise DesignError(f"stall must be a probability in [0, 1), not {stall!r}")
        x_nhwc, batched = self._channels_last(x)
        raw, report = simulate_layer(self.layer, self.formats, x_nhwc, self.lanes, sim=sim,
                                     stall=stall, seed=seed, weights=self.weights,
                                     reuse=self.reuse, build_dir=build_dir,
                                     progress=progress)
        out = lambda a: from_channels_last(self.spec, a, batched)
        expected = self.predict(x)
        return SimulationResult(outputs=out(self.formats.output.to_float(raw)), raw=out(raw),
                                expected=expected, mismatches=report["mismatches"],
                                cycles=report["cycles"], report=report)

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
        from .sim.synth import DEVICES, run_synth

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
        result["formats"] = self.formats.to_dict()
        return result

    def replace(self, **changes):
        """``dataclasses.replace(self, **changes)``.  A ``formats`` dict given here is
        merged over the layer's stored formats, like the constructor's; ``with_formats``
        changes some roles of this Design's formats."""
        return dataclasses.replace(self, **changes)

    def with_formats(self, **roles):
        """This Design with some formats changed: ``design.with_formats(output="fixed<8,3>")``."""
        return dataclasses.replace(self, formats={**self.formats.to_dict(), **roles})
