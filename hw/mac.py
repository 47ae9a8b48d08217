"""The MAC array of one output channel: kh*kw products, a pipelined adder tree, the bias."""

from amaranth.hdl import Elaboratable, Module, Signal, signed

__all__ = ["MacArray"]


class MacArray(Elaboratable):
    """Sum of ``taps`` products plus a bias, exact, in a pipeline that never stalls.

    A register after the multipliers and after every level of the adder tree keeps the
    longest path at one multiplier or one adder, so the tree does not limit the clock.
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

    Members
    -------
    x, w : list of Signal, in
        One per tap; ``w`` entries may be replaced by constants before elaboration.
    b : Signal(b_shape), in
        Bias, expected ``bias_delay`` cycles after ``x``.
    acc : Signal(signed(acc_width)), out, ``latency`` cycles after ``x``
    """

    def __init__(self, taps, x_shape, w_shape, b_shape, acc_width, *, product_shift=0,
                 bias_shift=0):
        self.taps, self.acc_width = taps, acc_width
        self.product_shift, self.bias_shift = product_shift, bias_shift
        self.x = [Signal(x_shape, name=f"x{t}") for t in range(taps)]
        self.w = [Signal(w_shape, name=f"w{t}") for t in range(taps)]
        self.b = Signal(b_shape)
        self.acc = Signal(signed(acc_width))
        self.levels = self.tree_levels(taps)
        self.bias_delay = 1 + self.levels
        self.latency = self.latency_for(taps)

    @staticmethod
    def tree_levels(taps):
        return max(taps - 1, 0).bit_length()

    @classmethod
    def latency_for(cls, taps):
        """Cycles from ``x`` to ``acc``: multipliers, tree levels, bias adder."""
        return 2 + cls.tree_levels(taps)

    def elaborate(self, platform):
        m = Module()
        acc = signed(self.acc_width)
        terms = []
        for t in range(self.taps):
            product = Signal(acc, name=f"product{t}")
            m.d.sync += product.eq((self.x[t] * self.w[t]) << self.product_shift)
            terms.append(product)
        for level in range(self.levels):
            reduced = []
            for n in range(0, len(terms), 2):
                node = Signal(acc, name=f"sum{level}_{n // 2}")
                m.d.sync += node.eq(terms[n] + terms[n + 1] if n + 1 < len(terms) else terms[n])
                reduced.append(node)
            terms = reduced
        m.d.sync += self.acc.eq(terms[0] + (self.b << self.bias_shift))
        return m
