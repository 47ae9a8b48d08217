"""Plays arbitrary input events (malformed streams, gaps, resets) into the shipped Verilog.

Uses ``cocotb_sim``'s cached simulator builds; the testbench is ``event_bench``.
"""

import json
import shutil
import tempfile
from pathlib import Path

from .cocotb_sim import SIMULATORS, _build, _tools_on_path, default_build_root
from .verilog import DEFAULT_TOP, engine_verilog

__all__ = ["play_events"]

BENCH_MODULE = "dwconv.sim.event_bench"


def play_events(engine, events, *, simulator="verilator", stall=0.0, seed=0, build_dir=None):
    """Play ``events`` into the engine's Verilog under cocotb.

    ``events`` is a list of ``("beat", tdata, tuser, tlast)``, ``("gap", cycles)`` (valid
    low) and ``("reset",)`` (one cycle of ``rst``).  The sink is ready each cycle with
    probability ``1 - stall``.  Returns ``(segments, error, accepted)``: the output beats
    taken, as ``(tdata, tuser, tlast)`` lists per stretch between resets; the sticky error
    flag at the end; whether every beat was taken within a bound (False: the engine hung).
    After the last event the outputs get time to drain, then as long again, so a late extra
    beat would be seen.
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    spec = engine.spec
    frame_beats = spec.height * spec.width * engine.groups
    # a beat may wait for a whole frame's flush and pipeline, slowed by the sink's stalls
    wait_bound = int((frame_beats + engine.latency + engine.fifo_depth) * 4 / (1 - stall))
    gaps = sum(e[1] for e in events if e[0] == "gap")
    plan = {"events": [list(e) for e in events], "stall": stall, "seed": seed,
            "wait_bound": wait_bound, "tail_cycles": wait_bound + 50,
            "max_cycles": (len(events) + 1) * (wait_bound + 1) + gaps + wait_bound + 100}
    root = (Path(build_dir) if build_dir is not None else default_build_root()).resolve()
    with _tools_on_path():
        folder = _build(simulator, engine_verilog(engine), root)
        run_dir = Path(tempfile.mkdtemp(prefix="events-", dir=folder))
        plan_file, result_file = run_dir / "plan.json", run_dir / "result.json"
        plan["result"] = str(result_file)
        plan_file.write_text(json.dumps(plan))
        from cocotb_tools.runner import get_runner
        try:
            get_runner(simulator).test(
                test_module=BENCH_MODULE, hdl_toplevel=DEFAULT_TOP, hdl_toplevel_lang="verilog",
                build_dir=folder, test_dir=run_dir, extra_env={"DWCONV_PLAN": str(plan_file)},
                results_xml=str(run_dir / "results.xml"), log_file=run_dir / "sim.log",
                seed=seed)
        except (RuntimeError, SystemExit) as exc:
            raise RuntimeError(f"{simulator} run failed ({exc})") from None
        if not result_file.exists():
            raise RuntimeError(f"the event bench wrote no result (see {run_dir / 'sim.log'})")
        result = json.loads(result_file.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    segments = [[tuple(beat) for beat in segment] for segment in result["segments"]]
    return segments, bool(result["error"]), result["accepted"] and result["finished"]
