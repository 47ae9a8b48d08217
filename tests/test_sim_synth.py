"""Synthesis flow (YoWASP yosys + nextpnr-ice40) through `dwconv synth`; line buffers in BRAM."""

import json

import numpy as np

from dwconv.cli import main
from dwconv.golden.export import export_layer
from dwconv.golden.formats import LayerFormats
from dwconv.golden.layer import Layer
from dwconv.golden.spec import LayerSpec

FORMATS = dict(input="fixed<8,3>", weight="fixed<8,1>", bias="fixed<8,3>",
               output="fixed<8,3,RND,SAT>")


def test_synth_ice40_report_and_block_ram(tmp_path, capsys):
    """A 256-pixel-wide row: its line buffer (2 rows + 3 pixels of 2 channels, 8 bits) must be
    block RAM (iCE40 has no LUT RAM, so the only other place is ~8k flip-flops)."""
    spec = LayerSpec(input_shape=(4, 256, 2), kernel_size=(3, 3), name="wide")
    rng = np.random.default_rng(0)
    layer = Layer(spec, rng.normal(size=spec.kernel_shape).astype(np.float32),
                  rng.normal(size=spec.out_channels).astype(np.float32))
    export_layer(tmp_path / "layer", layer, LayerFormats.from_strings(**FORMATS))
    report = tmp_path / "r.json"
    assert main(["synth", str(tmp_path / "layer"), "--target", "ice40", "--report", str(report),
                 "--build-dir", str(tmp_path / "build")]) == 0
    result = json.loads(report.read_text())
    printed = capsys.readouterr()
    assert "Fmax MHz" in printed.out and "nextpnr-ice40" in printed.err
    assert result["target"] == "ice40" and result["part"] == "iCE40UP5K-SG48"
    assert result["fmax_mhz"] > 10
    assert result["luts"] > 0 and result["dsps"] <= 8
    assert result["line_buffer_words"] >= 2 * 256 * 2
    line_buffer_bits = result["line_buffer_words"] * 8
    assert result["brams"] * 4096 >= line_buffer_bits
    assert result["engine_ffs"] < line_buffer_bits // 4
    assert result["utilization"]["ICESTORM_RAM"]["used"] == result["brams"]
