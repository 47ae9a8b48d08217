"""The engine's plan: its checked parameters and every figure, in plain Python.

Reports, the command line and users who want latency, multiplier counts or storage build an
``EnginePlan``; ``DepthwiseCore`` and ``DepthwiseEngine`` are built from one.  No Amaranth
component exists until the core is elaborated, so a plan is free to make and to throw away.
"""

import dataclasses
from dataclasses import KW_ONLY, dataclass

import numpy as np

from ..golden.formats import LayerFormats
from ..golden.spec import LayerError, LayerSpec
from .activation import Activation
from .folded_mac import FoldedMacArray, check_reuse
from .limits import check_buildable, counter_width, frames_in_flight
from .line_buffer import storage_words
from .mac import MacArray
from .multiplier import TARGETS
from .requantizer import Requantizer, format_shape

__all__ = ["EnginePlan", "WeightPlan", "SCAN_DELAY", "WEIGHT_MODES"]

#: Beats of delay between the newest beat and the line buffer taps: time for a frame's start
#: to reach the scanner before that frame's first output can fire.
SCAN_DELAY = 2

WEIGHT_MODES = ("const", "port")

#: Cycles from an input beat's shift decision to its window's masked taps: the framer's
#: decision, the scanner's registered fire flag, the window register (see DepthwiseCore).
_FRONT_LATENCY = 3


def _raw_array(name, values, shape, fmt, what):
    """``values`` as a read-only int64 array of ``shape`` within ``fmt``'s raw range, or a
    LayerError that says what is wrong."""
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        hint = (" (NaN or infinite values among them)"
                if array.dtype.kind in "fc" and not np.all(np.isfinite(array)) else "")
        raise LayerError(f"{name} must hold the raw integers of the {what} format {fmt} "
                         f"(quantize the float weights with golden.fixed_ref.quantize_weights), "
                         f"not {array.dtype} values{hint}")
    if array.shape != tuple(shape):
        raise LayerError(f"{name} must have the shape {tuple(shape)} of the layer, "
                         f"not {array.shape}")
    if array.size:
        low, high = int(array.min()), int(array.max())
        if low < fmt.raw_min or high > fmt.raw_max:
            raise LayerError(f"{name} holds raw values from {low} to {high}, outside the "
                             f"{what} format {fmt} ({fmt.raw_min} to {fmt.raw_max}): are they "
                             f"raw integers of that format?")
    array = array.astype(np.int64)
    array.flags.writeable = False
    return array


def _check_padding(spec):
    """The scanner's output targets rise with the output position only while an axis' pads
    total at most its window span minus one, (k-1)*d pixels: beyond, outputs would lie
    wholly in padding.  'same' never pads more; explicit (folded ZeroPadding) pads may."""
    for axis, before, after, k, d in (
            ("height", spec.pad_top, spec.pad_bottom, spec.kernel_size[0], spec.dilation_rate[0]),
            ("width", spec.pad_left, spec.pad_right, spec.kernel_size[1], spec.dilation_rate[1])):
        if before + after > (k - 1) * d:
            raise LayerError(
                f"layer {spec.name!r} pads {before} + {after} pixels on the {axis} axis, more "
                f"than the engine supports there ((kernel - 1) * dilation = {(k - 1) * d} in "
                f"all); stream the frames with part of the padding in them, or pad less")


@dataclass(frozen=True, eq=False)
class WeightPlan:
    """What the weight store holds, and how it is loaded.

    Members
    -------
    kernel_raw, bias_raw : ndarray of int64, read-only
        (kh, kw, C, M) and (C*M,), the weights the engine is generated with.
    mode : "const" or "port"
    load_width : int
        Bits of a weight load value (``w`` stream): the wider of the weight and bias formats.
    w_shape, b_shape : Shape
        The weight and bias formats' raw shapes.
    constant : bool
        The kernel and bias are constants (one channel group, built-in weights): synthesis
        folds them into the MACs.
    """

    kernel_raw: np.ndarray
    bias_raw: np.ndarray
    mode: str
    load_width: int
    w_shape: object
    b_shape: object
    constant: bool


