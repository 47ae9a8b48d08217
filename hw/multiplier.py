"""One pipelined multiplier, in the form each FPGA family's tools turn into a DSP block.

The latency is the same for every target (``Multiplier.LATENCY``), so a design's cycle
counts, and thus every simulation of it, do not depend on the target it is built for.
"""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Shape, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Multiplier", "TARGETS", "product_shape", "constant_sum"]

#: Targets a design can be specialized for; ``None`` is portable Verilog (no vendor cells).
TARGETS = (None, "ecp5", "ice40")

#: target -> (primitive, widest operand, widest product) of its DSP block
_PRIMITIVES = {
    "ecp5": ("MULT18X18D", 18, 36),
    "ice40": ("SB_MAC16", 16, 32),
}


def product_shape(a_shape, b_shape):
    """The exact shape of ``a * b`` (Amaranth's rule: widths add, and a mixed-sign product
    extends its unsigned operand by a bit)."""
    a_shape, b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
    return (Signal(a_shape) * Signal(b_shape)).shape()


def _bounds(shape):
    shape = Shape.cast(shape)
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


def _holding(low, high):
    """The narrowest shape that holds every integer from ``low`` to ``high``."""
    return Shape.cast(range(low, high + 1)) if low < high else Shape.cast(range(low, low + 2))


def constant_sum(m, samples, digits, levels, name):
    """A sum of constant multiples of ``samples`` as shifted copies of them, in a pipeline.

    ``digits`` lists the terms ``(t, shift, sign)``: ``samples[t] << shift``, added for
    sign +1 and subtracted for -1 (a constant weight's signed digits).  Returns ``(plus,
    minus)``, the sums of the two kinds of terms after exactly ``levels`` register stages
    (each at least as many as a binary tree of its terms needs), so that the weighted sum is
    ``plus - minus``.  Every value is exact: each tree node is as wide as the range of its
    terms needs, a shifted copy is the sample with zeros below it (wiring, no shifter), and
    each level of both trees is one register, so the netlist holds one adder per node and few
    signals (the elaboration time of layers with thousands of constant products is in
    their cells, signals and statements).
    """
    trees = []            # per tree, its nodes: (value, low, high)
    for sign in (1, -1):
        nodes = []
        for t, shift, digit in digits:
            if digit != sign:
                continue
            sample = samples[t]
            low, high = _bounds(sample.shape())
            value = sample if shift == 0 else Cat(Const(0, shift), sample)
            if shift and sample.shape().signed:
                value = value.as_signed()
            nodes.append((value, low << shift, high << shift))
        trees.append(nodes)
    for level in range(levels):
        # both trees' nodes of a level in one register
        summed = []
        for nodes in trees:
            pairs = []
            for n in range(0, len(nodes), 2):
                if n + 1 < len(nodes):
                    (a, a_low, a_high), (b, b_low, b_high) = nodes[n], nodes[n + 1]
                    pairs.append((a + b, a_low + b_low, a_high + b_high))
                else:
                    pairs.append(nodes[n])
            summed.append(pairs)
        shapes = [[_holding(low, high) for _, low, high in pairs] for pairs in summed]
        width = sum(shape.width for tree in shapes for shape in tree)
        if not width:
            break
        register = Signal(width, name=f"{name}{level}", reset_less=True)
        m.d.sync += register.eq(Cat(value[:shape.width]
                                    for pairs, tree in zip(summed, shapes)
                                    for (value, _, _), shape in zip(pairs, tree)))
        trees, offset = [], 0
        for pairs, tree in zip(summed, shapes):
            nodes = []
            for (_, low, high), shape in zip(pairs, tree):
                value = register[offset:offset + shape.width]
                nodes.append((value.as_signed() if shape.signed else value, low, high))
                offset += shape.width
            trees.append(nodes)
    assert all(len(nodes) <= 1 for nodes in trees), "too few levels for the terms"
    return tuple(nodes[0][0] if nodes else Const(0, 1) for nodes in trees)


