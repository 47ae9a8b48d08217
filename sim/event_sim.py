"""Plays arbitrary input events (malformed streams, gaps, resets) into the shipped Verilog.

Uses ``cocotb_sim``'s cached simulator builds; the testbench is ``event_bench``.
"""

from .cocotb_sim import SIMULATORS, run_bench

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
    wait_bound = int((frame_beats + engine.latency + engine.queue_depth) * 4 / (1 - stall))
    gaps = sum(e[1] for e in events if e[0] == "gap")
    plan = {"events": [list(e) for e in events], "stall": stall, "seed": seed,
            "wait_bound": wait_bound, "tail_cycles": wait_bound + 50,
            "max_cycles": (len(events) + 1) * (wait_bound + 1) + gaps + wait_bound + 100}
    result = run_bench(engine, BENCH_MODULE, plan, simulator=simulator, seed=seed,
                       build_dir=build_dir)
    segments = [[tuple(beat) for beat in segment] for segment in result["segments"]]
    return segments, bool(result["error"]), result["accepted"] and result["finished"]