@dataclass(frozen=True, eq=False)
class EnginePlan:
    """A checked description of a depthwise engine and its figures; builds no hardware.

    Parameters
    ----------
    spec : LayerSpec
    formats : LayerFormats
    lanes : int
        P, input channels per beat; must divide C.
    kernel_raw, bias_raw : array of int
        Raw integers of the weight format (kh, kw, C, M) and of the bias format (C*M,), as
        ``golden.fixed_ref.quantize_weights`` gives them.  Without a bias, ``bias_raw`` may
        be None (zeros).
    weights : "const" or "port"
    reuse : int
        R, 1 to kh*kw: one input beat every R cycles on ceil(kh*kw/R) multipliers per lane.
    target : None, "ecp5" or "ice40"

    Members
    -------
    groups : int
        C/P, beats per pixel.
    out_lanes : int
        P*M, lanes of an output beat.
    accumulator : QFormat
        The exact accumulator.
    mac_latency : int
        Cycles from the masked taps to the MAC arrays' sums (the longest array's).
    latency : int
        Cycles from a window's shift decision to its output beat's write into the output
        queue.
    multipliers : int
        Multiplier inputs of the design, ceil(kh*kw/R)*P*M.
    real_multipliers : int
        Multipliers built as such (DSP blocks on a target): 0 where constant weights become
        shift-and-add logic (one channel group, R = 1).
    line_buffer_words : int
        Lane words in the line buffer.
    counter_width, frames_in_flight, queue_depth : int
        The shift index's width, frames whose outputs may still be due when another starts,
        and the output queue's entries.
    in_frame_beats, out_frame_beats : int
        Beats of an input and of an output frame.
    store : WeightPlan
    """

    spec: LayerSpec
    formats: LayerFormats
    lanes: int
    kernel_raw: np.ndarray
    bias_raw: np.ndarray
    _: KW_ONLY
    weights: str = "const"
    reuse: int = 1
    target: str | None = None

    def __post_init__(self):
        spec, formats = self.spec, self.formats
        if not isinstance(spec, LayerSpec):
            raise TypeError(f"spec must be a LayerSpec, not {type(spec).__name__}")
        if not isinstance(formats, LayerFormats):
            raise TypeError(f"formats must be LayerFormats, not {type(formats).__name__}")
        spec.check_lanes(self.lanes)
        _check_padding(spec)
        check_reuse(self.reuse, spec.taps)
        if not isinstance(self.weights, str) or self.weights not in WEIGHT_MODES:
            raise ValueError(f"weights must be 'const' or 'port', not {self.weights!r}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(map(repr, TARGETS))}, "
                             f"not {self.target!r}")
        check_buildable(spec, formats, self.lanes, reuse=self.reuse, weights=self.weights,
                        extra=SCAN_DELAY)
        bias = self.bias_raw
        if bias is None:
            if spec.use_bias:
                raise LayerError("bias_raw is needed: the layer has a bias")
            bias = np.zeros(spec.out_channels, dtype=np.int64)
        kernel = _raw_array("kernel_raw", self.kernel_raw, spec.kernel_shape, formats.weight,
                            "weight")
        bias = _raw_array("bias_raw", bias, (spec.out_channels,), formats.bias, "bias")
        if not spec.use_bias and bias.any():
            raise LayerError("bias_raw must be all zeros: the layer has no bias")
        set_ = lambda name, value: object.__setattr__(self, name, value)
        set_("kernel_raw", kernel)
        set_("bias_raw", bias)

        lanes, taps = self.lanes, spec.taps
        groups = spec.channels // lanes
        set_("groups", groups)
        set_("out_lanes", lanes * spec.depth_multiplier)
        set_("in_frame_beats", spec.height * spec.width * groups)
        set_("out_frame_beats", spec.out_height * spec.out_width * groups)
        set_("accumulator", formats.exact_accumulator(taps))
        set_("store", WeightPlan(
            kernel_raw=kernel, bias_raw=bias, mode=self.weights,
            load_width=max(formats.weight.width, formats.bias.width if spec.use_bias else 0),
            w_shape=format_shape(formats.weight), b_shape=format_shape(formats.bias),
            constant=self.weights == "const" and groups == 1))
        set_("counter_width", counter_width(spec, lanes, SCAN_DELAY))
        set_("frames_in_flight", frames_in_flight(spec, lanes, SCAN_DELAY))
        if self.reuse > 1:
            mac_latency = FoldedMacArray.latency_of(taps, self.reuse)
        else:
            mac_latency = max(MacArray.latency_of(taps, self.mac_weights(p, m))
                              for p in range(lanes) for m in range(spec.depth_multiplier))
        set_("mac_latency", mac_latency)
        set_("latency", _FRONT_LATENCY + self.post_latency)
        set_("queue_depth", 1 << (self.latency + 4).bit_length())
        set_("line_buffer_words", storage_words(spec, lanes, SCAN_DELAY))
        set_("multipliers", FoldedMacArray.multipliers_of(taps, self.reuse) * self.out_lanes)
        set_("real_multipliers",
             0 if self.reuse == 1 and self.store.constant else self.multipliers)

    def mac_weights(self, p, m):
        """Constant raw weights (one per tap) of the MAC for lane p and multiplier index m,
        or None when the weights are not constants."""
        if not self.store.constant:
            return None
        kh, kw = self.spec.kernel_size
        return [int(self.kernel_raw[t // kw, t % kw, p, m]) for t in range(kh * kw)]

    @property
    def post_latency(self):
        """Cycles from the masked taps to the output queue's input: mask register, MACs,
        accumulator format (if given), activation, output format."""
        accum = Requantizer.latency if self.formats.accum is not None else 0
        return 1 + self.mac_latency + accum + Activation.latency + Requantizer.latency

    def ideal_cycles(self, frames):
        """Cycles ``frames`` input frames take at full rate: one beat every R cycles."""
        return frames * self.in_frame_beats * self.reuse

    def replace(self, **changes):
        """This plan with some parameters changed (``dataclasses.replace``), checked again."""
        return dataclasses.replace(self, **changes)

    def _key(self):
        return (self.spec, self.formats, self.lanes, self.kernel_raw.tobytes(),
                self.bias_raw.tobytes(), self.weights, self.reuse, self.target)

    def __eq__(self, other):
        if not isinstance(other, EnginePlan):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self):
        return hash(self._key())
