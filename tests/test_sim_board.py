"""The self-checking board design, in the Amaranth simulator: pass, and fail on a bad value."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from dwconv.golden.fixed_ref import fixed_forward_raw
from dwconv.flows.board import SelfCheck, board_vectors
from support.engine_cases import make_case


def _run(check, max_cycles=5000):
    outcome = {}

    async def bench(ctx):
        for _ in range(max_cycles):
            await ctx.tick()
            if ctx.get(check.done):
                break
        outcome.update(done=ctx.get(check.done), passed=ctx.get(check.passed),
                       failed=ctx.get(check.failed))

    sim = Simulator(check)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return outcome


@pytest.fixture(scope="module")
def case():
    return make_case(shape=(5, 6, 4), kernel=(3, 3), padding="same", multiplier=2, lanes=2,
                     activation="relu6", formats="rnd_sat", seed=2)


def test_board_vectors_are_the_golden_model(case):
    frames, expected = board_vectors(case.layer, case.formats, frames=2, seed=3)
    assert frames.shape == (2, 5, 6, 4)
    assert frames.min() >= case.formats.input.raw_min
    assert frames.max() <= case.formats.input.raw_max
    np.testing.assert_array_equal(expected, fixed_forward_raw(case.layer, case.formats, frames))


def test_self_check_passes(case):
    frames, expected = board_vectors(case.layer, case.formats, frames=2, seed=3)
    outcome = _run(SelfCheck(case.engine, frames, expected))
    assert outcome == {"done": 1, "passed": 1, "failed": 0}


def test_self_check_fails_on_one_corrupted_expected_value(case):
    frames, expected = board_vectors(case.layer, case.formats, frames=2, seed=3)
    corrupted = expected.copy()
    corrupted[1, 3, 4, 5] ^= 1     # one bit of one value, in the second frame
    outcome = _run(SelfCheck(case.engine, frames, corrupted))
    assert outcome == {"done": 1, "passed": 0, "failed": 1}
