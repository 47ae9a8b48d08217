"""The MAC array of one output channel: kh*kw products, a pipelined adder tree, the bias."""

from amaranth.hdl import Const, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .multiplier import Multiplier, constant_sum

__all__ = ["MacArray", "mac_signature", "signed_digits", "adder_tree", "register_chain",
           "tree_levels"]


def signed_digits(value):
    """Non-adjacent form of an integer: [(shift, +1 or -1), ...], fewest nonzero digits."""
    digits, shift = [], 0
    while value:
        digit = 0
        if value & 1:
            digit = 2 - (value & 3)
            value -= digit
            digits.append((shift, digit))
        value >>= 1
        shift += 1
    return digits


def adder_tree(m, terms, levels, shape, name):
    """Sum of ``terms`` after exactly ``levels`` register stages (0 terms sum to 0)."""
    terms = terms or [Const(0, shape)]
    for level in range(levels):
        reduced = []
        for n in range(0, len(terms), 2):
            node = Signal(shape, name=f"{name}{level}_{n // 2}", reset_less=True)
            m.d.sync += node.eq(terms[n] + terms[n + 1] if n + 1 < len(terms) else terms[n])
            reduced.append(node)
        terms = reduced
    assert len(terms) == 1
    return terms[0]


def register_chain(m, value, stages, name):
    """``value`` delayed by ``stages`` registers without reset (a datapath delay: a MAC's
    padding to a common latency, the line buffer's input)."""
    for stage in range(stages):
        delayed = Signal.like(value, name=f"{name}{stage}", reset_less=True)
        m.d.sync += delayed.eq(value)
        value = delayed
    return value


def tree_levels(count):
    """Register levels of an adder tree of ``count`` terms (``adder_tree``): 0 for one."""
    return max(count - 1, 0).bit_length()


def mac_signature(taps, x_shape, w_shape, b_shape, acc_width, *, reuse=1):
    """The ports of a MAC array, full rate (``MacArray``, ``reuse`` 1) or folded
    (``FoldedMacArray``): the core drives both through these.

    Members
    -------
    x : In(ArrayLayout(x_shape, taps)); w : In(ArrayLayout(w_shape, taps))
        One sample and one weight per tap (``x[t]``).  The arrays never stall, so these are
        plain values, not streams.
    phase : In(range(reuse))
        The phase of a folded window (zero bits wide at full rate).
    b : In(b_shape)
        The bias.
    acc : Out(signed(acc_width))
        The sum of the products and the bias.
    """
    return wiring.Signature({"x": In(data.ArrayLayout(x_shape, taps)),
                             "w": In(data.ArrayLayout(w_shape, taps)),
                             "phase": In(range(reuse)),
                             "b": In(b_shape), "acc": Out(signed(acc_width))})


class MacArray(wiring.Component):
    """Sum of ``taps`` products plus a bias, exact, in a pipeline that never stalls.

    With weights known at build time there are no multipliers at all: each product is a
    few shifted copies of the sample (the weight's signed digits), and all of them go into
    two adder trees, one for the digits +1 and one for -1.  Otherwise each product is a
    ``Multiplier`` for ``target`` (a DSP block with its own registers, and a fabric register
    on each side; the same latency on every target).  Every adder tree level is registered,
    so the longest path is one adder or one multiplier and the MAC never limits the clock.
    Products are aligned to the accumulator's binary point by ``product_shift``, the bias
    by ``bias_shift``.

    Parameters
    ----------
    taps : int
    x_shape, w_shape, b_shape : Shape
        Masked input sample, weight and bias raw integers.
    acc_width : int
        Signed width of the exact accumulator (never overflows by construction).
    product_shift, bias_shift : int
        Left shifts to the accumulator's binary point.
    weights : list of int, optional
        Constant raw weights, one per tap; ``w`` is then unused.
    target : None, "ecp5" or "ice40"
        The multipliers' form (see ``Multiplier``); None is portable.  It changes neither
        the latency nor the result.

    Members
    -------
    The ports of ``mac_signature(taps, x_shape, w_shape, b_shape, acc_width)``:

    x : In(ArrayLayout(x_shape, taps)); w : In(ArrayLayout(w_shape, taps))
        One per tap (``x[t]``), a new set every cycle.
    phase : In(0)
        Unused (no phases at full rate).
    b : In(b_shape)
        Bias, expected ``bias_delay`` cycles after ``x`` (any time, when constant).
    acc : Out(signed(acc_width)), ``latency`` cycles after ``x``
        ``latency`` may be raised with ``pad_to`` so that every lane has the same.
    """

    def __init__(self, taps, x_shape, w_shape, b_shape, acc_width, *, product_shift=0,
                 bias_shift=0, weights=None, target=None):
        self.taps, self.acc_width, self.target = taps, acc_width, target
        self.product_shift, self.bias_shift = product_shift, bias_shift
        self.weights = None if weights is None else [int(w) for w in weights]
        super().__init__(mac_signature(taps, x_shape, w_shape, b_shape, acc_width))
        self.levels, self.bias_delay = self.shape_of(taps, self.weights)
        self.latency = self.bias_delay + 1

    @staticmethod
    def shape_of(taps, weights=None):
        """(adder tree levels, cycles from ``x`` to the bias adder) of a MAC array."""
        if weights is None:
            levels = tree_levels(taps)
            return levels, Multiplier.LATENCY + levels      # products, tree
        digits = [d for w in weights for _, d in signed_digits(int(w))]
        levels = max(tree_levels(digits.count(1)), tree_levels(digits.count(-1)))
        return levels, 2 + levels          # x, trees, difference

    @classmethod
    def latency_of(cls, taps, weights=None):
        """Cycles from ``x`` to ``acc`` before any padding."""
        return cls.shape_of(taps, weights)[1] + 1

    def pad_to(self, latency):
        """Delay ``acc`` so that it arrives ``latency`` cycles after ``x``."""
        if latency < self.latency:
            raise ValueError(f"cannot shorten the latency {self.latency} to {latency}")
        self.latency = latency

    def elaborate(self, platform):
        m = Module()
        acc = signed(self.acc_width)
        if self.weights is None:
            # the multiplier's output register is the first tree level's input
            terms = []
            for t in range(self.taps):
                m.submodules[f"mul{t}"] = mul = Multiplier(
                    self.x[t].shape(), self.w[t].shape(), target=self.target)
                m.d.comb += [mul.a.eq(self.x[t]), mul.b.eq(self.w[t])]
                terms.append(mul.p << self.product_shift)
            total = adder_tree(m, terms, self.levels, acc, "sum")
        else:
            # the samples' register as plain bits (a view of the array layout costs
            # elaboration time per MAC); each sample is a slice of it
            x_q = Signal(len(self.x.as_value()), name="x_q", reset_less=True)
            m.d.sync += x_q.eq(self.x)
            width = self.x[0].shape().width
            samples = [x_q[t * width:(t + 1) * width] for t in range(self.taps)]
            if self.x[0].shape().signed:
                samples = [sample.as_signed() for sample in samples]
            digits = [(t, shift + self.product_shift, digit)
                      for t, weight in enumerate(self.weights)
                      for shift, digit in signed_digits(weight)]
            plus, minus = constant_sum(m, samples, digits, self.levels, "sum")
            total = Signal(acc, reset_less=True)
            m.d.sync += total.eq(plus - minus)

        result = Signal(acc, reset_less=True)
        m.d.sync += result.eq(total + (self.b << self.bias_shift))
        result = register_chain(m, result, self.latency - (self.bias_delay + 1), "acc_delay")
        m.d.comb += self.acc.eq(result)
        return m
