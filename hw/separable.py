"""The separable block: the depthwise engine feeding the pointwise stage, one AXI4-Stream top."""

import dataclasses

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..golden.spec import LayerError
from .counter import position_counter
from .engine import DepthwiseEngine
from .pointwise import PointwiseStage

__all__ = ["SeparableEngine", "BlockShape", "default_out_lanes"]


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


class SeparableEngine(wiring.Component):
    """A separable block (SeparableConv2D/1D, or a DepthwiseConv2D joined with a 1x1
    Conv2D): ``DepthwiseEngine`` -> ``PointwiseStage``, with the depthwise engine's ports.

    ::

        s_axis -> DepthwiseEngine (output format: mid) -> PointwiseStage -> m_axis

    The depthwise engine computes the depthwise sum (exact, plus its own bias and
    activation where the block has them) and converts it to the **mid** format; its output
    beats (P*M lanes, G = C/P per pixel) feed the pointwise stage, which gives F/Q beats of
    Q filters per pixel in the output format.  Both parts stall on ready/valid: the block
    takes one input beat per cycle (every R cycles with ``reuse`` R) as long as the
    pointwise stage keeps up, i.e. its ``cycles_per_pixel`` max(G*Rp, F/Q) is at most G*R.

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
        R of the depthwise engine.
    pointwise_reuse : int, optional
        Rp of the pointwise stage, 1 to P*M; default min(R, P*M).
    use_bias : bool
        The pointwise stage has a bias (else ``pointwise_bias_raw`` is zeros).
    weights : "const" or "port"
        Built-in constants, or run-time loads through ``w_axis_*``: one load holds every
        weight of the block (``load_values``), one raw value per beat, sign-extended to
        ``load_width``; ``tlast`` on the last.  A load is taken by the next frame that
        starts after it (frame starts wait while a load is under way).
    target : None, "ecp5" or "ice40"

    Members
    -------
    s_axis_tdata, s_axis_tvalid, s_axis_tuser, s_axis_tlast : In; s_axis_tready : Out
        As ``DepthwiseEngine``'s: P lanes of the input format.
    m_axis_tdata, m_axis_tvalid, m_axis_tuser, m_axis_tlast : Out; m_axis_tready : In
        Q lanes of the output format; lane q of the pixel's beat j is filter j*Q + q.
        ``tuser`` on a frame's first beat, ``tlast`` on the last beat of each row.
    w_axis_tdata, w_axis_tvalid, w_axis_tlast : In; w_axis_tready : Out
        Weight loads, with ``weights="port"`` only.
    error : Out
        Sticky until reset: a malformed input frame or weight load was seen.  A load's
        depthwise part goes to the depthwise engine with a ``tlast`` of its own: a
        ``tlast`` inside it discards the load; one misplaced in the pointwise part (or
        right at the depthwise part's end) discards only that part, so the next frame
        has the new depthwise and the old pointwise weights.
    """

    _MustUse__silence = True

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
        self.depthwise = DepthwiseEngine(spec, self.depthwise_formats, lanes, kernel_raw,
                                         bias_raw, weights=weights, reuse=reuse, target=target)
        self.groups = spec.channels // lanes
        if pointwise_reuse is None:
            pointwise_reuse = min(reuse, self.depthwise.out_lanes)
        if out_lanes is None:
            out_lanes = default_out_lanes(filters, self.groups * reuse)
        self.pointwise = PointwiseStage(
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
        self.load_width = max(self.store.load_width, self.pointwise.load_width)
        members = {
            "s_axis_tdata": In(lanes * formats.input.width),
            "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "s_axis_tuser": In(1), "s_axis_tlast": In(1),
            "m_axis_tdata": Out(out_lanes * formats.output.width),
            "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_axis_tuser": Out(1), "m_axis_tlast": Out(1),
            "error": Out(1),
        }
        if weights == "port":
            members.update({
                "w_axis_tdata": In(self.load_width),
                "w_axis_tvalid": In(1), "w_axis_tready": Out(1), "w_axis_tlast": In(1),
            })
        super().__init__(members)

    def load_values(self, kernel_raw, bias_raw, pointwise_raw, pointwise_bias_raw):
        """The raw values of one weight load, in order: the depthwise kernel (kh, kw, C, M)
        in Keras order, its bias (C*M,) if the depthwise part has one, the pointwise kernel
        (C*M, F) in Keras order, its bias (F,) with ``use_bias``.  (``sim.native_sim``'s
        ``loads`` take them as ``{frame: (load_values(...), ())}``.)"""
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
        and the pixel's G beats back to back: the depthwise engine's latency, its output
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

    def elaborate(self, platform):
        m = Module()
        m.submodules.depthwise = depthwise = self.depthwise
        m.submodules.pointwise = pointwise = self.pointwise
        for name in ("tdata", "tuser", "tlast"):
            m.d.comb += getattr(depthwise, f"s_axis_{name}").eq(getattr(self, f"s_axis_{name}"))
        hold = (self._weight_port(m, depthwise, pointwise) if self.weights == "port"
                else Const(0, 1))
        m.d.comb += [depthwise.s_axis_tvalid.eq(self.s_axis_tvalid & ~hold),
                     self.s_axis_tready.eq(depthwise.s_axis_tready & ~hold)]
        self._feed(m, depthwise, pointwise)
        m.d.comb += [
            self.m_axis_tvalid.eq(pointwise.o.valid), pointwise.o.ready.eq(self.m_axis_tready),
            self.m_axis_tdata.eq(pointwise.o.payload.data),
            self.m_axis_tuser.eq(pointwise.o.payload.first),
            self.m_axis_tlast.eq(pointwise.o.payload.last),
        ]
        split_error = Signal()      # a load's last value where the depthwise part ends
        if self.weights == "port":
            with m.If(self._split_end):
                m.d.sync += split_error.eq(1)
        # every flag is sticky
        m.d.comb += self.error.eq(depthwise.error | pointwise.error | split_error)
        return m

    def _weight_port(self, m, depthwise, pointwise):
        """Splits each load: its first values (the depthwise kernel and bias) go to the
        depthwise engine's port, with a ``last`` of their own, the rest to the pointwise
        stage's.  Both parts must reach the same frame: the pointwise part waits until
        every frame started has reached the pointwise stage (a start of frame passes it
        before the load is complete there), and frame starts wait while a load is under
        way (so the depthwise engine's next frame is the one the pointwise part goes to).
        Returns the "hold a start of frame" flag."""
        in_pointwise = Signal()       # the load's values now go to the pointwise stage
        take_dw = self.w_axis_tvalid & ~in_pointwise & depthwise.w_axis_tready
        count, dw_end = position_counter(m, self.depthwise_values, take_dw, "split_value",
                                         take_dw & self.w_axis_tlast)
        # frames started at the input, frames whose first beat reached the pointwise stage
        # (at most the frames whose outputs fit in the depthwise engine's output queue, plus
        # those it is working on, are between the two: the counters never wrap onto each
        # other)
        width = (depthwise.queue_depth + depthwise.frames_in_flight + 8).bit_length() + 1
        started, arrived = Signal(width, name="frames_started"), Signal(width,
                                                                        name="frames_arrived")
        with m.If(self.s_axis_tvalid & self.s_axis_tready & self.s_axis_tuser):
            m.d.sync += started.eq(started + 1)
        with m.If(pointwise.i.valid & pointwise.i.ready & pointwise.i.payload.first):
            m.d.sync += arrived.eq(arrived + 1)
        caught_up = started == arrived
        m.d.comb += [
            depthwise.w_axis_tvalid.eq(self.w_axis_tvalid & ~in_pointwise),
            depthwise.w_axis_tdata.eq(self.w_axis_tdata[:self.store.load_width]),
            depthwise.w_axis_tlast.eq(self.w_axis_tlast | dw_end),
            pointwise.load.valid.eq(self.w_axis_tvalid & in_pointwise & caught_up),
            pointwise.load.payload.value.eq(self.w_axis_tdata[:self.pointwise.load_width]),
            pointwise.load.payload.last.eq(self.w_axis_tlast),
            self.w_axis_tready.eq(Mux(in_pointwise, pointwise.load.ready & caught_up,
                                      depthwise.w_axis_tready)),
        ]
        with m.If(take_dw & dw_end):
            m.d.sync += in_pointwise.eq(~self.w_axis_tlast)
        # the pointwise part ends at ``tlast`` or at the load's final value, whichever comes
        # first (a missing ``tlast`` must not hold frame starts forever)
        take_pw = pointwise.load.valid & pointwise.load.ready
        _, pw_final = position_counter(m, self.pointwise.load_values, take_pw, "split_pw",
                                       take_pw & self.w_axis_tlast)
        with m.If(take_pw & (self.w_axis_tlast | pw_final)):
            m.d.sync += in_pointwise.eq(0)
        self._split_end = take_dw & dw_end & self.w_axis_tlast
        return self.s_axis_tuser & (in_pointwise | count.any())

    @staticmethod
    def _feed(m, depthwise, pointwise):
        """The depthwise engine's output stream into the pointwise stage (the same payload:
        P*M lanes of the mid format, start of frame, end of row)."""
        m.d.comb += [
            pointwise.i.valid.eq(depthwise.m_axis_tvalid),
            depthwise.m_axis_tready.eq(pointwise.i.ready),
            pointwise.i.payload.data.eq(depthwise.m_axis_tdata),
            pointwise.i.payload.first.eq(depthwise.m_axis_tuser),
            pointwise.i.payload.last.eq(depthwise.m_axis_tlast),
        ]
