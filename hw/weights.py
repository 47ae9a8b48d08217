"""Kernel and bias storage: constants built in, or banks loaded at run time through a port."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.lib.memory import Memory

from .counter import position_counter
from .requantizer import format_shape

__all__ = ["WeightStore"]


def _word(values, width):
    """Pack raw integers into one memory word, value 0 in the least significant bits."""
    return sum((int(v) & ((1 << width) - 1)) << (n * width) for n, v in enumerate(values))


class WeightStore(wiring.Component):
    """Per channel group: kh*kw weights and one bias for each of the P*M output lanes.

    Output lane q = p*M + m of channel group g uses ``kernel[i, j, g*P + p, m]`` and
    ``bias[(g*P + p)*M + m]``.  With constant weights and one channel group the outputs are
    constants, so synthesis folds them into the multipliers; otherwise each tap has a memory
    of one word per group (P*M weights), read one cycle after ``read_group``.

    In ``port`` mode every memory has two banks.  A load writes the inactive bank from a
    stream of raw values, one per beat, in Keras order: the kernel flattened as
    (kh, kw, C, M), then, with a bias, the C*M biases; ``last`` must mark the last
    value.  A complete load sets ``pending``; the engine hands it to the next frame that
    starts, and ``swap`` (pulsed when that frame's first output is scheduled) makes it the
    active bank.  A new load waits (``load.ready`` low) from the end of a complete load until
    two cycles after its swap: a load is never replaced before a frame has taken it.  A load
    whose ``last`` is misplaced is discarded (``error``).  Values are counted a
    cycle after they are taken, so ``pending`` rises two cycles after the last one: a frame
    that starts in the cycle between would miss the load, so the engine holds frame starts
    in the cycle after ``ending`` (``load.ready`` is low then too).
    Bank 0 starts with the weights the engine was generated with.

    Parameters
    ----------
    spec : LayerSpec
    formats : LayerFormats
    lanes : int
    kernel_raw, bias_raw : ndarray of int
        Quantized weights, (kh, kw, C, M) and (C*M,).
    mode : "const" or "port"

    Members
    -------
    read_group, read_bank : in
        Address of the kernel read.
    kernel : Out(ArrayLayout(ArrayLayout(w_shape, P*M), kh*kw))
        ``kernel[t][q]`` for tap t = i*kw + j, valid one cycle after the read.
    bias_group, bias_bank : in
        Address of the bias read (the kernel read's address, delayed by the engine).
    bias : Out(ArrayLayout(b_shape, P*M)), valid one cycle after its read
    bank : Out(1)
        The active bank.
    swap : In(1)
    load : In(stream.Signature(StructLayout({"value": load_width, "last": 1})))
        The load stream (``port`` mode only), one raw value per beat.
    pending : Out(1)
    ending : Out(1)
        A load's last value is taken this cycle (``port`` mode): ``pending`` rises two
        cycles later, so no frame may start next cycle.
    take : In(1)
        The pending load has been given to a starting frame.
    error : Out(1)
        Pulses when a load ends with ``last`` misplaced; that load is discarded.
    """

    def __init__(self, spec, formats, lanes, kernel_raw, bias_raw, *, mode="const"):
        if mode not in ("const", "port"):
            raise ValueError(f"weights must be 'const' or 'port', not {mode!r}")
        spec.check_lanes(lanes)
        self.spec, self.formats, self.lanes, self.mode = spec, formats, lanes, mode
        self.kernel_raw, self.bias_raw = kernel_raw, bias_raw
        kh, kw = spec.kernel_size
        self.taps, self.groups = kh * kw, spec.channels // lanes
        self.outputs = lanes * spec.depth_multiplier
        self.w_shape = format_shape(formats.weight)
        self.b_shape = format_shape(formats.bias)
        self.load_width = max(formats.weight.width,
                              formats.bias.width if spec.use_bias else 0)
        #: kernel and bias outputs are constants (synthesis folds them into the multipliers)
        self.constant = mode == "const" and self.groups == 1
        group_shape = range(max(self.groups, 2))
        members = {
            "read_group": In(group_shape), "read_bank": In(1),
            "kernel": Out(data.ArrayLayout(data.ArrayLayout(self.w_shape, self.outputs),
                                           self.taps)),
            "bias_group": In(group_shape), "bias_bank": In(1),
            "bias": Out(data.ArrayLayout(self.b_shape, self.outputs)),
            "bank": Out(1), "swap": In(1), "pending": Out(1), "ending": Out(1),
            "take": In(1), "error": Out(1),
        }
        if mode == "port":
            members["load"] = In(stream.Signature(data.StructLayout(
                {"value": self.load_width, "last": 1})))
        super().__init__(members)

    def _group_words(self):
        """Initial memory words: per tap a list over groups, and the bias list over groups."""
        kh, kw = self.spec.kernel_size
        per_group = lambda a: a.reshape(self.groups, self.outputs)
        kernel = [[_word(values, self.w_shape.width)
                   for values in per_group(self.kernel_raw[t // kw, t % kw])]
                  for t in range(self.taps)]
        bias = [_word(values, self.b_shape.width) for values in per_group(self.bias_raw)]
        return kernel, bias

    def elaborate(self, platform):
        m = Module()
        kernel_words, bias_words = self._group_words()
        if self.constant:
            # one constant per port: an assignment per value costs time in its port's width
            m.d.comb += [
                self.kernel.eq(_word(self.kernel_raw.reshape(-1), self.w_shape.width)),
                self.bias.eq(_word(self.bias_raw, self.b_shape.width))]
            return m

        banks = 2 if self.mode == "port" else 1
        depth = banks * self.groups
        address = lambda bank, group: (group if banks == 1 else
                                       bank * self.groups + group)
        w_width, b_width = self.w_shape.width, self.b_shape.width
        kernel_mems, bias_mem = [], None
        for t in range(self.taps):
            mem = Memory(shape=self.outputs * w_width, depth=depth,
                         init=kernel_words[t] + [0] * (depth - self.groups))
            m.submodules[f"kernel{t}"] = mem
            read = mem.read_port()
            m.d.comb += read.addr.eq(address(self.read_bank, self.read_group))
            m.d.comb += self.kernel[t].eq(read.data)    # a word is the lanes' array
            kernel_mems.append(mem)
        bias_mem = Memory(shape=self.outputs * b_width, depth=depth,
                          init=bias_words + [0] * (depth - self.groups))
        m.submodules.bias = bias_mem
        read = bias_mem.read_port()
        m.d.comb += read.addr.eq(address(self.bias_bank, self.bias_group))
        m.d.comb += self.bias.eq(read.data)

        if self.mode == "port":
            self._loader(m, kernel_mems, bias_mem)
        return m

    def _loader(self, m, kernel_mems, bias_mem):
        """Assemble P*M values per word and write them into the inactive bank.

        A load's values are taken and held a cycle (``_intake``), counted by lane, group
        and the whole load, gathered into one word per group and tap, and written
        (``_write_ports``); a complete load is handed to a frame (``_handoff``).  The
        counters have registered "at the last" flags, so the write enables and the "load
        complete" flag sit on flip-flops (docs/timing-closure.md, item 27).  A load's last
        value (``ended``) starts them over; after a complete load they have wrapped to the
        start already."""
        queued = self._handoff(m)
        in_bias = Signal()
        # the tap being loaded, one-hot: a tap's memory is written when its bit is set
        # (docs/timing-closure.md, item 24)
        tap = Signal(self.taps, init=1)
        word = Signal(self.outputs * self.load_width)
        accepted, held_value, ended = self._intake(m, queued)
        values = self.outputs * self.groups * (self.taps + self.spec.use_bias)
        _, last_lane = position_counter(m, self.outputs, accepted, "lane", ended)
        group, last_group = position_counter(m, self.groups, accepted & last_lane, "group",
                                             ended)
        _, final = position_counter(m, values, accepted, "values", ended)
        write_kernel, write_bias = self._write_ports(m, kernel_mems, bias_mem, word, tap,
                                                     group)
        with m.If(accepted):
            m.d.sync += word.eq(Cat(word[self.load_width:], held_value))   # value added
            with m.If(last_lane):
                with m.If(~in_bias):
                    m.d.sync += write_kernel.eq(1)
                with m.Else():
                    m.d.sync += write_bias.eq(1)
                with m.If(last_group):
                    # the next tap; after the last, the first (set again below)
                    m.d.sync += tap.eq(tap.rotate_left(1))
                    with m.If(tap[-1]):
                        m.d.sync += in_bias.eq(1)
        # a load's end, complete or not, starts the taps over (written after the moves above,
        # so it wins); a load is complete if its last value is the final one, and is
        # discarded otherwise
        with m.If(ended | accepted & final):
            m.d.sync += [in_bias.eq(0), tap.eq(1)]
        with m.If(ended & final):
            m.d.sync += self.pending.eq(1)
        m.d.comb += self.error.eq((accepted & final) ^ ended)

    def _handoff(self, m):
        """``pending`` (a complete load waits for a frame) is cleared by ``take``, which
        makes the load ``queued`` until its ``swap`` makes its bank the active one.
        Returns ``queued``."""
        queued = Signal()
        with m.If(self.swap):
            m.d.sync += [self.bank.eq(~self.bank), queued.eq(0)]
        with m.If(self.take):
            m.d.sync += [self.pending.eq(0), queued.eq(1)]
        return queued

    def _intake(self, m, queued):
        """The load stream's handshake.  Each value taken is held a cycle in registers
        before it is counted (``accepted``, ``held_value``), so the counters' enables are
        flip-flops, not the handshake (docs/timing-closure.md, item 11).  ``load.ready`` is
        a register (item 19): low while a load's last value is taken or held (the next beat
        may belong to a load that has to wait) and while a complete load is pending or
        queued, so a new load never races the frame start that takes the pending one.
        That gate on six flip-flops costs a cycle of ready more than needed after a
        discarded load or a swap (item 27).  Returns ``(accepted, held_value, ended)``,
        ``ended``: the held value was a load's last."""
        held = Signal()
        held_value = Signal(self.load_width)
        ready = Signal(init=1)
        ended = Signal()
        handshake = self.load.valid & self.load.ready
        m.d.comb += [self.load.ready.eq(ready),
                     self.ending.eq(handshake & self.load.payload.last)]
        m.d.sync += [held.eq(handshake), ended.eq(self.ending),
                     ready.eq(~self.ending & ~ended & ~self.pending & ~queued)]
        with m.If(handshake):
            m.d.sync += held_value.eq(self.load.payload.value)
        return held, held_value, ended

    def _write_ports(self, m, kernel_mems, bias_mem, word, tap, group):
        """The memories' write ports, driven from registers a cycle after a word's last
        value is taken: the address (the group of that value, in the inactive bank, which
        becomes active only after the frame start the load is handed to), a write flag for
        the kernel and one for the bias, and a copy of the one-hot tap, so each write
        enable is an AND of two flip-flops (docs/timing-closure.md, items 5 and 24).  The
        data is the word itself, which holds its values until the write (item 28).
        Returns the write flags ``(write_kernel, write_bias)``, cleared every cycle unless
        set."""
        write_address = Signal(range(2 * self.groups))
        write_kernel = Signal()
        write_tap = Signal(self.taps)
        write_bias = Signal()
        m.d.sync += [write_kernel.eq(0), write_bias.eq(0), write_tap.eq(tap),
                     write_address.eq((~self.bank) * self.groups + group)]

        def narrow(width):
            """The word's values cut to ``width`` bits each, one per lane."""
            return Cat(word[q * self.load_width:q * self.load_width + width]
                       for q in range(self.outputs))

        for t, mem in enumerate(kernel_mems):
            port = mem.write_port()
            m.d.comb += [port.addr.eq(write_address), port.data.eq(narrow(self.w_shape.width)),
                         port.en.eq(write_kernel & write_tap[t])]
        port = bias_mem.write_port()
        m.d.comb += [port.addr.eq(write_address), port.data.eq(narrow(self.b_shape.width)),
                     port.en.eq(write_bias)]
        return write_kernel, write_bias
