"""The folded MAC array: kh*kw products on ceil(kh*kw/R) multipliers over R cycles."""

from amaranth.hdl import Const, Module, Mux, Shape, Signal, signed
from amaranth.lib import wiring

from .mac import adder_tree, mac_signature, register_chain, tree_levels
from .multiplier import Multiplier

__all__ = ["FoldedMacArray", "check_reuse"]


def check_reuse(reuse, taps):
    """The reuse factor R must be a whole number from 1 to ``taps``: beyond ``taps`` every
    multiplier would already be alone and R would only slow the engine down.  The one check
    of R: the plan, this array and the command line's ``--reuse`` call it."""
    if isinstance(reuse, bool) or not isinstance(reuse, int) or not 1 <= reuse <= taps:
        raise ValueError(f"reuse must be a whole number from 1 to {taps} (the kernel's "
                         f"taps), not {reuse!r}")
    return reuse


class FoldedMacArray(wiring.Component):
    """Sum of ``taps`` products plus a bias, exact, with each multiplier used ``reuse`` times.

    hls4ml's reuse factor: a window's taps are held for ``reuse`` cycles (its phases
    0..R-1) and multiplier k takes tap ``k*R + phase`` (no tap, a zero, past the last one),
    so ``ceil(taps/R)`` multipliers do the work of ``taps``.  A registered adder tree sums
    their products each phase, and one accumulator register adds the phases up: it starts
    each window from the bias (loaded with phase 0's partial sum) and holds the complete
    sum after phase R-1.  Every stage is registered, as in ``MacArray``, so the longest path
    is one adder (with a two-way multiplexer in front), one R-way operand multiplexer (into
    the multiplier's first register) or the multiplier itself (``Multiplier``, a DSP block
    with its registers on ``target``).

    Constant weights become a per-multiplier table of R constants selected by the phase:
    the multiplier is then a real one, but its weight input is a tiny ROM, not a memory.

    Parameters
    ----------
    taps : int
    reuse : int
        R, from 1 to ``taps``.
    x_shape, w_shape, b_shape : Shape
        Masked input sample, weight and bias raw integers.
    acc_width : int
        Signed width of the exact accumulator.  Every partial sum of the products plus the
        bias lies within the range of the complete sum, so it fits as well.
    product_shift, bias_shift : int
        Left shifts to the accumulator's binary point.
    weights : list of int, optional
        Constant raw weights, one per tap; ``w`` is then unused.
    target : None, "ecp5" or "ice40"
        Passed to each ``Multiplier`` (the latency does not depend on it).

    Members
    -------
    The ports of ``mac_signature(taps, x_shape, w_shape, b_shape, acc_width, reuse=R)``:

    x : In(ArrayLayout(x_shape, taps)); w : In(ArrayLayout(w_shape, taps))
        One per tap, held for the R cycles of a window's phases.
    phase : In(range(R))
        0, 1, .., R-1 in consecutive cycles: the window's phase 0 is the first cycle its
        ``x`` are present.  Outside windows it may do anything (the result is then unused).
    b : In(b_shape)
        Bias, expected ``bias_delay`` cycles after phase 0 (any time, when constant).
    acc : Out(signed(acc_width)), ``latency`` cycles after phase 0
        Held for one cycle.  ``latency`` may be raised with ``pad_to``.
    """

    def __new__(cls, taps, reuse, *args, weights=None, **kwargs):
        # checked before the object exists, so a refused array is no unused elaboratable
        check_reuse(reuse, taps)
        if weights is not None and len(weights) != taps:
            raise ValueError(f"{len(weights)} weights given for {taps} taps")
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, taps, reuse, x_shape, w_shape, b_shape, acc_width, *, product_shift=0,
                 bias_shift=0, weights=None, target=None):
        self.taps, self.reuse, self.acc_width = taps, reuse, acc_width
        self.product_shift, self.bias_shift = product_shift, bias_shift
        self.weights = None if weights is None else [int(w) for w in weights]
        self.target = target
        self.multipliers = self.multipliers_of(taps, reuse)
        self.x_shape, self.w_shape = Shape.cast(x_shape), Shape.cast(w_shape)
        super().__init__(mac_signature(taps, x_shape, w_shape, b_shape, acc_width,
                                       reuse=reuse))
        self.levels = tree_levels(self.multipliers)
        self.bias_delay = self.bias_delay_of(taps, reuse)
        self.latency = self.latency_of(taps, reuse)

    @staticmethod
    def multipliers_of(taps, reuse):
        return -(-taps // reuse)

    @classmethod
    def bias_delay_of(cls, taps, reuse):
        """Cycles from phase 0 to the accumulator's load (where the bias joins)."""
        # operands selected into the multiplier's first register, product, tree
        return Multiplier.LATENCY + tree_levels(cls.multipliers_of(taps, reuse))

    @classmethod
    def latency_of(cls, taps, reuse):
        """Cycles from phase 0 to ``acc`` before any padding: the accumulator loads on
        phase 0's partial sum and adds the R-1 others."""
        return cls.bias_delay_of(taps, reuse) + reuse

    def pad_to(self, latency):
        """Delay ``acc`` so that it arrives ``latency`` cycles after phase 0."""
        if latency < self.latency:
            raise ValueError(f"cannot shorten the latency {self.latency} to {latency}")
        self.latency = latency

    def tap_of(self, k, phase):
        """The tap multiplier ``k`` takes in ``phase``, or None past the last tap."""
        t = k * self.reuse + phase
        return t if t < self.taps else None

    def _operands(self, k, phase, w_shape):
        """(sample, weight) of multiplier ``k`` in ``phase``: zeros past the last tap."""
        t = self.tap_of(k, phase)
        if t is None:
            return 0, 0
        return self.x[t], self.w[t] if self.weights is None else Const(self.weights[t],
                                                                          w_shape)

    def _by_phase(self, options):
        """``options[phase]``, as a tree of two-way multiplexers on the phase's bits.  (Not a
        ``Switch``: yosys writes its parallel multiplexer as a Verilog function named
        ``\\$procmux$..``, which Icarus takes for an unknown system function.)"""
        options = list(options)
        for bit in range(len(self.phase)):
            options += [0] * (len(options) % 2)
            options = [Mux(self.phase[bit], options[n + 1], options[n])
                       for n in range(0, len(options), 2)]
        assert len(options) == 1
        return options[0]

    def elaborate(self, platform):
        m = Module()
        acc = signed(self.acc_width)
        R = self.reuse

        # phase travels beside the data, one register per stage up to the accumulator
        phase = self.phase
        for stage in range(self.bias_delay):
            phase_q = Signal.like(self.phase, name=f"phase_{stage}", reset_less=True)
            m.d.sync += phase_q.eq(phase)
            phase = phase_q

        terms = []
        for k in range(self.multipliers):
            # the phase picks the operands; the multiplier registers them before its block
            x_sel = Signal(self.x_shape, name=f"x_sel{k}")
            w_sel = Signal(self.w_shape if self.weights is None else
                           signed(max(max(abs(w) for w in self.weights), 1).bit_length() + 1),
                           name=f"w_sel{k}")
            x_options, w_options = zip(*(self._operands(k, p, w_sel.shape())
                                         for p in range(R)))
            m.d.comb += [x_sel.eq(self._by_phase(x_options)),
                         w_sel.eq(self._by_phase(w_options))]
            m.submodules[f"mul{k}"] = mul = Multiplier(x_sel.shape(), w_sel.shape(),
                                                       target=self.target)
            m.d.comb += [mul.a.eq(x_sel), mul.b.eq(w_sel)]
            # the multiplier's output register feeds the tree directly: the shift is wiring
            terms.append(mul.p << self.product_shift)

        partial = adder_tree(m, terms, self.levels, acc, "sum")

        total = Signal(acc, reset_less=True)
        base = Mux(phase == 0, self.b << self.bias_shift, total)
        m.d.sync += total.eq(base + partial)

        # the complete sum sits in ``total`` for the one cycle after phase R-1
        result = register_chain(m, total, self.latency - self.latency_of(self.taps, R),
                                "acc_delay")
        m.d.comb += self.acc.eq(result)
        return m
