"""The stream-native depthwise core: lane streams in and out, for Amaranth designs."""

from amaranth.hdl import Cat, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .credits import credit_counter
from .folded_mac import FoldedMacArray
from .framer import InputFramer, beat_layout
from .line_buffer import LineBuffer
from .mac import MacArray, register_chain
from .output_queue import OutputQueue
from .plan import SCAN_DELAY, EnginePlan
from .requantizer import format_shape, output_stages
from .scanner import OutputScanner
from .skid import SkidBuffer
from .start_queue import StartQueue
from .weights import WeightStore

__all__ = ["DepthwiseCore", "lane_beat", "load_layout"]


def lane_beat(fmt, lanes):
    """A stream beat of ``lanes`` values of the format ``fmt``: ``data`` (an ArrayLayout,
    lane 0 in the least significant bits), ``first`` (start of frame), ``last`` (end of
    row)."""
    return beat_layout(data.ArrayLayout(format_shape(fmt), lanes))


def load_layout(plan):
    """A weight load beat: ``value`` (one raw weight or bias, sign-extended to
    ``plan.store.load_width`` bits) and ``last`` (the load's final value)."""
    return data.StructLayout({"value": plan.store.load_width, "last": 1})


def _as_plan(plan, args, kwargs):
    """The core's plan: ``plan`` itself, or the EnginePlan of the arguments given."""
    if not isinstance(plan, EnginePlan):
        return EnginePlan(plan, *args, **kwargs)
    if args or kwargs:
        raise TypeError("DepthwiseCore takes a plan, or the arguments of EnginePlan")
    return plan


