"""Simulate a layer's engine on its input and compare it with the fixed golden model."""

import numpy as np

from .amaranth_sim import run_amaranth

__all__ = ["SIMULATORS", "simulate_layer", "simulate_design", "line_buffer_minimum",
           "amaranth_seconds"]

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
    """Run ``x_nhwc`` (float, N frames) through a depthwise layer's engine; returns (raw
    output, report): ``simulate_design`` of ``Design(layer, formats, lanes, reuse,
    weights)``.  The raw output is int64 (N, oh, ow, C*M) channels last."""
    from ..design import Design

    layer.spec.check_lanes(lanes)
    design = Design(layer, formats, lanes=lanes, reuse=reuse, weights=weights)
    raw, _, report = simulate_design(design, x_nhwc, sim=sim, stall=stall, seed=seed,
                                     build_dir=build_dir, progress=progress)
    return raw, report


def simulate_design(design, x_nhwc, *, sim="amaranth", stall=0.0, seed=0, build_dir=None,
                    progress=None):
    """Run ``x_nhwc`` (N frames, channels last) through the engine of ``design`` (any layer
    kind, see ``dwconv.kinds``) and compare it with its golden model.

    Returns (raw output, raw golden output, report), both raw arrays int64 (N, oh, ow, out
    channels) channels last.  The report holds the fields of SPEC section 5 and a few more
    about the design.  With reuse R the engine takes one beat every R cycles, so
    ``ideal_cycles`` is R times the beats (``efficiency`` then says how close it comes to
    that rate).  ``mismatches`` counts raw output values (an int8 layer's: int8 values)
    that differ from the golden model.  ``max_abs_error_vs_float`` compares the dequantized
    output with the float model (Keras' layer or block); an int8 TFLite layer has none, so
    its report leaves the field out.  ``overflows`` counts the values that overflow the
    input, accumulator and output formats (a separable block also ``mid``;
    ``golden.overflow``); an int8 layer's datapath saturates by design (all 0).
    ``progress``: None, or a callable(total, what) giving a ``dwconv.progress.Progress``
    for the run's steps (golden model, engine, the build for verilator and icarus,
    simulation, comparison); a long Amaranth run is announced first.
    """
    if sim not in SIMULATORS:
        raise ValueError(f"sim must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    from ..progress import progress_for

    kind = design.kind
    if sim != "amaranth":
        from ..flows.tools import require_tools
        require_tools(sim)          # before any work: a missing tool is the user's to fix
    ideal = design.ideal_cycles(len(x_nhwc))
    native = sim in ("verilator", "icarus")
    with progress_for(progress, 5 if native else 4, f"simulate ({sim})") as bar:
        x_raw = kind.quantize(design, x_nhwc)
        expected = kind.forward_raw(design, x_raw)
        overflows = kind.overflows(design, x_nhwc)
        bar.step("golden model")
        engine = kind.engine(design, None)
        bar.step("engine")
        result, timing = _run(engine, x_raw, sim, stall, seed, build_dir, ideal, bar)
        bar.step("simulation")
        report = _report(design, x_nhwc, sim, stall, result, expected, ideal, overflows,
                         timing)
        bar.step("comparison")
    return result.outputs, expected, report


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


def _report(design, x_nhwc, sim, stall, result, expected, ideal, overflows, timing):
    spec = design.spec
    kind = design.kind
    frames = len(x_nhwc)
    report = {
        "layer": spec.name,
        **kind.report(design),
        "input_shape": list(spec.input_shape),
        "output_shape": list(design.layer.output_shape if hasattr(design.layer, "filters")
                             else spec.output_shape),
        "formats": design.formats.to_dict(kind.name == "separable"),
        "sim": sim,
        "lanes": design.lanes,
        "reuse": design.reuse,
        "weights": design.weights,
        "stall": stall,
        "frames": frames,
        "cycles": result.cycles,
        "ideal_cycles": ideal,
        "efficiency": ideal / result.cycles,
        "latency_cycles": result.latency_cycles,
        "mismatches": int(np.count_nonzero(result.outputs != expected)),
        "framing_errors": len(result.framing),
        "error_flag": result.error,
    }
    reference = kind.float_nhwc(design, x_nhwc)
    if reference is not None:
        output = design.formats.output.to_float(result.outputs)
        report["max_abs_error_vs_float"] = float(np.max(np.abs(output - reference)))
    report.update(line_buffer_words=design.line_buffer_words,
                  line_buffer_min_words=line_buffer_minimum(spec),
                  multipliers=design.multipliers, overflows=overflows)
    if timing is not None:
        report.update(sim_seconds=round(timing.sim_seconds, 4),
                      cycles_per_second=round(timing.cycles_run / timing.sim_seconds),
                      cycles_run=timing.cycles_run,
                      cycles_per_cpu_second=round(timing.cycles_run
                                                  / max(timing.sim_cpu_seconds, 1e-6)),
                      build_seconds=round(timing.build_seconds, 2))
    return report
