"""Synthesis flow (YoWASP yosys + nextpnr-ice40) through `dwconv synth`; line buffers in BRAM."""

import json
import sys

import numpy as np
import pytest

from dwconv.cli import main
from dwconv.models.export import export_layer
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


def _engine(weights="const", target=None, formats=None):
    from dwconv.golden.fixed_ref import quantize_weights
    from dwconv.hw.engine import DepthwiseEngine

    spec = LayerSpec(input_shape=(4, 4, 2), kernel_size=(3, 3), name="tiny")
    rng = np.random.default_rng(1)
    layer = Layer(spec, rng.normal(size=spec.kernel_shape).astype(np.float32),
                  rng.normal(size=spec.out_channels).astype(np.float32))
    formats = formats or LayerFormats.from_strings(**FORMATS)
    kernel_raw, bias_raw = quantize_weights(layer, formats)
    engine = DepthwiseEngine(spec, formats, 2, kernel_raw, bias_raw, weights=weights,
                             target=target)
    engine._MustUse__silence = True      # built to be inspected, not elaborated
    return engine


def test_synth_commands_never_infer_ice40_dsps():
    """synth_ice40 -dsp made wrong netlists (yosys 0.70): the engine instantiates SB_MAC16
    itself, and every flow (synth, build, post-synthesis simulation) uses one command."""
    from dwconv.flows.synth import synth_options, synth_script

    assert synth_script("ice40", "top") == "synth_ice40 -top top\n"
    assert synth_script("ice40", "top", dsp=False) == "synth_ice40 -top top\n"
    assert synth_script("ecp5", "top") == "synth_ecp5 -top top\n"
    assert synth_options("ecp5", dsp=False) == "-nodsp"


def test_retarget_keeps_the_engine_and_its_cycles():
    from dwconv.flows.synth import retarget

    portable = _engine("port")
    same = retarget(portable, None)
    ecp5 = retarget(portable, "ecp5")
    ecp5._MustUse__silence = True
    assert same is portable
    assert ecp5.target == "ecp5" and ecp5.weights == "port"
    assert ecp5.latency == portable.latency
    np.testing.assert_array_equal(ecp5.store.kernel_raw, portable.store.kernel_raw)


def test_wide_products_fall_back_with_a_note():
    from dwconv.flows.synth import dsp_notes

    wide = LayerFormats.from_strings(input="fixed<17,8>", weight="fixed<8,1>",
                                     bias="fixed<8,3>", output="fixed<8,3,RND,SAT>")
    notes = dsp_notes(_engine("port", "ice40", wide))
    assert len(notes) == 1 and "do not fit SB_MAC16" in notes[0]
    assert dsp_notes(_engine("port", "ecp5", wide)) == []
    assert dsp_notes(_engine("const", "ice40", wide)) == []


def test_verilog_is_vendor_free_unless_a_target_is_asked(tmp_path):
    spec = LayerSpec(input_shape=(4, 4, 2), kernel_size=(3, 3), name="tiny")
    rng = np.random.default_rng(2)
    layer = Layer(spec, rng.normal(size=spec.kernel_shape).astype(np.float32),
                  rng.normal(size=spec.out_channels).astype(np.float32))
    export_layer(tmp_path / "layer", layer, LayerFormats.from_strings(**FORMATS))
    counts = {}
    for target in (None, "ecp5", "ice40"):
        out = tmp_path / f"{target}.v"
        assert main(["verilog", str(tmp_path / "layer"), "--weights", "port", "-o", str(out)]
                    + (["--target", target] if target else [])) in (0, None)
        text = out.read_text()
        counts[target] = (text.count("MULT18X18D "), text.count("SB_MAC16 "))
    # 9 taps x 1 lane (P defaults to 1 here), each one DSP block instance
    assert counts == {None: (0, 0), "ecp5": (9, 0), "ice40": (0, 9)}


def test_a_tool_assertion_is_named_as_such(tmp_path):
    """yosys 0.70 can fail an internal assertion on some netlists (seen on ECP5); it writes
    the error only to its -l log.  The reason given is that line, and the CLI's one-line
    error does not call it a fit problem."""
    from dwconv.cli import _tool_failure
    from dwconv.flows.synth import _run
    from dwconv.flows.tools import ToolError

    tool = tmp_path / "fake_yosys.py"
    tool.write_text("import pathlib\npathlib.Path('yosys.log').write_text("
                    "\"2.46 Executing ABC\\nERROR: Assert `a == b' failed in rtlil.cc:1.\\n\")\n"
                    "raise SystemExit(1)\n")
    with pytest.raises(RuntimeError) as failure:
        _run([sys.executable, str(tool)], tmp_path / "yosys.out", lambda line: None, "yosys",
             tmp_path, tool_log=tmp_path / "yosys.log")
    reason = str(failure.value).splitlines()[0]
    assert reason.startswith("yosys failed: ERROR: Assert `a == b' failed")
    assert "internal error of the tool" in _tool_failure(failure.value)
    assert "may not fit" in _tool_failure(ToolError("nextpnr-ecp5", "ERROR: Unable to place"))
    assert "may not fit" not in _tool_failure(ToolError("yosys", "ERROR: out of memory"))


FAKE_NEXTPNR = """\
import json, sys, time
args = sys.argv[1:]
seed = int(args[args.index("--seed") + 1])
if seed in {stuck}:
    time.sleep(60)
report = {{"fmax": {{"clk": {{"achieved": 200.0 + seed}}}}, "utilization": {{}}}}
open(args[args.index("--report") + 1], "w").write(json.dumps(report))
"""


@pytest.mark.parametrize("stuck", [{2}, {1, 2, 3}])
def test_a_seed_past_its_time_limit_is_stopped_and_left_out(tmp_path, monkeypatch, stuck):
    """A nextpnr seed whose router does not converge runs for hours: with a seed time limit
    it is stopped, the finished seeds make the report, and the run fails only if none
    finished."""
    from dwconv.flows import synth

    tool = tmp_path / "fake-nextpnr"
    tool.write_text(f"#!{sys.executable}\n" + FAKE_NEXTPNR.format(stuck=stuck))
    tool.chmod(0o755)
    monkeypatch.setattr(synth, "_tool", lambda name: str(tool))
    monkeypatch.setattr(synth, "_synthesize", lambda *args: {
        "modules": {"harness": {"cells": {}}}})
    engine = _engine()
    run = lambda: synth.run_synth(engine, "ecp5", build_dir=tmp_path / "build",
                                  progress=lambda line: None, seeds=[1, 2, 3], seed_timeout=2)
    if stuck == {1, 2, 3}:
        with pytest.raises(RuntimeError, match="no seed finished within 2 s"):
            run()
        return
    result = run()
    assert result["fmax_seeds_mhz"] == [201.0, 203.0]
    assert result["seeds_unfinished"] == [2]
    assert (result["fmax_mhz"], result["seed"], result["fmax_median_mhz"]) == (203.0, 3, 202.0)
