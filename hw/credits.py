"""The credit counter: places in the output queue not yet promised to a fired output."""

from typing import NamedTuple

from amaranth.hdl import Signal

__all__ = ["CreditCounter", "credit_counter"]


class CreditCounter(NamedTuple):
    """The counter's registers: ``has_credit`` drives the shift decision; ``credits``,
    ``refund`` and ``pop`` are what the formal invariants (flows/formal_invariants.py) count."""

    has_credit: Signal
    credits: Signal
    refund: Signal
    pop: Signal


def credit_counter(m, depth, *, shift, fires, taken):
    """Credits of an output queue of ``depth`` places, in module ``m``; returns a
    ``CreditCounter``.

    Every ``shift`` reserves a place; it is returned a cycle later (``refund``) unless the
    shift ``fires`` an output; each beat ``taken`` from the queue frees one a cycle later
    (``pop``), from a flip-flop, so the queue's handshake stays out of the counter's carry
    chain.  So the queue is never written when full, and the datapath never stalls.

    ``has_credit`` is registered: credits >= 2 after this cycle's updates, which is room for
    one more shift after a shift decided now (the worst case, since the count sees a shift a
    cycle after its decision: docs/timing-closure.md, item 10).  It is worked out as ORs of
    the counter's bits and the three update flags, with no adder behind them (items 3, 20).
    """
    credits = Signal(range(depth + 1), init=depth)
    has_credit = Signal(init=1)
    refund = Signal()     # registered, so the scanner's compare stops at a flip-flop
    pop = Signal()
    m.d.sync += [pop.eq(taken),
                 refund.eq(shift & ~fires),
                 credits.eq(credits - shift + refund + pop),
                 # credits - shift + refund + pop >= 2, case by case on credits >= 4, == 3,
                 # >= 2, >= 1 and 0
                 has_credit.eq(credits[2:].any() | credits[:2].all()
                               | (credits[1:].any() & (~shift | refund | pop))
                               | (credits.any() & ((refund & pop)
                                                   | ((refund | pop) & ~shift)))
                               | (refund & pop & ~shift))]
    return CreditCounter(has_credit, credits, refund, pop)
