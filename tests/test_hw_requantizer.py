"""Requantizer and activation stages against the golden QFormat, every mode, exhaustively."""

import itertools

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from dwconv.golden.fixed import OVERFLOW_MODES, ROUNDING_MODES, QFormat
from dwconv.hw.activation import Activation
from dwconv.hw.requantizer import Requantizer


def run_stage(stage, values):
    """Feed one value per cycle; return the output ``stage.latency`` cycles later."""
    outputs = []

    async def bench(ctx):
        for n in range(len(values) + stage.latency):
            if n < len(values):
                ctx.set(stage.i, int(values[n]))
            await ctx.tick()
            if n >= stage.latency - 1 and len(outputs) < len(values):
                outputs.append(ctx.get(stage.o))

    sim = Simulator(stage)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return np.array(outputs, dtype=np.int64)


IN_WIDTH, IN_FRAC = 9, 4
ALL_INPUTS = np.arange(-(1 << (IN_WIDTH - 1)), 1 << (IN_WIDTH - 1))
TARGETS = ["fixed<5,3>", "ufixed<4,2>", "fixed<6,5>", "fixed<12,6>", "fixed<4,1>"]


@pytest.mark.parametrize("rounding,overflow", list(itertools.product(ROUNDING_MODES,
                                                                       OVERFLOW_MODES)))
def test_every_mode_matches_golden(rounding, overflow):
    for target in TARGETS:
        base = QFormat.parse(target)
        fmt = QFormat(base.signed, base.width, base.int_bits, rounding, overflow)
        stage = Requantizer(signed(IN_WIDTH), IN_FRAC, fmt)
        np.testing.assert_array_equal(run_stage(stage, ALL_INPUTS),
                                      fmt.convert(ALL_INPUTS, IN_FRAC), err_msg=str(fmt))


@pytest.mark.parametrize("kind", ["linear", "relu", "relu6"])
def test_activation(kind):
    frac = 3
    values = np.arange(-80, 80)
    stage = Activation(kind, signed(8), frac)
    expected = {"linear": values, "relu": np.maximum(values, 0),
                "relu6": np.clip(values, 0, 6 << frac)}[kind]
    np.testing.assert_array_equal(run_stage(stage, values), expected)


def test_relu6_when_six_is_out_of_range():
    values = np.arange(-16, 16)
    stage = Activation("relu6", signed(5), 2)    # largest value 3.75 < 6: only relu acts
    np.testing.assert_array_equal(run_stage(stage, values), np.maximum(values, 0))


NARROW_INPUTS = {"signed": (signed(6), np.arange(-32, 32)),
                 "unsigned": (unsigned(5), np.arange(0, 32))}
#: Targets wider than the rounded input (the case of a given accumulator wider than the exact
#: sum): the rounded value must be sign-extended before its low W bits are kept.
WIDE_TARGETS = ["fixed<16,14>", "ufixed<16,14>", "fixed<20,10>", "ufixed<20,10>",
                "fixed<12,11>"]


@pytest.mark.parametrize("rounding,overflow", list(itertools.product(ROUNDING_MODES,
                                                                       OVERFLOW_MODES)))
@pytest.mark.parametrize("kind", sorted(NARROW_INPUTS))
def test_narrow_value_into_wider_format(kind, rounding, overflow):
    shape, values = NARROW_INPUTS[kind]
    for target in WIDE_TARGETS:
        base = QFormat.parse(target)
        fmt = QFormat(base.signed, base.width, base.int_bits, rounding, overflow)
        stage = Requantizer(shape, 3, fmt)
        np.testing.assert_array_equal(run_stage(stage, values), fmt.convert(values, 3),
                                      err_msg=f"{kind} -> {fmt}")
