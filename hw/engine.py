"""The engine top: AXI4-Stream video in, depthwise convolution, AXI4-Stream video out."""

from amaranth.hdl import Cat, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .activation import Activation
from .folded_mac import FoldedMacArray, check_reuse
from .framer import InputFramer, beat_layout
from .limits import check_buildable
from .line_buffer import LineBuffer, storage_words
from .mac import MacArray, register_chain
from .output_queue import OutputQueue
from .requantizer import Requantizer, format_shape
from .scanner import OutputScanner
from .skid import SkidBuffer
from .start_queue import StartQueue
from .weights import WeightStore

__all__ = ["DepthwiseEngine"]

#: Beats of delay between the newest beat and the line buffer taps: time for a frame's start
#: to reach the scanner before that frame's first output can fire.
SCAN_DELAY = 2


class DepthwiseEngine(wiring.Component):
    """A streaming, fixed-point DepthwiseConv2D, one input beat per cycle (every R cycles
    with ``reuse`` R, on folded MACs).

    ::

        s_axis -> InputFramer -> LineBuffer (taps) -> mask -> MacArray x P*M -> [Requantizer
                       |              ^                          (accum)] -> Activation ->
                       +-> OutputScanner (fires, masks)         Requantizer (output) ->
                                                                 output queue -> m_axis

    The framer shifts each accepted beat into the line buffer; the scanner fires an output
    when the shift that completes its window happens (padding is never streamed: padded taps
    are masked), and the MAC pipeline, which never stalls, carries it to the output queue.
    Credits make sure every fired output has a place in that queue, so ``m_axis_tready`` only
    reaches the queue and the input side's ready.

    Parameters
    ----------
    spec : LayerSpec
    formats : LayerFormats
    lanes : int
        P, input channels per beat; must divide C.  Output beats carry P*M lanes.
    kernel_raw, bias_raw : ndarray of int
        Quantized weights (kh, kw, C, M) and bias (C*M,), from the golden model.
    weights : "const" or "port"
        Built-in constants, or run-time loads through ``w_axis_*`` (Keras order, one raw
        value per beat, sign-extended to the wider of the weight and bias formats).
    target : None, "ecp5" or "ice40"
        FPGA family whose DSP blocks the multipliers use (``hw.multiplier``); None is
        portable Verilog.  Cycle counts and results are the same for every target.
    reuse : int
        R, 1 to kh*kw: one input beat every R cycles, each output's kh*kw products on
        ceil(kh*kw/R) multipliers (``FoldedMacArray``) instead of kh*kw (``MacArray``).

    Members
    -------
    s_axis_tdata, s_axis_tvalid, s_axis_tuser, s_axis_tlast : In; s_axis_tready : Out
        P lanes of the input format, lane 0 in the least significant bits.  ``tuser`` marks
        the first beat of a frame, ``tlast`` the last beat of each row.
    m_axis_tdata, m_axis_tvalid, m_axis_tuser, m_axis_tlast : Out; m_axis_tready : In
        P*M lanes of the output format; lane q of the beat for channel group g is output
        channel g*P*M + q (Keras order).
    w_axis_tdata, w_axis_tvalid, w_axis_tlast : In; w_axis_tready : Out
        Weight loads, with ``weights="port"`` only.
    error : Out
        Sticky until reset: a malformed input frame or weight load was seen.
    """

    # Reports build engines just to read their figures (latency, storage, multipliers), so an
    # engine that is never elaborated is not a forgotten submodule: no "never used" warning.
    _MustUse__silence = True

    def __init__(self, spec, formats, lanes, kernel_raw, bias_raw, *, weights="const",
                 reuse=1, target=None):
        spec.check_lanes(lanes)
        self.target = target
        self.reuse = check_reuse(reuse, spec.taps)
        check_buildable(spec, formats, lanes, reuse=reuse, weights=weights, extra=SCAN_DELAY)
        self.spec, self.formats, self.lanes, self.weights = spec, formats, lanes, weights
        self.store = WeightStore(spec, formats, lanes, kernel_raw, bias_raw, mode=weights)
        self.groups = spec.channels // lanes
        self.accumulator = formats.exact_accumulator(spec.taps)
        self.in_width = formats.input.width
        self.out_lanes = lanes * spec.depth_multiplier
        members = {
            "s_axis_tdata": In(lanes * formats.input.width),
            "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "s_axis_tuser": In(1), "s_axis_tlast": In(1),
            "m_axis_tdata": Out(self.out_lanes * formats.output.width),
            "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_axis_tuser": Out(1), "m_axis_tlast": Out(1),
            "error": Out(1),
        }
        if weights == "port":
            members.update({
                "w_axis_tdata": In(self.store.load_width),
                "w_axis_tvalid": In(1), "w_axis_tready": Out(1), "w_axis_tlast": In(1),
            })
        super().__init__(members)
        frame_beats = spec.height * spec.width * self.groups
        last_target = OutputScanner.targets(spec, lanes, SCAN_DELAY)[-1]
        self.counter_width = (last_target + 2).bit_length() + 1
        # frames whose outputs are still to come when another frame starts
        self.frames_in_flight = -(-(last_target + 2) // frame_beats) + 1
        self.latency = 3 + self._post_latency()
        self.queue_depth = 1 << (self.latency + 4).bit_length()

    def _mac_weights(self, p, m):
        """Constant weights of the MAC for lane p and multiplier output m, or None."""
        if not self.store.constant:
            return None
        kh, kw = self.spec.kernel_size
        return [self.store.kernel_raw[t // kw, t % kw, p, m] for t in range(kh * kw)]

    @property
    def mac_latency(self):
        """The MAC arrays' common latency: the longest of them (with constant weights, the
        one whose weights have the most signed digits)."""
        if self.reuse > 1:
            return FoldedMacArray.latency_of(self.spec.taps, self.reuse)
        return max(MacArray.latency_of(self.spec.taps, self._mac_weights(p, m))
                   for p in range(self.lanes) for m in range(self.spec.depth_multiplier))

    def _post_latency(self):
        """Cycles from the masked taps to the output queue's input."""
        accum = Requantizer.latency if self.formats.accum is not None else 0
        return 1 + self.mac_latency + accum + Activation.latency + Requantizer.latency

    @property
    def line_buffer_words(self):
        return storage_words(self.spec, self.lanes, SCAN_DELAY)

    @property
    def multipliers(self):
        return FoldedMacArray.multipliers_of(self.spec.taps, self.reuse) * self.out_lanes

    @property
    def real_multipliers(self):
        """Multipliers built as such (DSP blocks on a target): none where constant weights
        become shift-and-add logic (one channel group, R = 1); folded MACs always have them."""
        return 0 if self.reuse == 1 and self.store.constant else self.multipliers

    def elaborate(self, platform):
        m = Module()
        spec, formats = self.spec, self.formats
        kh, kw = spec.kernel_size
        lanes, multiplier = self.lanes, spec.depth_multiplier
        beat_width = lanes * formats.input.width

        m.submodules.framer = framer = InputFramer(spec, lanes, beat_width)
        m.submodules.scanner = scanner = OutputScanner(
            spec, lanes, extra=SCAN_DELAY, counter_width=self.counter_width)
        m.submodules.line_buffer = line_buffer = LineBuffer(
            spec, lanes, formats.input.width, extra=SCAN_DELAY)
        # one entry more than frames in flight: its room flag is registered (below)
        m.submodules.starts = starts = StartQueue(
            OutputScanner.start_layout(self.counter_width), self.frames_in_flight + 1)
        m.submodules.store = store = self.store
        beat = beat_layout(self.out_lanes * formats.output.width)
        m.submodules.out_queue = out_queue = OutputQueue(beat, self.queue_depth)
        m.submodules.out_skid = skid = SkidBuffer(beat)

        # -- input side.  The framer decides on a shift from registers and the input ports
        # alone; the scanner sees it a cycle later (shift_q), the line buffer a cycle later
        # still (``_datapath_lag``).
        pos = Signal(self.counter_width)          # index of the next shift decided
        shift_q = Signal()
        m.d.sync += shift_q.eq(framer.shift)
        with m.If(framer.shift):
            m.d.sync += pos.eq(pos + 1)
        window = self._datapath_lag(m, framer, line_buffer, scanner)

        # Credits: every shift reserves a place in the output queue, returned a cycle later
        # if it fires nothing; a taken output beat frees one.  A shift is counted a cycle
        # after its decision (shift_q), so the count never waits on the decision (that path
        # limited the clock).  has_credit is registered and assumes the worst about this
        # cycle's decision: after it, one place must be left.
        credits = Signal(range(self.queue_depth + 1), init=self.queue_depth)
        has_credit = Signal(init=1)
        refund = Signal()     # registered, so the scanner's compare stops at a flip-flop
        # a taken output beat's place is returned a cycle later, from a flip-flop (the
        # queue's handshake in front of the counter's carry chain limited the clock)
        pop = Signal()
        m.d.sync += [pop.eq(out_queue.o.valid & out_queue.o.ready),
                     refund.eq(shift_q & ~scanner.would_fire),
                     credits.eq(credits - shift_q + refund + pop),
                     # credits + refund + pop - shift_q >= 2 with no adder behind pop: the
                     # "credits >= k" flags are ORs of its bits (no carry chain)
                     has_credit.eq(credits[2:].any() | credits[:2].all()
                                   | (credits[1:].any() & (~shift_q | refund | pop))
                                   | (credits.any() & ((refund & pop)
                                                       | ((refund | pop) & ~shift_q)))
                                   | (refund & pop & ~shift_q))]

        # "outputs still to come", registered: it reached the shift decision through the
        # scanner and the start queue (a path that limited the clock).  A cycle late, it
        # costs at most one flush shift too many or too late, never a wrong output.
        flush = Signal()
        m.d.sync += flush.eq(scanner.busy | starts.o.valid)
        # "a frame may start", registered: the start queue has room (assuming a start was
        # queued in the cycle it was worked out), and no weight load ended a cycle before
        # (it is pending only a cycle later, and the frame starting now must take it).  The
        # queue's level and the load handshake behind the shift decision limited the clock.
        start_room = Signal(init=1)
        m.d.sync += start_room.eq(starts.room & ~store.ending)
        first_target = (pos + scanner.first_target)[:self.counter_width]
        m.d.comb += [
            framer.i.payload.data.eq(self.s_axis_tdata), framer.i.valid.eq(self.s_axis_tvalid),
            framer.i.payload.first.eq(self.s_axis_tuser),
            framer.i.payload.last.eq(self.s_axis_tlast), self.s_axis_tready.eq(framer.i.ready),
            framer.allow.eq(has_credit & self._rate_gate(m, framer, window)),
            framer.flush.eq(flush),
            framer.start_room.eq(start_room),
            scanner.next_pos.eq(pos), scanner.shift.eq(shift_q),
            starts.i.valid.eq(framer.start),
            starts.i.payload.eq(Cat(first_target, store.pending)),
            store.take.eq(framer.start & store.pending),
            store.swap.eq(window.swap),
        ]
        if self.weights == "port":
            m.d.comb += [
                store.load.payload.value.eq(self.w_axis_tdata),
                store.load.payload.last.eq(self.w_axis_tlast),
                store.load.valid.eq(self.w_axis_tvalid), self.w_axis_tready.eq(store.load.ready),
            ]
        wiring.connect(m, starts.o, scanner.start)
        with m.If(framer.error | store.error):
            m.d.sync += self.error.eq(1)

        # -- datapath: masked taps -> MACs -> accumulator format -> activation -> output
        x_shape = format_shape(formats.input)
        # one register of all lanes per tap, and samples, weights and biases sliced straight
        # from flat ports (per-lane statements, and slices of slices of wide ports, cost
        # elaboration time in the number of lanes and the ports' width)
        taps, kernel, bias = (Value.cast(v) for v in (line_buffer.taps, store.kernel, store.bias))
        masked = [Signal(beat_width, name=f"x{t // kw}_{t % kw}", reset_less=True)
                  for t in range(kh * kw)]
        for t in range(kh * kw):
            m.d.sync += masked[t].eq(Mux(window.blank[t], 0,
                                         taps[t * beat_width:(t + 1) * beat_width]))
        m.d.comb += [store.read_group.eq(window.group),
                     store.read_bank.eq(self._window_bank(m, window, store))]

        acc = self.accumulator
        product_frac = formats.input.frac + formats.weight.frac
        outputs, macs = [], []
        for p in range(lanes):
            for q in range(p * multiplier, (p + 1) * multiplier):
                shifts = dict(product_shift=acc.frac - product_frac,
                              bias_shift=acc.frac - formats.bias.frac,
                              weights=self._mac_weights(p, q % multiplier))
                if self.reuse > 1:
                    mac = FoldedMacArray(kh * kw, self.reuse, x_shape, store.w_shape,
                                         store.b_shape, acc.width,
                                         target=self.target, **shifts)
                else:
                    mac = MacArray(kh * kw, x_shape, store.w_shape, store.b_shape, acc.width,
                                   target=self.target, **shifts)
                macs.append(mac)
        mac_latency = self.mac_latency
        for p in range(lanes):
            for q in range(p * multiplier, (p + 1) * multiplier):
                mac = macs[q]
                mac.pad_to(mac_latency)
                m.submodules[f"mac{q}"] = mac
                w_width, b_width, x_width = store.w_shape.width, store.b_shape.width, self.in_width
                for t in range(kh * kw):
                    m.d.comb += mac.x[t].eq(masked[t][p * x_width:(p + 1) * x_width])
                    if not store.constant:        # constant MACs have their weights built in
                        low = (t * self.out_lanes + q) * w_width
                        m.d.comb += mac.w[t].eq(kernel[low:low + w_width])
                m.d.comb += mac.b.eq(bias[q * b_width:(q + 1) * b_width])
                if self.reuse > 1:
                    m.d.comb += mac.phase.eq(self._phase)
                value, shape, frac = mac.acc, mac.acc.shape(), acc.frac
                if formats.accum is not None:
                    m.submodules[f"accum{q}"] = stage = Requantizer(shape, frac, formats.accum)
                    m.d.comb += stage.i.eq(value)
                    value, shape, frac = stage.o, stage.o.shape(), formats.accum.frac
                m.submodules[f"act{q}"] = act = Activation(spec.activation, shape, frac)
                m.submodules[f"out{q}"] = out = Requantizer(shape, frac, formats.output)
                m.d.comb += [act.i.eq(value), out.i.eq(act.o)]
                outputs.append(out.o)
        self._align_bias_reads(m, window, store, macs[-1].bias_delay)

        # flags travel beside the datapath, one register per stage
        valid, first, last = window.fire, window.first, window.last
        for stage in range(self.latency - 3):
            valid_q, first_q, last_q = (Signal(name=f"{n}_{stage}")
                                        for n in ("valid", "first", "last"))
            m.d.sync += [valid_q.eq(valid), first_q.eq(first), last_q.eq(last)]
            valid, first, last = valid_q, first_q, last_q

        # -- output side: the queue, then a skid buffer so the sink's ready stays at the edge
        m.d.comb += [
            out_queue.i.valid.eq(valid), out_queue.i.payload.data.eq(Cat(*outputs)),
            out_queue.i.payload.first.eq(first), out_queue.i.payload.last.eq(last),
        ]
        wiring.connect(m, out_queue.o, skid.i)
        m.d.comb += [
            skid.o.ready.eq(self.m_axis_tready), self.m_axis_tvalid.eq(skid.o.valid),
            self.m_axis_tdata.eq(skid.o.payload.data),
            self.m_axis_tuser.eq(skid.o.payload.first),
            self.m_axis_tlast.eq(skid.o.payload.last),
        ]
        return m

    def _datapath_lag(self, m, framer, line_buffer, scanner):
        """The datapath runs a cycle behind the control: the line buffer takes each shift,
        and the scanner's window flags reach the masks, a register later than the scanner
        sees them.  So the shift decision and the scanner's registers drive a few
        flip-flops, not the datapath's thousands of enables (that route limited the clock).
        The datapath's registers (line buffer, masked taps, MACs, requantizers) have no
        reset: only the flags beside them say what is valid.  Returns the window flags."""
        # two registers: the first is the scanner's shift_q again, but without reset, so
        # yosys keeps it apart from shift_q's fan-out
        m.d.comb += [line_buffer.shift.eq(register_chain(m, framer.shift, 2, "shift_data")),
                     line_buffer.data.eq(register_chain(m, framer.data, 2, "data"))]
        # ``blank``: the taps to zero (the mask inverted), so each drives its taps'
        # synchronous resets straight from a flip-flop
        window = Signal(data.StructLayout({
            "fire": 1, "group": len(scanner.group), "blank": len(scanner.mask),
            "first": 1, "last": 1, "swap": 1}), name="window")
        m.d.sync += [window.fire.eq(scanner.fire), window.group.eq(scanner.group),
                     window.blank.eq(~scanner.mask), window.first.eq(scanner.first),
                     window.last.eq(scanner.last), window.swap.eq(scanner.swap)]
        return window

    def _rate_gate(self, m, framer, window):
        """Reuse R: a shift at most every R cycles, so the taps of each window stay put for
        the R phases of the folded MACs; sets ``_phase``, the phase of the masked taps (0 in
        the cycle a window reaches them).  Returns the gate's "a shift may happen"."""
        if self.reuse == 1:
            return 1
        wait = Signal(range(self.reuse), name="reuse_wait")   # cycles until the next shift
        is_open = Signal(init=1, name="reuse_open")   # wait == 0, registered (framer's path)
        with m.If(framer.shift):
            m.d.sync += [wait.eq(self.reuse - 1), is_open.eq(0)]
        with m.Elif(wait != 0):
            m.d.sync += [wait.eq(wait - 1), is_open.eq(wait == 1)]
        # a window fires the cycle its taps arrive, and is masked into registers a cycle later
        self._phase = phase = Signal(range(self.reuse), name="reuse_phase")
        m.d.sync += phase.eq(Mux(window.fire | (phase == self.reuse - 1), 0, phase + 1))
        return is_open

    def _window_bank(self, m, window, store):
        """The weight bank of the window in the MACs.  With reuse R its kernel is read for
        R cycles, and a bank swap (new weights for the next frame) may come a cycle after
        the last window of a frame fires: keep that window's bank until the next fire."""
        if self.reuse == 1:
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
