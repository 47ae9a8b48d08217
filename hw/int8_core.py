"""The stream-native int8 core: InputOffset -> DepthwiseCore -> requantizer, for Amaranth."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .core import DepthwiseCore
from .counter import position_counter
from .int8_offset import InputOffset, int8_beat
from .int8_plan import Int8Plan
from .int8_table import table_load_layout

__all__ = ["Int8Core"]


def _as_plan(plan, args, kwargs):
    """The core's plan: ``plan`` itself, or the Int8Plan of the arguments given."""
    if not isinstance(plan, Int8Plan):
        return Int8Plan(plan, *args, **kwargs)
    if args or kwargs:
        raise TypeError("Int8Core takes a plan, or the arguments of Int8Plan")
    return plan


class Int8Core(wiring.Component):
    """A full-integer int8 DEPTHWISE_CONV_2D (LiteRT's integer kernel) with stream ports.

    ::

        i -> InputOffset (x - zp_in) -> DepthwiseCore (exact int32 sums + bias)
          -> Fp32Requantizer or PerChannelRequantizer (zp_out, clamp) -> o

    The stages are joined by ``wiring.connect``: their payloads are the same layouts.
    Padded taps are masked to 0 inside the depthwise core, which is what TFLite's skipped
    taps add.  One input beat per cycle (every R cycles with ``reuse`` R).

    Parameters
    ----------
    plan : Int8Plan
        Or the arguments of ``Int8Plan``, from which one is made.

    Members
    -------
    i : In(stream.Signature(int8_beat(8, P)))
        Input pixels in raster order, C/P beats per pixel, ``first`` on a frame's first
        beat, ``last`` on the last beat of each row.
    o : Out(stream.Signature(int8_beat(8, P*M)))
        Output pixels, framed the same way; lane q of the beat for channel group g is output
        channel g*P*M + q (Keras order).
    w : In(stream.Signature(table_load_layout()))
        Weight loads, with ``weights="port"`` only: ``plan.load_values`` gives the order
        (the requantizer's constants per output channel, the kernel, the bias), one 32-bit
        value per beat, ``last`` on the final one.  A complete load is taken by the next
        frame that starts after it; that frame and the later ones use it throughout.  A
        load's first ``table_values`` go to the requantizer's table, the rest to the
        depthwise core.  A load whose ``last`` is misplaced (early, or missing on its
        final value) is discarded and raises ``error``; the values after a missing
        ``last`` begin the next load.
    error : Out(1)
        Sticky until reset: a malformed input frame or weight load was seen.
    """

    def __new__(cls, plan, *args, **kwargs):
        # checked before the object exists, so a refused core is no unused elaboratable
        _as_plan(plan, args, kwargs)
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, plan, *args, **kwargs):
        self.plan = plan = _as_plan(plan, args, kwargs)
        members = {"i": In(stream.Signature(int8_beat(8, plan.lanes))),
                   "o": Out(stream.Signature(int8_beat(8, plan.out_lanes))),
                   "error": Out(1)}
        if plan.weights == "port":
            members["w"] = In(stream.Signature(table_load_layout()))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        m.submodules.offset = offset = InputOffset(plan.lanes, plan.input_zero_point)
        m.submodules.depthwise = depthwise = DepthwiseCore(plan.depthwise)
        m.submodules.requantizer = requantizer = plan.requantizer()
        wiring.connect(m, wiring.flipped(self.i), offset.i)
        wiring.connect(m, offset.o, depthwise.i)
        wiring.connect(m, depthwise.o, requantizer.i)
        wiring.connect(m, requantizer.o, wiring.flipped(self.o))
        if plan.weights == "port":
            load_error = self._weight_port(m, depthwise, requantizer)
            m.d.comb += self.error.eq(depthwise.error | load_error)
        else:
            m.d.comb += self.error.eq(depthwise.error)
        return m

    def _weight_port(self, m, depthwise, requantizer):
        """Splits each load between the requantizer's table (its first values) and the
        depthwise core (the rest), and makes the table's part take effect at the frame that
        takes the core's.

        The core takes a complete load at the first frame start after the cycle its last
        value is taken (``WeightStore``).  So when the core's part completes, the number of
        frames started until then is the index of the frame that takes it; the requantizer
        counts frames by their first beats and applies its table's load at that one.  The
        table's part is complete before the core's begins, so it is always in place by
        then.  Returns the sticky flag of the load errors the core does not see."""
        plan = self.plan
        table, core_w, w = requantizer.load, depthwise.w, self.w
        in_core = Signal()          # the load's values now go to the depthwise core
        take_table = w.valid & ~in_core & table.ready
        take_core = w.valid & in_core & core_w.ready
        _, table_final = position_counter(m, plan.table_values, take_table, "table_value",
                                          take_table & w.payload.last)
        _, core_final = position_counter(m, plan.depthwise_values, take_core, "core_value",
                                         take_core & w.payload.last)
        m.d.comb += [
            # the table's part ends at its final value (the load goes on to the core)
            table.valid.eq(w.valid & ~in_core), table.payload.value.eq(w.payload.value),
            table.payload.last.eq(w.payload.last | table_final),
            core_w.valid.eq(w.valid & in_core),
            core_w.payload.value.eq(w.payload.value[:len(core_w.payload.value)]),
            core_w.payload.last.eq(w.payload.last),
            w.ready.eq(Mux(in_core, core_w.ready, table.ready)),
        ]
        no_core_part = take_table & table_final & w.payload.last
        with m.If(take_table & table_final & ~w.payload.last):
            m.d.sync += in_core.eq(1)
        # the core's part ends at its last value or its final one; the core discards it
        # (and raises its error) unless both are the same
        core_end = take_core & (w.payload.last | core_final)
        core_complete = take_core & w.payload.last & core_final
        with m.If(core_end):
            m.d.sync += in_core.eq(0)

        # frames started in the core, frames whose first beat reached the requantizer:
        # at most the frames in flight plus those the core's output queue holds lie between
        width = (plan.queue_depth + plan.depthwise.frames_in_flight + 8).bit_length() + 1
        started, arrived, target = (Signal(width, name=n)
                                    for n in ("frames_started", "frames_arrived",
                                              "load_frame"))
        start_now = depthwise.i.valid & depthwise.i.ready & depthwise.i.payload.first
        arrive_now = requantizer.i.valid & requantizer.i.ready & requantizer.i.payload.first
        with m.If(start_now):
            m.d.sync += started.eq(started + 1)
        with m.If(arrive_now):
            m.d.sync += arrived.eq(arrived + 1)
        armed = Signal()            # the table's load waits for the frame ``target``
        apply = Signal()
        m.d.comb += [apply.eq(armed & (arrived == target)), requantizer.apply.eq(apply)]
        with m.If(arrive_now & apply):
            m.d.sync += armed.eq(0)
        with m.If(core_complete):
            m.d.sync += [armed.eq(1), target.eq(started + start_now)]
        # a table load without a complete core part is dropped (the table's ``cancel``)
        m.d.comb += requantizer.cancel.eq(no_core_part | (core_end & ~core_complete))

        error = Signal()
        with m.If(requantizer.error | no_core_part):
            m.d.sync += error.eq(1)
        return error
