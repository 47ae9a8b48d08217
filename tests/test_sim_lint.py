"""The generated Verilog lints clean under `verilator --lint-only -Wall` (with sim/lint.py's
documented waivers)."""

import pytest

from dwconv.sim.lint import WAIVERS, lint_verilog
from dwconv.sim.verilog import engine_verilog
from engine_cases import make_case

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
