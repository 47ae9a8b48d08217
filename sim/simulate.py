"""Simulate the engine on a layer's input and compare it with the fixed golden model."""

import numpy as np

from ..golden.fixed_ref import fixed_forward_raw, quantize_weights
from ..golden.float_ref import float_forward_nhwc
from ..golden.overflow import count_overflows
from ..hw.engine import DepthwiseEngine
from .amaranth_sim import run_amaranth

__all__ = ["SIMULATORS", "simulate_layer", "line_buffer_minimum", "amaranth_seconds"]

#: amaranth: Amaranth's simulator on the engine itself.  verilator, icarus: the shipped
#: Verilog at native speed (``native_sim``: a compiled testbench, no Python per cycle).
#: cocotb-verilator, cocotb-icarus: the same Verilog under cocotb with cocotbext-axi's
#: AXI-Stream source and sink (protocol-level checks, ~1,000 cycles/s).
SIMULATORS = ("amaranth", "verilator", "icarus", "cocotb-verilator", "cocotb-icarus")


def line_buffer_minimum(spec):
    """((kh-1)*dh*W + (kw-1)*dw + 1) * C words: the least a sliding window can store."""
    kh, kw = spec.kernel_size
    dh, dw = spec.dilation_rate
    return ((kh - 1) * dh * spec.width + (kw - 1) * dw + 1) * spec.channels


#: Amaranth's simulator runs the engine at roughly this many cycles per second on these
#: machines (a 56x56x32 layer at P=1: 6,000 cycles/s), after a few seconds of set-up.
AMARANTH_CYCLES_PER_SECOND = 6000
AMARANTH_SETUP_SECONDS = 3
#: Runs expected to take longer than this many seconds are announced.
LONG_RUN_SECONDS = 15


def amaranth_seconds(cycles, lanes, multiplier=1):
    """A rough estimate of the Amaranth simulator's time for ``cycles`` of an engine with
    ``lanes`` lanes in (``multiplier`` outputs per lane): more lanes cost a little more
    per cycle."""
    per_cycle = (1 + 0.1 * (lanes * multiplier - 1)) / AMARANTH_CYCLES_PER_SECOND
    return AMARANTH_SETUP_SECONDS + cycles * per_cycle


def simulate_layer(layer, formats, x_nhwc, lanes, *, sim="amaranth", stall=0.0, seed=0,
                   weights="const", build_dir=None, reuse=1, progress=None):
    """Run ``x_nhwc`` (float, N frames) through the engine; returns (raw output, report).

    The raw output is int64 (N, oh, ow, C*M) channels last; the report holds the fields of
    SPEC section 5 and a few more about the design.  With reuse R the engine takes one beat
    every R cycles, so ``ideal_cycles`` is R times the beats (``efficiency`` then says how
    close it comes to that rate).  ``overflows`` counts the values that overflow the input,
    accumulator and output formats (``golden.overflow``).  ``progress``: None, or a
    callable(total, what) giving a ``dwconv.progress.Progress`` for the run's steps (golden
    model, engine, the build for verilator and icarus, simulation, comparison); a long
    Amaranth run is announced first.
    """
    if sim not in SIMULATORS:
        raise ValueError(f"sim must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    from ..progress import progress_for

    spec = layer.spec
    spec.check_lanes(lanes)
    if sim != "amaranth":
        from .tools import require_tools
        require_tools(sim)          # before any work: a missing tool is the user's to fix
    frames = len(x_nhwc)
    ideal = frames * spec.height * spec.width * spec.channels // lanes * reuse
    native = sim in ("verilator", "icarus")
    with progress_for(progress, 5 if native else 4, f"simulate ({sim})") as bar:
        kernel_raw, bias_raw = quantize_weights(layer, formats)
        x_raw = formats.input.quantize(x_nhwc)
        expected = fixed_forward_raw(layer, formats, x_raw)
        overflows = count_overflows(layer, formats, x_nhwc)
        bar.step("golden model")
        engine = DepthwiseEngine(spec, formats, lanes, kernel_raw, bias_raw, weights=weights,
                                 reuse=reuse)
        bar.step("engine")
        result, timing = _run(engine, x_raw, sim, stall, seed, build_dir, ideal, bar)
        bar.step("simulation")
        report = _report(layer, formats, x_nhwc, lanes, sim, stall, weights, reuse, engine,
                         result, expected, ideal, overflows, timing)
        bar.step("comparison")
    return result.outputs, report


def _run(engine, x_raw, sim, stall, seed, build_dir, ideal, bar):
    """(StreamResult, NativeTiming or None) from the chosen simulator."""
    timing = None
    if sim == "amaranth":
        cycles = ideal * (1 + stall) / (1 - stall) ** 2
        seconds = amaranth_seconds(cycles, engine.lanes, engine.spec.depth_multiplier)
        if seconds > LONG_RUN_SECONDS:
            bar.note(f"the Amaranth simulation of about {cycles:,.0f} cycles will take about "
                     f"{seconds:,.0f} s; --sim verilator does it in seconds")
        result = run_amaranth(engine, x_raw, stall=stall, seed=seed)
    elif sim.startswith("cocotb-"):
        from .cocotb_sim import run_cocotb
        result = run_cocotb(engine, x_raw, simulator=sim.removeprefix("cocotb-"), stall=stall,
                            seed=seed, build_dir=build_dir)
    else:
        from pathlib import Path

        from .native_sim import _build, default_native_root, run_native_timed
        # the build as a step of its own: the run then finds it in the cache
        root = (Path(build_dir) if build_dir is not None else default_native_root()).resolve()
        _, build_seconds = _build(sim, engine, root)
        bar.step("build")
        result, timing = run_native_timed(engine, x_raw, simulator=sim, stall=stall, seed=seed,
                                          build_dir=root)
        timing.build_seconds = build_seconds
    return result, timing


def _report(layer, formats, x_nhwc, lanes, sim, stall, weights, reuse, engine, result,
            expected, ideal, overflows, timing):
    spec = layer.spec
    frames = len(x_nhwc)
    output = formats.output.to_float(result.outputs)
    reference = float_forward_nhwc(layer, np.asarray(x_nhwc, dtype=np.float64))
    report = {
        "layer": spec.name,
        "input_shape": list(spec.input_shape),
        "output_shape": list(spec.output_shape),
        "formats": formats.to_dict(),
        "sim": sim,
        "lanes": lanes,
        "reuse": reuse,
        "weights": weights,
        "stall": stall,
        "frames": frames,
        "cycles": result.cycles,
        "ideal_cycles": ideal,
        "efficiency": ideal / result.cycles,
        "latency_cycles": result.latency_cycles,
        "mismatches": int(np.count_nonzero(result.outputs != expected)),
        "framing_errors": len(result.framing),
        "error_flag": result.error,
        "max_abs_error_vs_float": float(np.max(np.abs(output - reference))),
        "line_buffer_words": engine.line_buffer_words,
        "line_buffer_min_words": line_buffer_minimum(spec),
        "multipliers": engine.multipliers,
        "overflows": overflows,
    }
    if timing is not None:
        report.update(sim_seconds=round(timing.sim_seconds, 4),
                      cycles_per_second=round(timing.cycles_run / timing.sim_seconds),
                      cycles_run=timing.cycles_run,
                      cycles_per_cpu_second=round(timing.cycles_run
                                                  / max(timing.sim_cpu_seconds, 1e-6)),
                      build_seconds=round(timing.build_seconds, 2))
    return report