class Multiplier(wiring.Component):
    """``p = a * b``, exact, ``LATENCY`` cycles after ``a`` and ``b``, one product per cycle.

    It never stalls and has no enable: a caller that needs a valid flag delays it by
    ``LATENCY`` cycles beside the product.  Every target has the same five register stages::

        a, b -> fabric reg -> input reg -> [*] -> pipeline reg -> output reg -> fabric reg -> p

    - ``None`` (portable): plain registers around ``*``.  Vendor tools that absorb registers
      into DSP blocks (Vivado, Quartus, Radiant) find their input, pipeline and output
      registers in it; the fabric registers on both sides let the block sit away from its
      neighbours without a long route in a timed path.
    - ``"ecp5"``: a MULT18X18D instance with its input (A, B), pipeline and output registers
      on CLK0 (yosys's ``synth_ecp5`` keeps every register in fabric when it infers one).
    - ``"ice40"``: an SB_MAC16 instance with A_REG/B_REG, the 8x8 and both 16x16 pipeline
      registers; its output is the registered 16x16 product (``synth_ice40 -dsp``, which
      absorbs registers by itself, produced wrong netlists with yosys 0.70).

    An operand or product wider than the target's block (18x18 -> 36 bits on ECP5, 16x16 ->
    32 on iCE40) falls back to the portable form; ``primitive`` is then None and ``note``
    says why (the synthesis report shows it).

    Parameters
    ----------
    a_shape, b_shape : Shape
        Operands, signed or unsigned.
    target : None, "ecp5" or "ice40"

    Members
    -------
    a : In(a_shape)
    b : In(b_shape)
    p : Out(product_shape(a_shape, b_shape))
    """

    #: cycles from ``a``/``b`` to ``p``, for every target
    LATENCY = 5

    def __new__(cls, *args, target=None, **kwargs):
        # checked before the object exists, so a refused multiplier is no unused elaboratable
        if target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(map(repr, TARGETS))}, "
                             f"not {target!r}")
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, a_shape, b_shape, *, target=None):
        a_shape, b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        self.target = target
        self.latency = self.LATENCY
        self.primitive, self.note = self.primitive_for(a_shape, b_shape, target)
        super().__init__({"a": In(a_shape), "b": In(b_shape),
                          "p": Out(product_shape(a_shape, b_shape))})

    @staticmethod
    def primitive_for(a_shape, b_shape, target):
        """(DSP primitive or None, note or None) for a product of these operands."""
        if target is None:
            return None, None
        primitive, operand, product = _PRIMITIVES[target]
        a_shape, b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        width = product_shape(a_shape, b_shape).width
        if max(a_shape.width, b_shape.width) > operand or width > product:
            return None, (f"{a_shape.width}x{b_shape.width}-bit products do not fit "
                          f"{primitive} ({operand}x{operand}): portable multipliers instead")
        return primitive, None

    def elaborate(self, platform):
        m = Module()
        # fabric registers before the block: its inputs start at a flip-flop next to it
        a_q = Signal.like(self.a, name="a_q", reset_less=True)
        b_q = Signal.like(self.b, name="b_q", reset_less=True)
        m.d.sync += [a_q.eq(self.a), b_q.eq(self.b)]
        # the block's output register; like every datapath register, without reset
        product = Signal(self.p.shape(), name="product", reset_less=True)
        if self.primitive == "MULT18X18D":
            self._mult18x18d(m, a_q, b_q, product)
        elif self.primitive == "SB_MAC16":
            self._sb_mac16(m, a_q, b_q, product)
        else:
            a_in = Signal.like(self.a, name="a_in", reset_less=True)
            b_in = Signal.like(self.b, name="b_in", reset_less=True)
            piped = Signal(self.p.shape(), name="piped", reset_less=True)
            m.d.sync += [a_in.eq(a_q), b_in.eq(b_q), piped.eq(a_in * b_in),
                         product.eq(piped)]
        # fabric register after the block
        p_q = Signal(self.p.shape(), name="p_q", reset_less=True)
        m.d.sync += p_q.eq(product)
        m.d.comb += self.p.eq(p_q)
        return m

    @staticmethod
    def _extend(value, width):
        """``value`` sign- or zero-extended to ``width`` bits, as a flat bit vector."""
        wide = Signal(signed(width) if value.shape().signed else unsigned(width))
        return wide, wide.eq(value)

    def _block_pins(self, m, a_q, b_q, operand_width, product, name, width):
        """The block's operand pins (``a_q``, ``b_q`` extended to ``operand_width`` bits) and
        its product pins, ``width`` bits named ``name``, whose low bits are ``product``."""
        a, a_eq = self._extend(a_q, operand_width)
        b, b_eq = self._extend(b_q, operand_width)
        pins = Signal(width, name=name)
        m.d.comb += [a_eq, b_eq, product.eq(pins[:len(product)])]
        return a, b, pins

    def _mult18x18d(self, m, a_q, b_q, product):
        a, b, p = self._block_pins(m, a_q, b_q, 18, product, "p", 36)
        ports = {f"i_A{n}": a[n] for n in range(18)}
        ports.update({f"i_B{n}": b[n] for n in range(18)})
        ports.update({f"i_C{n}": Const(0, 1) for n in range(18)})
        ports.update({f"o_P{n}": p[n] for n in range(36)})
        registers = {f"p_REG_{reg}_{what}": value
                     for reg in ("INPUTA", "INPUTB", "PIPELINE", "OUTPUT")
                     for what, value in (("CLK", "CLK0"), ("CE", "CE0"), ("RST", "RST0"))}
        m.submodules.dsp = Instance(
            "MULT18X18D", **registers,
            p_REG_INPUTC_CLK="NONE", p_GSR="DISABLED", p_RESETMODE="SYNC",
            p_MULT_BYPASS="DISABLED", p_CLK0_DIV="ENABLED",
            i_SIGNEDA=Const(int(self.a.shape().signed), 1),
            i_SIGNEDB=Const(int(self.b.shape().signed), 1),
            i_SOURCEA=Const(0, 1), i_SOURCEB=Const(0, 1),
            i_CLK0=ClockSignal("sync"),
            i_CE0=Const(1, 1), i_RST0=Const(0, 1),
            **{f"i_{pin}{n}": Const(0, 1) for pin in ("CLK", "CE", "RST") for n in (1, 2, 3)},
            **ports)

    def _sb_mac16(self, m, a_q, b_q, product):
        a, b, o = self._block_pins(m, a_q, b_q, 16, product, "o", 32)
        m.submodules.dsp = Instance(
            "SB_MAC16",
            p_NEG_TRIGGER=Const(0, 1), p_A_REG=Const(1, 1), p_B_REG=Const(1, 1),
            p_C_REG=Const(0, 1), p_D_REG=Const(0, 1),
            # in 16x16 mode the partial products Ah*Bh and Al*Bl sit in the 8x8 registers,
            # Al*Bh and Ah*Bl in REG1; REG2 holds their sum: one full pipeline stage
            p_TOP_8x8_MULT_REG=Const(1, 1), p_BOT_8x8_MULT_REG=Const(1, 1),
            p_PIPELINE_16x16_MULT_REG1=Const(1, 1), p_PIPELINE_16x16_MULT_REG2=Const(1, 1),
            # both output halves straight from REG2 (the 16x16 product)
            p_TOPOUTPUT_SELECT=Const(3, 2), p_BOTOUTPUT_SELECT=Const(3, 2),
            p_TOPADDSUB_LOWERINPUT=Const(0, 2), p_TOPADDSUB_UPPERINPUT=Const(0, 1),
            p_TOPADDSUB_CARRYSELECT=Const(0, 2), p_BOTADDSUB_LOWERINPUT=Const(0, 2),
            p_BOTADDSUB_UPPERINPUT=Const(0, 1), p_BOTADDSUB_CARRYSELECT=Const(0, 2),
            p_MODE_8x8=Const(0, 1),
            p_A_SIGNED=Const(int(self.a.shape().signed), 1),
            p_B_SIGNED=Const(int(self.b.shape().signed), 1),
            i_CLK=ClockSignal("sync"), i_CE=Const(1, 1), i_A=a, i_B=b,
            i_C=Const(0, 16), i_D=Const(0, 16),
            **{f"i_{pin}": Const(0, 1) for pin in (
                "AHOLD", "BHOLD", "CHOLD", "DHOLD", "IRSTTOP", "IRSTBOT", "ORSTTOP",
                "ORSTBOT", "OLOADTOP", "OLOADBOT", "ADDSUBTOP", "ADDSUBBOT", "OHOLDTOP",
                "OHOLDBOT", "CI", "ACCUMCI", "SIGNEXTIN")},
            o_O=o)
