"""Verilator lint of the generated Verilog, with the few waivers it needs and why.

Every waived warning comes from the way Amaranth's backend (Yosys ``write_verilog``) spells
a netlist whose widths Amaranth has already fixed, not from the design: widths are explicit
in RTLIL, so a width mismatch in the text is Verilog's own context sizing, never a lost bit.
Everything else ``-Wall`` checks (undriven or multi-driven signals, combinational loops,
latches, blocking/non-blocking mixes, implicit nets, pin mismatches, ...) stays fatal.
The same waivers let the cocotb Verilator build run (Verilator stops on width warnings).
"""

import tempfile
from pathlib import Path

from .tools import run_tool

__all__ = ["WAIVERS", "lint_verilog", "waiver_flags"]

WAIVERS = {
    "WIDTHEXPAND": "operands narrower than their expression, e.g. `$signed(a) + $signed({1'h0, b})`:"
                   " Verilog extends them by design; Amaranth sized the result",
    "WIDTHTRUNC": "only `! vector` (Amaranth's test for zero), which Verilator reads as a"
                  " 1-bit operand",
    "UNUSEDSIGNAL": "Amaranth keeps named signals and whole intermediate words for debugging;"
                    " only some of their bits are used",
    "PROCASSINIT": "registers carry their reset value as an initializer (`reg r = 1'h0;`):"
                   " Amaranth's power-on value, which FPGA flows honour",
    "CASEINCOMPLETE": "`casez` on an enum state register leaves its unused encodings out;"
                      " they are unreachable",
    "DECLFILENAME": "one file holds the top and its submodules (`dwconv.act0`, ...) on purpose",
}


def waiver_flags():
    """Verilator options turning the waived warnings off."""
    return [f"-Wno-{name}" for name in WAIVERS]


def lint_verilog(text, *, top="dwconv", waive=True):
    """Run ``verilator --lint-only -Wall`` on ``text``; return the warning/error lines.

    An empty list means clean.  With ``waive=False`` the waivers are not applied.
    """
    with tempfile.TemporaryDirectory(prefix="dwconv-lint-") as folder:
        path = Path(folder) / f"{top}.v"
        path.write_text(text)
        command = ["verilator", "--lint-only", "-Wall", "--top-module", top,
                   *(waiver_flags() if waive else []), path]
        run = run_tool(command, cwd=folder, capture=True, check=False)
    lines = [line for line in run.output.splitlines()
             if line.startswith("%Warning") or line.startswith("%Error")]
    if run.returncode != 0 and not lines:
        lines = [f"%Error: verilator exited with {run.returncode}: {run.output.strip()}"]
    return lines
