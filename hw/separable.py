"""The separable block: the depthwise core feeding the pointwise stage, as a stream core
and as its AXI4-Stream top."""

import dataclasses

import numpy as np
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden.spec import LayerError
from .axi import AxiStreamTop
from .core import DepthwiseCore, lane_beat
from .counter import position_counter
from .plan import EnginePlan
from .pointwise import PointwisePlan, PointwiseStage, pixel_beat
from .requantizer import format_shape

__all__ = ["SeparableCore", "SeparableEngine", "BlockShape", "default_out_lanes"]


def default_out_lanes(filters, beats_per_pixel):
    """The fewest output lanes Q (a divisor of F) whose F/Q output beats per pixel fit in
    the ``beats_per_pixel`` cycles a pixel's input takes: the block keeps its input rate."""
    return min(q for q in range(1, filters + 1)
               if filters % q == 0 and filters // q <= beats_per_pixel)


class BlockShape:
    """The depthwise part's LayerSpec as the block's streams see it: ``output_shape`` and
    ``out_channels`` are the pointwise stage's (F filters), every other field is the
    depthwise part's (input shape, kernel, strides, padding...)."""

    def __init__(self, spec, filters):
        self.depthwise = spec
        self.output_shape = tuple(spec.output_shape[:2]) + (filters,)
        self.out_channels = filters
        self.out_height, self.out_width = self.output_shape[:2]

    def __getattr__(self, name):
        return getattr(self.depthwise, name)


def _check_parts(depthwise, pointwise):
    """The depthwise core's output stream is the pointwise stage's input."""
    if not isinstance(depthwise, EnginePlan) or not isinstance(pointwise, PointwisePlan):
        raise TypeError("SeparableCore takes an EnginePlan and a PointwisePlan")
    if (pointwise.channels, pointwise.in_lanes, pointwise.mid) != (
            depthwise.spec.out_channels, depthwise.out_lanes, depthwise.formats.output):
        raise LayerError(f"the pointwise stage takes {pointwise.in_lanes} lanes of "
                         f"{pointwise.mid} ({pointwise.channels} values per pixel), the "
                         f"depthwise part gives {depthwise.out_lanes} lanes of "
                         f"{depthwise.formats.output} ({depthwise.spec.out_channels})")
    if pointwise.weights != depthwise.weights:
        raise LayerError("both parts of a block take their weights the same way")


def load_width_of(depthwise, pointwise):
    """Bits of a block's weight load value: the wider part's."""
    return max(depthwise.store.load_width, pointwise.load_width)


class SeparableCore(wiring.Component):
    """A separable block with stream ports: ``DepthwiseCore`` -> ``PointwiseStage``.

    ::

        i -> DepthwiseCore (output format: mid) -> PointwiseStage -> o

    The depthwise core computes the depthwise sum (exact, plus its own bias and activation
    where the block has them) and converts it to the **mid** format; its output beats (P*M
    lanes, G = C/P per pixel) are the pointwise stage's input, which gives F/Q beats of Q
    filters per pixel in the output format.  Both parts stall on ready/valid: the block
    takes one input beat per cycle (every R cycles with ``reuse`` R) as long as the
    pointwise stage keeps up, i.e. its ``cycles_per_pixel`` max(G*Rp, F/Q) is at most G*R.

    Parameters
    ----------
    depthwise : EnginePlan
        The depthwise part, with the mid format as its output format and no accumulator
        format (``SeparableEngine.depthwise``).
    pointwise : PointwisePlan
        The pointwise stage (``SeparableEngine.pointwise``): P*M input lanes of mid.

    Members
    -------
    i : In(stream.Signature(lane_beat(formats.input, P)))
        Input pixels in raster order, C/P beats per pixel, exactly H*W*C/P per frame;
        ``first`` on a frame's first beat, ``last`` on the last beat of each row.
    o : Out(stream.Signature(pixel_beat(format_shape(output), Q)))
        Output pixels as F/Q beats; lane q of the pixel's beat j is filter j*Q + q;
        ``first`` on a frame's first beat, ``last`` on the last beat of each row.
    w : In(stream.Signature(StructLayout({"value": load_width, "last": 1})))
        Weight loads, with ``weights="port"`` only: one load holds every weight of the
        block (``SeparableEngine.load_values``), one raw value per beat, sign-extended to
        ``load_width``; ``last`` on the final one.  A load is taken by the next frame that
        starts after it (frame starts wait while a load is under way).
    error : Out(1)
        Sticky until reset: a malformed input frame or weight load was seen.  A load's
        depthwise part goes to the depthwise core with a ``last`` of its own: a ``last``
        inside it discards the load; one misplaced in the pointwise part (or right at the
        depthwise part's end) discards only that part, so the next frame has the new
        depthwise and the old pointwise weights.
    """

    def __new__(cls, depthwise, pointwise):
        # checked before the object exists, so a refused core is no unused elaboratable
        _check_parts(depthwise, pointwise)
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, depthwise, pointwise):
        self.depthwise_plan, self.pointwise_plan = depthwise, pointwise
        spec = depthwise.spec
        #: values of a load's depthwise part: the kernel, then the bias if it has one
        self.depthwise_values = spec.taps * spec.out_channels + (
            spec.out_channels if spec.use_bias else 0)
        self.load_width = load_width_of(depthwise, pointwise)
        members = {
            "i": In(stream.Signature(lane_beat(depthwise.formats.input, depthwise.lanes))),
            "o": Out(stream.Signature(pixel_beat(format_shape(pointwise.output),
                                                 pointwise.out_lanes))),
            "error": Out(1),
        }
        if depthwise.weights == "port":
            members["w"] = In(stream.Signature(data.StructLayout(
                {"value": self.load_width, "last": 1})))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.depthwise = depthwise = DepthwiseCore(self.depthwise_plan)
        m.submodules.pointwise = pointwise = PointwiseStage(self.pointwise_plan)
        wiring.connect(m, depthwise.o, pointwise.i)
        wiring.connect(m, pointwise.o, wiring.flipped(self.o))
        if self.depthwise_plan.weights == "port":
            hold, split_end = self._weight_port(m, depthwise, pointwise)
            m.d.comb += [depthwise.i.payload.eq(self.i.payload),
                         depthwise.i.valid.eq(self.i.valid & ~hold),
                         self.i.ready.eq(depthwise.i.ready & ~hold)]
            split_error = Signal()      # a load's last value where the depthwise part ends
            with m.If(split_end):
                m.d.sync += split_error.eq(1)
        else:
            wiring.connect(m, wiring.flipped(self.i), depthwise.i)
            split_error = 0
        # every flag is sticky
        m.d.comb += self.error.eq(depthwise.error | pointwise.error | split_error)
        return m

    def _weight_port(self, m, depthwise, pointwise):
        """Splits each load: its first values (the depthwise kernel and bias) go to the
        depthwise core's port, with a ``last`` of their own, the rest to the pointwise
        stage's.  Both parts must reach the same frame: the pointwise part waits until
        every frame started has reached the pointwise stage (a start of frame passes it
        before the load is complete there), and frame starts wait while a load is under
        way (so the depthwise core's next frame is the one the pointwise part goes to).
        Returns the "hold a start of frame" flag and the "a load's last value where its
        depthwise part ends" strobe."""
        plan = self.depthwise_plan
        w, value, last = self.w, self.w.payload.value, self.w.payload.last
        in_pointwise = Signal()       # the load's values now go to the pointwise stage
        take_dw = w.valid & ~in_pointwise & depthwise.w.ready
        count, dw_end = position_counter(m, self.depthwise_values, take_dw, "split_value",
                                         take_dw & last)
        # frames started at the input, frames whose first beat reached the pointwise stage
        # (at most the frames whose outputs fit in the depthwise core's output queue, plus
        # those it is working on, are between the two: the counters never wrap onto each
        # other)
        width = (plan.queue_depth + plan.frames_in_flight + 8).bit_length() + 1
        started, arrived = Signal(width, name="frames_started"), Signal(width,
                                                                        name="frames_arrived")
        with m.If(self.i.valid & self.i.ready & self.i.payload.first):
            m.d.sync += started.eq(started + 1)
        with m.If(pointwise.i.valid & pointwise.i.ready & pointwise.i.payload.first):
            m.d.sync += arrived.eq(arrived + 1)
        caught_up = started == arrived
        m.d.comb += [
            depthwise.w.valid.eq(w.valid & ~in_pointwise),
            depthwise.w.payload.value.eq(value[:plan.store.load_width]),
            depthwise.w.payload.last.eq(last | dw_end),
            pointwise.load.valid.eq(w.valid & in_pointwise & caught_up),
            pointwise.load.payload.value.eq(value[:self.pointwise_plan.load_width]),
            pointwise.load.payload.last.eq(last),
            w.ready.eq(Mux(in_pointwise, pointwise.load.ready & caught_up,
                           depthwise.w.ready)),
        ]
        with m.If(take_dw & dw_end):
            m.d.sync += in_pointwise.eq(~last)
        # the pointwise part ends at ``last`` or at the load's final value, whichever comes
        # first (a missing ``last`` must not hold frame starts forever)
        take_pw = pointwise.load.valid & pointwise.load.ready
        _, pw_final = position_counter(m, self.pointwise_plan.load_values, take_pw,
                                       "split_pw", take_pw & last)
        with m.If(take_pw & (last | pw_final)):
            m.d.sync += in_pointwise.eq(0)
        hold = self.i.payload.first & (in_pointwise | count.any())
        return hold, take_dw & dw_end & last