class DepthwiseCore(wiring.Component):
    """A streaming, fixed-point DepthwiseConv2D with stream ports, one input beat per cycle
    (every R cycles with ``reuse`` R, on folded MACs).

    ::

        i -> InputFramer -> LineBuffer (taps) -> mask -> MacArray x P*M -> [Requantizer
                 |              ^                          (accum)] -> Activation ->
                 +-> OutputScanner (fires, masks)         Requantizer (output) ->
                                                           OutputQueue -> SkidBuffer -> o

    The framer shifts each accepted beat into the line buffer; the scanner fires an output
    when the shift that completes its window happens (padding is never streamed: padded taps
    are masked), and the MAC pipeline, which never stalls, carries it to the output queue.
    Credits (``hw.credits``) make sure every fired output has a place in that queue, so the
    pipeline never waits on ``o.ready``: the sink's ready reaches the skid buffer's output
    registers, and the input side only through the queue's reads, a cycle late.

    Parameters
    ----------
    plan : EnginePlan
        Or the arguments of ``EnginePlan`` (spec, formats, lanes, kernel_raw, bias_raw,
        weights=, reuse=, target=), from which one is made.

    Members
    -------
    i : In(stream.Signature(lane_beat(formats.input, P)))
        Input pixels in raster order, C/P beats per pixel, exactly H*W*C/P per frame;
        ``first`` on a frame's first beat, ``last`` on the last beat of each row.
    o : Out(stream.Signature(lane_beat(formats.output, P*M)))
        Output pixels, framed the same way; lane q of the beat for channel group g is output
        channel g*P*M + q (Keras order).
    w : In(stream.Signature(load_layout(plan)))
        Weight loads, with ``weights="port"`` only: the kernel flattened in Keras order
        (kh, kw, C, M), then the C*M biases (with a bias), ``last`` on the final value.  A
        complete load is taken by the next frame that starts.
    error : Out(1)
        Sticky until reset: a malformed input frame or weight load was seen.  The core
        resynchronizes on the next start of frame.
    """

    def __new__(cls, plan, *args, **kwargs):
        # checked before the object exists, so a refused core is no unused elaboratable
        _as_plan(plan, args, kwargs)
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, plan, *args, **kwargs):
        self.plan = plan = _as_plan(plan, args, kwargs)
        self.beat_in = lane_beat(plan.formats.input, plan.lanes)
        self.beat_out = lane_beat(plan.formats.output, plan.out_lanes)
        members = {"i": In(stream.Signature(self.beat_in)),
                   "o": Out(stream.Signature(self.beat_out)),
                   "error": Out(1)}
        if plan.weights == "port":
            members["w"] = In(stream.Signature(load_layout(plan)))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        spec, formats, lanes = plan.spec, plan.formats, plan.lanes
        m.submodules.framer = framer = InputFramer(spec, lanes, self.beat_in.members["data"])
        m.submodules.scanner = scanner = OutputScanner(
            spec, lanes, extra=SCAN_DELAY, counter_width=plan.counter_width)
        m.submodules.line_buffer = line_buffer = LineBuffer(
            spec, lanes, formats.input.width, extra=SCAN_DELAY, target=plan.target)
        # one entry more than frames in flight: its room flag is registered (``_control``;
        # docs/timing-closure.md, item 12)
        m.submodules.starts = starts = StartQueue(
            OutputScanner.start_layout(plan.counter_width), plan.frames_in_flight + 1)
        m.submodules.store = store = WeightStore(spec, formats, lanes, plan.kernel_raw,
                                                 plan.bias_raw, mode=plan.weights)
        m.submodules.out_queue = out_queue = OutputQueue(self.beat_out, plan.queue_depth)
        m.submodules.out_skid = skid = SkidBuffer(self.beat_out)
        # parts and registers that the invariants of flows/formal.py read
        self.framer, self.scanner, self.starts = framer, scanner, starts
        self.out_queue, self.out_skid = out_queue, skid

        window, phase = self._control(m, framer, scanner, line_buffer, starts, store,
                                      out_queue)
        masked = self._masked_taps(m, window, line_buffer, store)
        outputs, bias_delay = self._lanes(m, masked, store, phase)
        self._align_bias_reads(m, window, store, bias_delay)

        # flags travel beside the datapath, one register per stage from the window register
        # to the queue
        valid, first, last = window.fire, window.first, window.last
        self.flag_stages = [(valid, first, last)]     # oldest last, for flows/formal.py
        for stage in range(plan.post_latency):
            valid_q, first_q, last_q = (Signal(name=f"{n}_{stage}")
                                        for n in ("valid", "first", "last"))
            m.d.sync += [valid_q.eq(valid), first_q.eq(first), last_q.eq(last)]
            valid, first, last = valid_q, first_q, last_q
            self.flag_stages.append((valid, first, last))

        # -- output side: the queue, then a skid buffer so the sink's ready stays at the edge
        m.d.comb += [
            out_queue.i.valid.eq(valid), out_queue.i.payload.data.eq(Cat(*outputs)),
            out_queue.i.payload.first.eq(first), out_queue.i.payload.last.eq(last),
        ]
        wiring.connect(m, out_queue.o, skid.i)
        wiring.connect(m, skid.o, wiring.flipped(self.o))
        return m

    def _control(self, m, framer, scanner, line_buffer, starts, store, out_queue):
        """The input side: the framer decides on a shift from registers and the input ports
        alone; the scanner sees it a cycle later (``shift_q``), the line buffer a cycle
        later still (``_datapath_lag``).  Returns the window flags and the folded MACs'
        phase (None at full rate)."""
        plan = self.plan
        pos = Signal(plan.counter_width)          # index of the next shift decided
        shift_q = Signal()
        m.d.sync += shift_q.eq(framer.shift)
        with m.If(framer.shift):
            m.d.sync += pos.eq(pos + 1)
        window = self._datapath_lag(m, framer, line_buffer, scanner)
        counter = credit_counter(m, plan.queue_depth, shift=shift_q, fires=scanner.would_fire,
                                 taken=out_queue.o.valid & out_queue.o.ready)
        has_credit = counter.has_credit
        self.credits, self.refund, self.pop = counter.credits, counter.refund, counter.pop

        # "outputs still to come", registered, so the scanner and the start queue stay out
        # of the shift decision's path.  A cycle late, it costs at most one flush shift
        # too many or too late, never a wrong output (docs/timing-closure.md, item 4).
        flush = Signal()
        m.d.sync += flush.eq(scanner.busy | starts.o.valid)
        # "a frame may start", registered: the start queue has room (assuming a start was
        # queued in the cycle it was worked out), and no weight load ended a cycle before
        # (it is pending only a cycle later, and the frame starting now must take it).  The
        # queue's level and the load handshake stay out of the shift decision's logic
        # (docs/timing-closure.md, items 12 and 19).
        start_room = Signal(init=1)
        m.d.sync += start_room.eq(starts.room & ~store.ending)
        first_target = (pos + scanner.first_target)[:plan.counter_width]
        wiring.connect(m, wiring.flipped(self.i), framer.i)
        rate_open, phase = self._rate_gate(m, framer, window)
        m.d.comb += [
            framer.allow.eq(has_credit & rate_open),
            framer.flush.eq(flush),
            framer.start_room.eq(start_room),
            scanner.next_pos.eq(pos), scanner.shift.eq(shift_q),
            starts.i.valid.eq(framer.start),
            starts.i.payload.eq(Cat(first_target, store.pending)),
            store.take.eq(framer.start & store.pending),
            store.swap.eq(window.swap),
        ]
        if plan.weights == "port":
            wiring.connect(m, wiring.flipped(self.w), store.load)
        wiring.connect(m, starts.o, scanner.start)
        with m.If(framer.error | store.error):
            m.d.sync += self.error.eq(1)
        return window, phase

    def _masked_taps(self, m, window, line_buffer, store):
        """One register of all lanes per tap, zero where the window's tap is padding; and
        the kernel read of the window's group and bank."""
        plan = self.plan
        kh, kw = plan.spec.kernel_size
        # samples, weights and biases are sliced straight from flat values: per-lane
        # statements and slices of slices of wide ports cost elaboration time in the
        # number of lanes and the ports' width
        beat_width = plan.lanes * plan.formats.input.width
        taps = Value.cast(line_buffer.taps)
        masked = [Signal(beat_width, name=f"x{t // kw}_{t % kw}", reset_less=True)
                  for t in range(kh * kw)]
        for t in range(kh * kw):
            m.d.sync += masked[t].eq(Mux(window.blank[t], 0,
                                         taps[t * beat_width:(t + 1) * beat_width]))
        m.d.comb += [store.read_group.eq(window.group),
                     store.read_bank.eq(self._window_bank(m, window, store))]
        return masked

    def _lanes(self, m, masked, store, phase):
        """The P*M output lanes: a MAC array each (folded with reuse R), padded to one
        latency, then the accumulator format, activation and output format.  Returns the
        lanes' output values and the MACs' bias delay."""
        plan = self.plan
        spec, formats = plan.spec, plan.formats
        taps, multiplier, in_width = spec.taps, spec.depth_multiplier, formats.input.width
        x_shape = format_shape(formats.input)
        kernel, bias = Value.cast(store.kernel), Value.cast(store.bias)
        w_width, b_width = store.w_shape.width, store.b_shape.width
        acc = plan.accumulator
        product_frac = formats.input.frac + formats.weight.frac
        macs = []
        for p in range(plan.lanes):
            for q in range(p * multiplier, (p + 1) * multiplier):
                shifts = dict(product_shift=acc.frac - product_frac,
                              bias_shift=acc.frac - formats.bias.frac,
                              weights=plan.mac_weights(p, q % multiplier))
                if plan.reuse > 1:
                    mac = FoldedMacArray(taps, plan.reuse, x_shape, store.w_shape,
                                         store.b_shape, acc.width, target=plan.target,
                                         **shifts)
                else:
                    mac = MacArray(taps, x_shape, store.w_shape, store.b_shape, acc.width,
                                   target=plan.target, **shifts)
                macs.append(mac)
        outputs = []
        for p in range(plan.lanes):
            for q in range(p * multiplier, (p + 1) * multiplier):
                mac = macs[q]
                mac.pad_to(plan.mac_latency)
                m.submodules[f"mac{q}"] = mac
                for t in range(taps):
                    m.d.comb += mac.x[t].eq(masked[t][p * in_width:(p + 1) * in_width])
                    if not store.constant:        # constant MACs have their weights built in
                        low = (t * plan.out_lanes + q) * w_width
                        m.d.comb += mac.w[t].eq(kernel[low:low + w_width])
                m.d.comb += mac.b.eq(bias[q * b_width:(q + 1) * b_width])
                if phase is not None:
                    m.d.comb += mac.phase.eq(phase)
                outputs.append(output_stages(m, q, mac.acc, acc.frac, accum=formats.accum,
                                             activation=spec.activation,
                                             output=formats.output))
        return outputs, macs[-1].bias_delay

    def _datapath_lag(self, m, framer, line_buffer, scanner):
        """The datapath runs a cycle behind the control: the line buffer takes each shift,
        and the scanner's window flags reach the masks, a register later than the scanner
        sees them.  So the shift decision and the scanner's registers drive a few
        flip-flops, not the datapath's thousands of enables (docs/timing-closure.md, item
        16).  The datapath's registers (line buffer, masked taps, MACs, requantizers) have
        no reset: only the flags beside them say what is valid (item 13).  Returns the
        window flags."""
        # two registers: the first is the scanner's shift_q again, but without reset, so
        # yosys keeps it apart from shift_q's fan-out
        m.d.comb += [line_buffer.shift.eq(register_chain(m, framer.shift, 2, "shift_data")),
                     line_buffer.data.eq(register_chain(m, framer.data, 2, "data"))]
        # ``blank``: the taps to zero (the mask inverted), so each drives its taps'
        # synchronous resets straight from a flip-flop (docs/timing-closure.md, item 18)
        window = Signal(data.StructLayout({
            "fire": 1, "group": len(scanner.group), "blank": len(scanner.mask),
            "first": 1, "last": 1, "swap": 1}), name="window")
        m.d.sync += [window.fire.eq(scanner.fire), window.group.eq(scanner.group),
                     window.blank.eq(~scanner.mask), window.first.eq(scanner.first),
                     window.last.eq(scanner.last), window.swap.eq(scanner.swap)]
        return window

    def _rate_gate(self, m, framer, window):
        """Reuse R: a shift at most every R cycles, so the taps of each window stay put for
        the R phases of the folded MACs.  Returns ``(open, phase)``: "a shift may happen",
        and the phase of the masked taps (0 in the cycle a window reaches them); at full
        rate ``(1, None)``."""
        reuse = self.plan.reuse
        if reuse == 1:
            return 1, None
        wait = Signal(range(reuse), name="reuse_wait")   # cycles until the next shift
        is_open = Signal(init=1, name="reuse_open")   # wait == 0, registered (framer's path)
        with m.If(framer.shift):
            m.d.sync += [wait.eq(reuse - 1), is_open.eq(0)]
        with m.Elif(wait != 0):
            m.d.sync += [wait.eq(wait - 1), is_open.eq(wait == 1)]
        # a window fires the cycle its taps arrive, and is masked into registers a cycle later
        phase = Signal(range(reuse), name="reuse_phase")
        m.d.sync += phase.eq(Mux(window.fire | (phase == reuse - 1), 0, phase + 1))
        return is_open, phase

    def _window_bank(self, m, window, store):
        """The weight bank of the window in the MACs.  With reuse R its kernel is read for
        R cycles, and a bank swap (new weights for the next frame) may come a cycle after
        the last window of a frame fires: keep that window's bank until the next fire."""
        if self.plan.reuse == 1:
            return store.bank
        held = Signal(name="reuse_bank")
        with m.If(window.fire):
            m.d.sync += held.eq(store.bank)
        return Mux(window.fire, store.bank, held)

    def _align_bias_reads(self, m, window, store, bias_delay):
        """Read each output's bias so it reaches the MAC's last adder with its sums."""
        group, bank = window.group, store.bank
        for stage in range(bias_delay):
            group_q, bank_q = Signal.like(group, name=f"bias_group_{stage}"), Signal(
                name=f"bias_bank_{stage}")
            m.d.sync += [group_q.eq(group), bank_q.eq(bank)]
            group, bank = group_q, bank_q
        m.d.comb += [store.bias_group.eq(group), store.bias_bank.eq(bank)]
