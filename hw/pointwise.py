"""The pointwise stage: a 1x1 convolution (C*M -> F filters) on a stream of pixel beats."""

from types import SimpleNamespace

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..golden.fixed import accumulator_format
from ..golden.spec import LayerError
from .activation import Activation
from .counter import position_counter
from .framer import beat_layout
from .mac import MacArray
from .output_queue import OutputQueue
from .requantizer import Requantizer, format_shape
from .skid import SkidBuffer

__all__ = ["PointwiseStage", "PointwisePlan", "pixel_beat"]


def pixel_beat(lane_shape, lanes):
    """A stream beat of ``lanes`` values: ``data``, ``first`` (start of frame) and ``last``
    (end of row); the depthwise core's beat layout (``framer.beat_layout``), so its output
    stream connects to the stage's input."""
    return beat_layout(data.ArrayLayout(lane_shape, lanes))


def _by_index(index, options, width):
    """``options[index]`` as a tree of two-way multiplexers on the index's bits (zeros past
    the end); ``width`` is the number of index bits."""
    options = list(options)
    for bit in range(width):
        options += [0] * (len(options) % 2)
        options = [Mux(index[bit], options[n + 1], options[n])
                   for n in range(0, len(options), 2)]
    return options[0]


def _whole(name, value, low=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise LayerError(f"{name} must be a whole number of at least {low}, not {value!r}")
    return int(value)


def _divisors(n):
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


class PointwisePlan:
    """A checked pointwise stage (a 1x1 convolution, C*M -> F filters) and its figures;
    builds no hardware.  ``PointwiseStage`` is built from one.

    Parameters
    ----------
    channels : int
        C*M, values per pixel.
    filters : int
        F.
    in_lanes : int
        L, values per input beat; must divide ``channels``.
    out_lanes : int
        Q, filters per output beat; must divide ``filters``.
    mid, pointwise, bias, output : QFormat
        Formats of the input values, the kernel, the bias and the output.
    accum : QFormat or None
        Applied to the exact sum when given.
    activation : "linear", "relu" or "relu6"
    kernel_raw : ndarray of int, (channels, filters)
    bias_raw : ndarray of int, (filters,)
    reuse : int
        R, 1 to L.
    weights : "const" or "port"
        Built in, or loaded at run time through ``load`` (``kernel_raw``/``bias_raw`` are
        then bank 0's initial contents).
    use_bias : bool
        Without a bias, ``bias_raw`` must be zeros and a load holds the kernel only.
    target : None, "ecp5" or "ice40"
        The multipliers' form (``hw.multiplier``); results and cycles do not depend on it.

    Members
    -------
    The parameters, and ``groups`` (G = C*M / L input beats per pixel), ``phases`` (G*R),
    ``slots`` (multipliers per filter, ceil(L/R)), ``out_beats`` (F/Q), ``accumulator``
    (the exact sum's format), ``load_width``, ``load_values``, ``queue_depth`` and the
    figures below.
    """

    #: cycles from a queue write to the output beat on ``o`` (queue read, serializer or
    #: pass-through, skid buffer), with ``o.ready`` high
    QUEUE_LATENCY = 3

    def __init__(self, *, channels, filters, in_lanes, out_lanes, mid, pointwise, bias,
                 accum, output, activation, kernel_raw, bias_raw, reuse=1, weights="const",
                 use_bias=True, target=None):
        channels = _whole("channels", channels)
        filters = _whole("filters", filters)
        in_lanes = _whole("the pointwise stage's input lanes", in_lanes)
        out_lanes = _whole("the pointwise stage's output lanes", out_lanes)
        if channels % in_lanes:
            raise LayerError(f"input lanes must divide the {channels} values of a pixel: use "
                             f"one of {_divisors(channels)}, not {in_lanes}")
        if filters % out_lanes:
            raise LayerError(f"output lanes must divide the {filters} filters: use one of "
                             f"{_divisors(filters)}, not {out_lanes}")
        reuse = _whole("the pointwise reuse", reuse)
        if reuse > in_lanes:
            raise LayerError(f"the pointwise reuse must be from 1 to {in_lanes} (the input "
                             f"lanes), not {reuse}")
        if activation not in ("linear", "relu", "relu6"):
            raise LayerError(f"activation must be linear, relu or relu6, not {activation!r}")
        if weights not in ("const", "port"):
            raise LayerError(f"weights must be 'const' or 'port', not {weights!r}")
        kernel_raw = np.asarray(kernel_raw)
        bias_raw = np.asarray(bias_raw)
        if kernel_raw.shape != (channels, filters) or bias_raw.shape != (filters,):
            raise LayerError(f"pointwise kernel {list(kernel_raw.shape)} and bias "
                             f"{list(bias_raw.shape)} do not fit [{channels}, {filters}] "
                             f"and [{filters}]")
        for what, array, fmt in (("kernel", kernel_raw, pointwise), ("bias", bias_raw, bias)):
            if not np.issubdtype(array.dtype, np.integer) or (
                    array.size and (array.min() < fmt.raw_min or array.max() > fmt.raw_max)):
                raise LayerError(f"raw pointwise {what} values must be integers of {fmt}")
        if not use_bias and np.any(bias_raw != 0):
            raise LayerError("a pointwise stage without bias needs a zero bias")
        self.channels, self.filters = channels, filters
        self.in_lanes, self.out_lanes, self.reuse = in_lanes, out_lanes, reuse
        self.mid, self.pointwise, self.bias, self.accum, self.output = (
            mid, pointwise, bias, accum, output)
        self.activation, self.target = activation, target
        self.weights, self.use_bias = weights, bool(use_bias)
        self.kernel_raw = kernel_raw.astype(np.int64)
        self.bias_raw = bias_raw.astype(np.int64)
        self.groups = channels // in_lanes
        self.phases = self.groups * reuse
        self.slots = -(-in_lanes // reuse)      # multipliers per filter
        self.out_beats = filters // out_lanes
        self.accumulator = accumulator_format(mid, pointwise, bias, channels)
        self.load_width = max(pointwise.width, bias.width if self.use_bias else 0)
        #: values in one weight load: the kernel, then the bias (with ``use_bias``)
        self.load_values = channels * filters + (filters if self.use_bias else 0)
        # pixels whose results may be on their way to the queue when a credit is checked
        in_flight = -(-(self.pixel_latency + 6) // self.phases) + 2
        self.queue_depth = max(2, 1 << (in_flight - 1).bit_length())

    @property
    def constant_products(self):
        """Each multiplier has one constant weight: products become shift-and-add logic."""
        return self.phases == 1 and self.weights == "const"

    def slot_weights(self, f):
        """Constant weights of filter f's MAC (one phase only), or None."""
        if not self.constant_products:
            return None
        return [int(self.kernel_raw[s, f]) for s in range(self.slots)]

    @property
    def mac_latency(self):
        """The MAC arrays' common latency (the longest of them)."""
        return max(MacArray.latency_of(self.slots, self.slot_weights(f))
                   for f in range(self.filters))

    @property
    def post_latency(self):
        """Cycles of the accumulator format (if given), the activation and the output
        format."""
        accum = Requantizer.latency if self.accum is not None else 0
        return accum + Activation.latency + Requantizer.latency

    @property
    def pixel_latency(self):
        """Cycles from a pixel's last input beat taken to its result entering the queue:
        the input skid buffer, the beat register, R-1 more phases of that beat, the MACs,
        the accumulator, the requantizers and the activation."""
        return 2 + (self.reuse - 1) + self.mac_latency + 1 + self.post_latency

    @property
    def latency(self):
        """Cycles from a pixel's last input beat taken to its first output beat on ``o``
        (valid), with the sink ready and the queue empty."""
        return self.pixel_latency + self.QUEUE_LATENCY

    @property
    def multipliers(self):
        """Products computed per cycle: ceil(L/R) per filter."""
        return self.slots * self.filters

    @property
    def real_multipliers(self):
        """Multipliers built as such (DSP blocks on a target); none with constant products."""
        return 0 if self.constant_products else self.multipliers

    @property
    def cycles_per_pixel(self):
        """Sustained cycles per pixel: G beats of R cycles in, F/Q beats out."""
        return max(self.phases, self.out_beats)

    def cycles_per_frame(self, pixels):
        """Sustained cycles for ``pixels`` pixels back to back (plus ``latency`` once)."""
        return pixels * self.cycles_per_pixel


def _as_plan(plan, kwargs):
    """The stage's plan: ``plan`` itself, or the PointwisePlan of the arguments given."""
    if plan is None:
        return PointwisePlan(**kwargs)
    if kwargs or not isinstance(plan, PointwisePlan):
        raise TypeError("PointwiseStage takes a PointwisePlan, or the arguments of one")
    return plan


#: The plan's parameters and figures that the stage shows as its own.
_PLAN_NAMES = ("channels", "filters", "in_lanes", "out_lanes", "reuse", "mid", "pointwise",
               "bias", "accum", "output", "activation", "target", "weights", "use_bias",
               "kernel_raw", "bias_raw", "groups", "phases", "slots", "out_beats",
               "accumulator", "load_width", "load_values", "queue_depth", "constant_products",
               "slot_weights", "mac_latency", "post_latency", "pixel_latency", "latency",
               "multipliers", "real_multipliers", "cycles_per_pixel", "cycles_per_frame")


class PointwiseStage(wiring.Component):
    """Per pixel, for each filter f: ``sum_k v[k] * kernel[k, f]`` over the C*M values of
    the pixel (exact), plus ``bias[f]`` at the accumulator's binary point, then the
    accumulator format if given, the activation and the output format.

    ::

        i -> skid -> beat register (R phases) -> MacArray x F -> accumulator over the G*R
             phases of a pixel -> [Requantizer (accum)] -> Activation -> Requantizer
             (output) -> output queue (one entry per pixel) -> F/Q beats -> skid -> o

    A pixel arrives as G = C*M / L input beats of L lanes (lane l of beat g is value
    g*L + l).  Each beat is held for R phases (``reuse``); in phase r, multiplier slot s of
    filter f takes lane s*R + r, so each filter has ceil(L/R) multipliers and the stage takes
    one beat every R cycles.  The accumulator starts each pixel from the bias and adds a
    partial sum per phase; the MAC pipeline never stalls.  A pixel's result leaves as F/Q
    beats of Q lanes (lane q of beat j is filter j*Q + q).  Credits (one output queue entry
    per pixel) let the last beat of a pixel in only when its entry has a place, so
    ``o.ready`` reaches only the output skid buffer and the serializer, and ``i.ready`` is
    a flip-flop of the input skid buffer.

    Cycles: ``cycles_per_pixel`` = max(G*R, F/Q) per pixel sustained (one input beat per
    cycle for R = 1 and F/Q <= G), so N pixels back to back take N*max(G*R, F/Q) cycles
    plus ``latency`` (a pixel's last beat taken to its first output beat) and F/Q - 1.
    Constant weights with G*R = 1 are shift-and-add logic (no multipliers); otherwise each
    multiplier's weight is a table of G*R constants selected by the phase, or with
    ``weights="port"`` a memory word (see ``_PortWeights`` for the load's order).

    Framing: ``first`` (start of frame) belongs on a pixel's first beat and ``last`` (end of
    row) on its last; an output pixel's first beat carries the ``first`` of its input pixel,
    its last beat the ``last``.  A ``first`` on any other beat starts a new pixel there (the
    partial pixel before it is dropped) and sets ``error``; a ``last`` on another beat sets
    ``error`` and is ignored.  The stage never waits for a beat that may not come.

    Parameters
    ----------
    plan : PointwisePlan
        Or the keyword arguments of ``PointwisePlan``, from which one is made.

    Members
    -------
    plan : PointwisePlan
        Also the source of the parameters and figures the stage shows as its own
        (``filters``, ``out_beats``, ``latency``, ``multipliers``, ``load_values``, ...).
    i : In(stream.Signature(pixel_beat(format_shape(mid), in_lanes)))
    o : Out(stream.Signature(pixel_beat(format_shape(output), out_lanes)))
    error : Out(1)
        Sticky until reset: a malformed input stream or weight load was seen.
    load : In(stream.Signature(StructLayout({"value": load_width, "last": 1})))
        ``weights="port"`` only: ``load_values`` raw values per load, the kernel (C*M, F)
        in Keras order then the bias, ``last`` on the final one.
    pending : Out(1)
        ``weights="port"`` only: a complete load waits for the next start of frame.
    """

    def __new__(cls, plan=None, **kwargs):
        # checked before the object exists, so a refused stage is no unused elaboratable
        _as_plan(plan, kwargs)
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, plan=None, **kwargs):
        self.plan = plan = _as_plan(plan, kwargs)
        for name in _PLAN_NAMES:
            setattr(self, name, getattr(plan, name))
        members = {
            "i": In(stream.Signature(pixel_beat(format_shape(plan.mid), plan.in_lanes))),
            "o": Out(stream.Signature(pixel_beat(format_shape(plan.output), plan.out_lanes))),
            "error": Out(1),
        }
        if plan.weights == "port":
            members["load"] = In(stream.Signature(data.StructLayout(
                {"value": plan.load_width, "last": 1})))
            members["pending"] = Out(1)
        super().__init__(members)

    # -- hardware ---------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        m.submodules.queue = queue = OutputQueue(
            data.StructLayout({"data": data.ArrayLayout(format_shape(self.output),
                                                        self.filters),
                               "first": 1, "last": 1}), self.queue_depth)
        beat, port = self._intake(m, queue)
        macs = self._macs(m, beat, port)
        flags = _delayed(m, [beat.valid, beat.first, beat.last, beat.frame_first,
                             beat.row_last, beat.bank],
                         ("valid", "first", "last", "frame_first", "row_last", "bank"),
                         self.mac_latency, "_")
        outputs, done_flags = self._sums(m, macs, flags, port)
        done, done_first, done_last = _delayed(m, done_flags, ("done", "first", "last"),
                                               self.post_latency, "_post")

        # -- output: the queue (never refuses: credits), F/Q beats per entry, the skid
        m.d.comb += queue.i.valid.eq(done)
        for f, value in enumerate(outputs):
            m.d.comb += queue.i.payload.data[f].eq(value)
        m.d.comb += [queue.i.payload.first.eq(done_first), queue.i.payload.last.eq(done_last)]
        m.submodules.skid = skid = SkidBuffer(self.o.payload.shape())
        self._serialize(m, queue.o, skid.i)
        wiring.connect(m, skid.o, wiring.flipped(self.o))
        return m

    def _intake(self, m, queue):
        """The input side: a skid buffer, the held beat and its phase, the group count,
        the credit check and the framing check.  Returns the held beat's registers and phase
        flags, and the port weights' reads (None with constant weights)."""
        G, R = self.groups, self.reuse
        # a skid buffer at the input: ``i.ready`` is a flip-flop, and the accept logic
        # below (behind the held register's enables) stays next to the stage
        m.submodules.in_skid = in_skid = SkidBuffer(self.i.payload.shape())
        wiring.connect(m, wiring.flipped(self.i), in_skid.i)
        source = in_skid.o
        held = Signal.like(self.i.payload.data, name="held", reset_less=True)
        active = Signal()                       # a beat is held
        phase_r = Signal(range(max(R, 2)))      # its phase
        held_group = Signal(range(max(G, 2)))   # its group within the pixel
        held_first = Signal()                   # it starts a frame (and its pixel)
        held_last = Signal()                    # it ends a row (and its pixel)
        held_ends = Signal()                    # it is the last beat of its pixel

        take = Signal()
        # the group of the next beat; a start of frame is group 0 whatever the count says
        group = Signal(range(max(G, 2)), name="group")
        at_last_group = Signal(init=G == 1, name="at_last_group")   # group == G-1
        starts = source.payload.first
        eff_group = Mux(starts, 0, group)
        eff_last = Mux(starts, G == 1, at_last_group)
        with m.If(take):
            with m.If(eff_last):
                m.d.sync += [group.eq(0), at_last_group.eq(G == 1)]
            with m.Else():
                m.d.sync += [group.eq(eff_group + 1), at_last_group.eq(eff_group == G - 2)]

        has_credit = self._credit_check(m, queue, take & eff_last)
        open_ = ~active | (phase_r == R - 1)
        m.d.comb += [
            source.ready.eq(open_ & (~at_last_group | has_credit)),
            take.eq(source.valid & source.ready),
        ]

        # port weights: the bank of each held beat (a start of frame takes a pending load)
        held_bank = Signal()
        port = self._port_weights(m, take, starts, held_bank) if self.weights == "port" \
            else None

        # the held value loads whenever a beat may be taken, taken or not (``active`` says
        # whether it is one): its wide enable is a gate on flip-flops, not the handshake
        with m.If(open_):
            m.d.sync += held.eq(source.payload.data)
        with m.If(take):
            m.d.sync += [active.eq(1), phase_r.eq(0),
                         held_group.eq(eff_group), held_first.eq(starts),
                         held_last.eq(source.payload.last & eff_last), held_ends.eq(eff_last)]
        with m.Elif(active & (phase_r != R - 1)):
            m.d.sync += phase_r.eq(phase_r + 1)
        with m.Elif(active):
            m.d.sync += active.eq(0)
        # a start of frame inside a pixel, or an end of row on a beat that does not end its
        # pixel: the stream is malformed
        with m.If(take & ((starts & (group != 0)) | (source.payload.last & ~eff_last))):
            m.d.sync += self.error.eq(1)

        # this cycle's phase: the first or the last of a pixel
        beat = SimpleNamespace(
            held=held, phase=phase_r, group=held_group, bank=held_bank, valid=active,
            first=active & (held_group == 0) & (phase_r == 0),
            last=active & held_ends & (phase_r == R - 1),
            frame_first=held_first, row_last=held_last)
        return beat, port

    def _credit_check(self, m, queue, taken):
        """Credits: a place in the queue for every pixel whose last beat was ``taken``.  A
        taken entry's place comes back a cycle later, from a register.  The queue holds
        depth + 1 (one in its output register); depth is used.  Returns "credits >= 1" a
        cycle ahead, registered (so the ready is a gate on flip-flops): at least 2 now, or 1
        and none taken now, or a place coming back now that covers this cycle's take (a
        lower bound: it may say no where a place is free)."""
        credits = Signal(range(self.queue_depth + 1), init=self.queue_depth)
        pop = Signal()
        m.d.sync += pop.eq(queue.o.valid & queue.o.ready)
        has_credit = Signal(init=self.queue_depth > 0)
        m.d.sync += has_credit.eq(credits[1:].any() | (credits[0] & ~taken)
                                  | (pop & (~taken | credits.any())))
        m.d.sync += credits.eq(credits - taken + pop)
        return has_credit

    def _macs(self, m, beat, port):
        """One MAC array per filter: slot s of filter f takes lane s*R + r in phase r."""
        G, R = self.groups, self.reuse
        x_shape = format_shape(self.mid)
        w_shape = format_shape(self.pointwise)
        r_bits = len(beat.phase) if R > 1 else 0
        g_bits = len(beat.group) if G > 1 else 0
        lanes_of = [self._lane_select(beat.held, s, R, beat.phase, r_bits)
                    for s in range(self.slots)]
        product_frac = self.mid.frac + self.pointwise.frac
        acc_fmt = self.accumulator
        macs = []
        for f in range(self.filters):
            mac = MacArray(self.slots, x_shape, w_shape, format_shape(self.bias),
                           acc_fmt.width, product_shift=acc_fmt.frac - product_frac,
                           weights=self.slot_weights(f), target=self.target)
            mac.pad_to(self.mac_latency)
            m.submodules[f"mac{f}"] = mac
            for s in range(self.slots):
                m.d.comb += mac.x[s].eq(lanes_of[s])
                if port is not None:
                    m.d.comb += mac.w[s].eq(port.kernel(s, f))
                elif not self.constant_products:
                    m.d.comb += mac.w[s].eq(self._weight_table(f, s, beat.group, beat.phase,
                                                               g_bits, r_bits, w_shape))
            m.d.comb += mac.b.eq(0)
            macs.append(mac)
        return macs

    def _sums(self, m, macs, flags, port):
        """The accumulators over the phases of a pixel, with the bias, then each filter's
        conversion to the output; returns the outputs and ``done`` (a complete sum) with its
        first/last flags."""
        valid, first, last, frame_first, row_last, bank = flags
        acc_fmt = self.accumulator
        done = Signal()
        done_first, done_last, pixel_first = Signal(), Signal(), Signal()
        m.d.sync += [done.eq(valid & last), done_last.eq(row_last),
                     done_first.eq(Mux(first, frame_first, pixel_first))]
        with m.If(valid & first):
            m.d.sync += pixel_first.eq(frame_first)
        outputs = []
        bias_shift = acc_fmt.frac - self.bias.frac
        for f, mac in enumerate(macs):
            total = Signal(mac.acc.shape(), name=f"sum{f}", reset_less=True)
            bias = (Const(int(self.bias_raw[f]), format_shape(self.bias)) if port is None
                    else port.bias(f, bank))
            if self.phases == 1:
                # every phase is a whole pixel: no select and no enable (``first`` and
                # ``valid`` would reach every bit of every sum)
                m.d.sync += total.eq((bias << bias_shift) + mac.acc)
            else:
                with m.If(valid):
                    m.d.sync += total.eq(Mux(first, bias << bias_shift, total) + mac.acc)
            outputs.append(self._convert(m, f, total, acc_fmt.frac))
        return outputs, [done, done_first, done_last]

    def _port_weights(self, m, take, starts, held_bank):
        """Weights loaded through ``load``: two banks of kernel memories (one per multiplier
        slot, a word of F weights per phase) and bias registers.  Returns the reads."""
        return _PortWeights(self, m, take, starts, held_bank)

    @staticmethod
    def _lane_select(held, slot, R, phase_r, r_bits):
        """Lane ``slot*R + r`` of the held beat in phase r (zero past the last lane)."""
        lanes = len(held)
        options = [held[slot * R + r] if slot * R + r < lanes else 0 for r in range(R)]
        return _by_index(phase_r, options, r_bits) if r_bits else options[0]

    def _weight_table(self, f, slot, group, phase_r, g_bits, r_bits, w_shape):
        """Filter f's weight for multiplier ``slot`` in the held beat's group and phase."""
        L, R = self.in_lanes, self.reuse

        def weight(g, r):
            lane = slot * R + r
            value = int(self.kernel_raw[g * L + lane, f]) if lane < L else 0
            return Const(value, w_shape)

        per_group = [_by_index(phase_r, [weight(g, r) for r in range(R)], r_bits)
                     if r_bits else weight(g, 0) for g in range(self.groups)]
        return _by_index(group, per_group, g_bits) if g_bits else per_group[0]

    def _convert(self, m, f, value, frac):
        """Accumulator format (if given), activation, output format: the one place that
        builds the requantizer and activation stages."""
        shape = value.shape()
        if self.accum is not None:
            m.submodules[f"accum{f}"] = stage = Requantizer(shape, frac, self.accum)
            m.d.comb += stage.i.eq(value)
            value, shape, frac = stage.o, stage.o.shape(), self.accum.frac
        m.submodules[f"act{f}"] = act = Activation(self.activation, shape, frac)
        m.submodules[f"out{f}"] = out = Requantizer(shape, frac, self.output)
        m.d.comb += [act.i.eq(value), out.i.eq(act.o)]
        return out.o

    def _serialize(self, m, source, sink):
        """Each queue entry (F values) as F/Q beats of Q lanes: ``first`` on the first,
        ``last`` on the last."""
        Q, beats = self.out_lanes, self.out_beats
        if beats == 1:
            m.d.comb += [sink.valid.eq(source.valid), source.ready.eq(sink.ready),
                         sink.payload.first.eq(source.payload.first),
                         sink.payload.last.eq(source.payload.last)]
            for q in range(Q):
                m.d.comb += sink.payload.data[q].eq(source.payload.data[q])
            return
        index, at_last = position_counter(m, beats, sink.valid & sink.ready, "out_beat")
        m.d.comb += [sink.valid.eq(source.valid),
                     source.ready.eq(sink.ready & at_last),
                     sink.payload.first.eq(source.payload.first & (index == 0)),
                     sink.payload.last.eq(source.payload.last & at_last)]
        for q in range(Q):
            m.d.comb += sink.payload.data[q].eq(_by_index(
                index, [source.payload.data[j * Q + q] for j in range(beats)],
                len(index)))


class _PortWeights:
    """The pointwise stage's run-time weights (``weights="port"``).

    A load is the kernel (C*M, F) in Keras order (row k = g*L + l holds the F filters'
    weights of value k), then the F biases (with ``use_bias``), one raw value per beat,
    ``last`` on the final one.  Each row goes to the memory of multiplier slot l // R at
    phase g*R + l % R of the inactive bank, the biases to the inactive bank's registers.  A
    complete load is ``pending`` until the next beat with ``first`` (a frame start) is
    taken: that beat and all after it use the new bank.  A load whose ``last`` is misplaced
    is discarded (``error``).  A new load waits while one is pending and for the pipeline's
    length after a swap (the previous frame's last pixels still read the old bank's bias).

    The kernel memories are read a cycle ahead (the address is the next held phase), so
    their read registers give the weights of the phase in the held register.
    """

    def __init__(self, stage, m, take, starts, held_bank):
        self.stage = stage
        R, F = stage.reuse, stage.filters
        GR = stage.phases
        w_shape, b_shape = format_shape(stage.pointwise), format_shape(stage.bias)
        index_bits = max(GR - 1, 0).bit_length()
        depth = 2 << index_bits                 # address: Cat(phase, bank)

        bank = Signal(name="weight_bank")
        pending = stage.pending
        swap = take & starts & pending
        with m.If(take):
            m.d.sync += held_bank.eq(bank ^ swap)
        with m.If(swap):
            m.d.sync += [bank.eq(~bank), pending.eq(0)]

        # the held phase g*R + r, and g*R of the next beat (no multiplier: counted in R's)
        phase = Signal(range(max(GR, 2)), name="weight_phase")
        group_base = Signal(range(max(GR, 2)), name="group_base")
        next_base = Mux(starts, 0, group_base)
        ends_pixel = Signal()
        m.d.comb += ends_pixel.eq(next_base == GR - R)
        with m.If(take):
            m.d.sync += [phase.eq(next_base),
                         group_base.eq(Mux(ends_pixel, 0, next_base + R))]
        with m.Else():
            m.d.sync += phase.eq(phase + 1)
        read_phase = Mux(take, next_base, phase + 1)
        read_bank = Mux(take, bank ^ swap, held_bank)
        init = self._initial_words(stage, index_bits)
        self.reads = []
        memories = []
        for s in range(stage.slots):
            mem = Memory(shape=data.ArrayLayout(w_shape, F), depth=depth, init=init[s])
            m.submodules[f"kernel{s}"] = mem
            read = mem.read_port()
            m.d.comb += read.addr.eq(Cat(read_phase[:index_bits], read_bank)
                                     if index_bits else read_bank)
            self.reads.append(read)
            memories.append(mem)
        self.bias_banks = [Signal(data.ArrayLayout(b_shape, F), name=f"bias_bank{n}",
                                  init=[int(v) for v in stage.bias_raw] if n == 0 else [],
                                  reset_less=True) for n in range(2)]
        self._loader(m, memories, bank, index_bits)

    @staticmethod
    def _initial_words(stage, index_bits):
        """Bank 0's words: per slot, per phase g*R + r, the F weights of row g*L + s*R + r."""
        G, R, L = stage.groups, stage.reuse, stage.in_lanes
        words = []
        for s in range(stage.slots):
            slot = [[0] * stage.filters for _ in range(2 << index_bits)]
            for g in range(G):
                for r in range(R):
                    lane = s * R + r
                    if lane < L:
                        slot[g * R + r] = [int(v) for v in stage.kernel_raw[g * L + lane]]
            words.append(slot)
        return words

    def kernel(self, slot, f):
        return self.reads[slot].data[f]

    def bias(self, f, bank):
        return Mux(bank, self.bias_banks[1][f], self.bias_banks[0][f])

    def _loader(self, m, memories, bank, index_bits):
        stage = self.stage
        R, L, F = stage.reuse, stage.in_lanes, stage.filters
        load = stage.load
        width = stage.load_width
        accept = load.valid & load.ready
        value, last = load.payload.value, load.payload.last
        # the values of one row (or of the bias), value j at position j
        word = Signal(F * width, name="load_word", reset_less=True)
        with m.If(accept):
            m.d.sync += word.eq(Cat(word[width:], value))

        _, final = position_counter(m, stage.load_values, accept, "load_value",
                                    accept & last)
        ends = accept & (final | last)             # a load ends, complete or not
        _, row_end = position_counter(m, F, accept, "load_filter", ends)
        _, lane_end = position_counter(m, L, accept & row_end, "load_lane", ends)
        _, kernel_end = position_counter(m, stage.channels, accept & row_end, "load_row",
                                         ends)
        in_bias = Signal(name="load_in_bias")
        r = Signal(range(max(R, 2)), name="load_r")
        slot = Signal(range(max(stage.slots, 2)), name="load_slot")
        base = Signal(range(max(stage.phases, 2)), name="load_base")
        with m.If(accept & row_end):
            with m.If(kernel_end):
                m.d.sync += [in_bias.eq(1), r.eq(0), slot.eq(0), base.eq(0)]
            with m.Elif(lane_end):
                m.d.sync += [r.eq(0), slot.eq(0), base.eq(base + R)]
            with m.Elif(r == R - 1):
                m.d.sync += [r.eq(0), slot.eq(slot + 1)]
            with m.Else():
                m.d.sync += r.eq(r + 1)
        with m.If(ends):
            m.d.sync += [in_bias.eq(0), r.eq(0), slot.eq(0), base.eq(0)]

        # writes a cycle after a row's last value, from registers, into the inactive bank
        write_row, write_bias = Signal(), Signal()
        write_slot = Signal.like(slot, name="write_slot")
        write_phase = Signal.like(base, name="write_phase")
        m.d.sync += [write_row.eq(accept & row_end & ~in_bias),
                     write_bias.eq(accept & row_end & in_bias),
                     write_slot.eq(slot), write_phase.eq(base + r)]
        for s, mem in enumerate(memories):
            port = mem.write_port()
            m.d.comb += [port.addr.eq(Cat(write_phase[:index_bits], ~bank) if index_bits
                                      else ~bank),
                         port.data.eq(Cat(word[f * width:f * width + stage.pointwise.width]
                                          for f in range(F))),
                         port.en.eq(write_row & (write_slot == s))]
        with m.If(write_bias):
            for n in range(2):
                with m.If(bank != n):
                    m.d.sync += self.bias_banks[n].eq(
                        Cat(word[f * width:f * width + stage.bias.width] for f in range(F)))

        # complete: the final value carries ``last``; otherwise discarded, with an error
        with m.If(accept & final & last):
            m.d.sync += stage.pending.eq(1)
        with m.If(accept & (final ^ last)):
            m.d.sync += stage.error.eq(1)
        # no new load while one is pending, nor for the pipeline's length after a swap
        quiet = Signal(range(stage.mac_latency + 4), name="load_quiet")
        with m.If(stage.pending):
            m.d.sync += quiet.eq(stage.mac_latency + 3)
        with m.Elif(quiet != 0):
            m.d.sync += quiet.eq(quiet - 1)
        m.d.comb += load.ready.eq(~stage.pending & (quiet == 0))


def _delayed(m, flags, names, stages, suffix):
    """``flags`` through ``stages`` registers each, named ``{name}{suffix}{stage}``."""
    for stage in range(stages):
        delayed = [Signal(name=f"{n}{suffix}{stage}") for n in names]
        m.d.sync += [d.eq(v) for d, v in zip(delayed, flags)]
        flags = delayed
    return flags