class SeparableEngine(AxiStreamTop):
    """The Verilog top of a separable block (SeparableConv2D/1D, or a DepthwiseConv2D
    joined with a 1x1 Conv2D): ``SeparableCore`` with flat AXI4-Stream video ports.

    The core's streams become ``s_axis_*`` (``i``), ``m_axis_*`` (``o``) and ``w_axis_*``
    (``w``): ``tdata`` is the lanes' array (lane 0 in the least significant bits), ``tuser``
    the beat's ``first``, ``tlast`` its ``last``.  Nothing else happens here, so cycle
    counts and results are the core's.  The figures come from the two parts' plans
    (``depthwise``, an ``EnginePlan``, and ``pointwise``, a ``PointwisePlan``); the core is
    built when the engine is elaborated (``core()`` gives a fresh one).

    Parameters
    ----------
    spec : LayerSpec
        The depthwise part (for Keras' separable layers: no bias, linear activation).
    formats : LayerFormats
        ``input``, ``weight`` (depthwise kernel), ``bias`` (both biases), ``accum`` (of the
        pointwise sum), ``output``; ``mid`` and ``pointwise`` from the arguments below, or
        from ``formats`` when it has them.
    lanes : int
        P, input channels per beat; must divide C.
    kernel_raw, bias_raw : ndarray of int
        The depthwise kernel (kh, kw, C, M) and bias (C*M,) (zeros without one).
    pointwise_raw, pointwise_bias_raw : ndarray of int
        The pointwise kernel (C*M, F) and bias (F,) (zeros without one).
    activation : "linear", "relu" or "relu6"
        After the pointwise sum.
    mid, pointwise : QFormat, optional
    out_lanes : int, optional
        Q, filters per output beat (must divide F); default ``default_out_lanes``.
    reuse : int
        R of the depthwise part.
    pointwise_reuse : int, optional
        Rp of the pointwise stage, 1 to P*M; default min(R, P*M).
    use_bias : bool
        The pointwise stage has a bias (else ``pointwise_bias_raw`` is zeros).
    weights : "const" or "port"
        Built-in constants, or run-time loads through ``w_axis_*`` (see ``SeparableCore``'s
        ``w`` and ``load_values``).
    target : None, "ecp5" or "ice40"

    Members
    -------
    depthwise : EnginePlan
        The depthwise part (output format: mid).
    pointwise : PointwisePlan
        The pointwise stage.
    s_axis_tdata, s_axis_tvalid, s_axis_tuser, s_axis_tlast : In; s_axis_tready : Out
        P lanes of the input format, lane 0 in the least significant bits.  ``tuser`` marks
        the first beat of a frame, ``tlast`` the last beat of each row.
    m_axis_tdata, m_axis_tvalid, m_axis_tuser, m_axis_tlast : Out; m_axis_tready : In
        Q lanes of the output format; lane q of the pixel's beat j is filter j*Q + q.
        ``tuser`` on a frame's first beat, ``tlast`` on the last beat of each row.
    w_axis_tdata, w_axis_tvalid, w_axis_tlast : In; w_axis_tready : Out
        Weight loads, with ``weights="port"`` only.
    error : Out
        Sticky until reset: a malformed input frame or weight load was seen.
    """

    def __init__(self, spec, formats, lanes, kernel_raw, bias_raw, pointwise_raw,
                 pointwise_bias_raw, *, activation="linear", mid=None, pointwise=None,
                 out_lanes=None, reuse=1, pointwise_reuse=None, use_bias=True, weights="const",
                 target=None):
        if weights not in ("const", "port"):
            raise LayerError(f"weights must be 'const' or 'port', not {weights!r}")
        self._arguments = (spec, formats, lanes, kernel_raw, bias_raw, pointwise_raw,
                           pointwise_bias_raw)
        self._options = dict(activation=activation, mid=mid, pointwise=pointwise,
                             out_lanes=out_lanes, reuse=reuse, pointwise_reuse=pointwise_reuse,
                             use_bias=use_bias, weights=weights)
        mid = mid if mid is not None else getattr(formats, "mid", None)
        pointwise = pointwise if pointwise is not None else getattr(formats, "pointwise", None)
        if mid is None or pointwise is None:
            raise LayerError("a separable block needs its mid and pointwise formats")
        pointwise_raw = np.asarray(pointwise_raw)
        if pointwise_raw.ndim != 2 or pointwise_raw.shape[0] != spec.out_channels:
            raise LayerError(f"the pointwise kernel has shape {list(pointwise_raw.shape)}, "
                             f"but the block needs [{spec.out_channels}, F] (C*M, filters)")
        filters = pointwise_raw.shape[1]
        self.depthwise_formats = dataclasses.replace(formats, accum=None, output=mid)
        self.depthwise = EnginePlan(spec, self.depthwise_formats, lanes, kernel_raw,
                                    bias_raw, weights=weights, reuse=reuse, target=target)
        self.groups = spec.channels // lanes
        if pointwise_reuse is None:
            pointwise_reuse = min(reuse, self.depthwise.out_lanes)
        if out_lanes is None:
            out_lanes = default_out_lanes(filters, self.groups * reuse)
        self.pointwise = PointwisePlan(
            channels=spec.out_channels, filters=filters, in_lanes=self.depthwise.out_lanes,
            out_lanes=out_lanes, mid=mid, pointwise=pointwise, bias=formats.bias,
            accum=formats.accum, output=formats.output, activation=activation,
            kernel_raw=pointwise_raw, bias_raw=pointwise_bias_raw, reuse=pointwise_reuse,
            weights=weights, use_bias=use_bias, target=target)
        # what the simulators and reports read of an engine
        self.depthwise_spec, self.formats, self.lanes = spec, formats, lanes
        self.spec = BlockShape(spec, filters)
        self.filters, self.out_lanes, self.out_groups = filters, out_lanes, filters // out_lanes
        self.mid, self.pointwise_format, self.activation = mid, pointwise, activation
        self.reuse, self.pointwise_reuse = reuse, pointwise_reuse
        self.weights, self.target = weights, target
        self.store = self.depthwise.store
        self.in_width = formats.input.width
        self.depthwise_values = (spec.taps * spec.out_channels
                                 + (spec.out_channels if spec.use_bias else 0))
        #: values in one weight load (``weights="port"``), see ``load_values``
        self.load_words = self.depthwise_values + self.pointwise.load_values
        self.load_width = load_width_of(self.depthwise, self.pointwise)
        super().__init__(lanes * formats.input.width, out_lanes * formats.output.width,
                         self.load_width if weights == "port" else None)

    def core(self):
        """A fresh ``SeparableCore`` of this block: the stream ports ``i``, ``o``, ``w``
        (with ``weights="port"``) and ``error``."""
        return SeparableCore(self.depthwise, self.pointwise)

    def load_values(self, kernel_raw, bias_raw, pointwise_raw, pointwise_bias_raw):
        """The raw values of one weight load, in order: the depthwise kernel (kh, kw, C, M)
        in Keras order, its bias (C*M,) if the depthwise part has one, the pointwise kernel
        (C*M, F) in Keras order, its bias (F,) with ``use_bias``.  (The ``loads`` of
        ``sim.native_sim``, ``sim.cocotb_sim`` and ``sim.core_sim`` take them as
        ``{frame: (load_values(...), ())}``.)"""
        parts = [np.asarray(kernel_raw).reshape(-1)]
        if self.depthwise_spec.use_bias:
            parts.append(np.asarray(bias_raw).reshape(-1))
        parts.append(np.asarray(pointwise_raw).reshape(-1))
        if self.pointwise.use_bias:
            parts.append(np.asarray(pointwise_bias_raw).reshape(-1))
        values = np.concatenate(parts).astype(np.int64)
        if len(values) != self.load_words:
            raise LayerError(f"a weight load holds {self.load_words} values, not {len(values)}")
        return values

    def retargeted(self, target):
        """The same block with its multipliers built for ``target``."""
        if target == self.target:
            return self
        return SeparableEngine(*self._arguments, **self._options, target=target)

    # -- figures (no hardware built) -------------------------------------------------------

    @property
    def latency(self):
        """Cycles from a pixel's first window being scheduled in the depthwise engine to
        the block's first output beat for that pixel, with the sink ready, the queues empty
        and the pixel's G beats back to back: the depthwise core's latency, its output
        queue and skid (3 cycles), G - 1 beats, the pointwise stage's latency."""
        return self.depthwise.latency + 3 + self.groups - 1 + self.pointwise.latency

    @property
    def queue_depth(self):
        """Output beats the block's queues can hold: the depthwise engine's, and the
        pointwise stage's (F/Q beats per entry)."""
        return (self.depthwise.queue_depth
                + self.pointwise.queue_depth * self.pointwise.out_beats)

    @property
    def multipliers(self):
        return self.depthwise.multipliers + self.pointwise.multipliers

    @property
    def real_multipliers(self):
        return self.depthwise.real_multipliers + self.pointwise.real_multipliers

    @property
    def line_buffer_words(self):
        return self.depthwise.line_buffer_words

    @property
    def cycles_per_input_beat(self):
        """Sustained cycles per input beat: R, or the pointwise stage's pace if slower
        (stride s has 1/s**2 outputs per input pixel, so it keeps up more easily)."""
        spec = self.depthwise_spec
        per_pixel = self.pointwise.cycles_per_pixel
        outputs = spec.out_height * spec.out_width
        inputs = spec.height * spec.width
        return max(self.reuse, per_pixel * outputs / (inputs * self.groups))

    @property
    def cycles_per_frame(self):
        """Sustained cycles per frame back to back: H*W*C/P input beats, each
        ``cycles_per_input_beat``."""
        spec = self.depthwise_spec
        return spec.height * spec.width * self.groups * self.cycles_per_input_beat

    def ideal_cycles(self, frames=1):
        """frames * H*W*C/P * R: the input's pace, the report's ``ideal_cycles``."""
        spec = self.depthwise_spec
        return frames * spec.height * spec.width * self.groups * self.reuse

    # -- hardware ---------------------------------------------------------------------------
