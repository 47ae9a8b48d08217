"""BENCH.md from the data ``bench.run_bench`` measured (tables, and how each figure was made)."""

import math

__all__ = ["render"]

FINN_SOURCE = ("Xilinx/finn `src/finn/custom_op/fpgadataflow/`: `fmpadding.py`, "
               "`rtl/convolutioninputgenerator_rtl.py`, `vectorvectoractivation.py` "
               "(`get_exp_cycles`), `transformation/fpgadataflow/set_folding.py`")
HLS4ML_SOURCE = ("hls4ml 1.3 `templates/vivado/nnet_utils/nnet_sepconv2d_stream.h` "
                 "(`depthwise_conv_2d_buffer_cl`) and `nnet_padding_stream.h`")


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "--:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _shape(values):
    return "x".join(str(v) for v in values)


def _kernel(row):
    kh, kw = row["kernel_size"]
    sh, sw = row["strides"]
    stride = "" if (sh, sw) == (1, 1) else f" s{sh}" if sh == sw else f" s{sh}x{sw}"
    return f"{kh}x{kw} {row['padding']}{stride}"


def _name(row):
    """The layer's name, with the MobileNetV2 variant it comes from (names repeat)."""
    source = row["source"]
    if source.startswith("MobileNetV2 alpha "):
        alpha, size = source.split()[2:4]
        return f"{row['layer']} ({alpha}, {size.split('x')[0]})"
    return row["layer"]


def _geomean(values):
    values = [v for v in values if v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def _summary(layers):
    big = [r for r in layers if r["input_shape"][0] >= 32 and r["input_shape"][1] >= 32]
    simulated = [r for r in layers if "shared_with" not in r["simulation"]]
    mismatches = sum(r["simulation"]["mismatches"] for r in simulated)
    lines = [f"- {len(layers)} layers, {len(simulated)} simulations in Verilator"
             + (" (each layer twice: without and with stalls)" if simulated and "stalled" in
                simulated[0]["simulation"] else "")
             + f"; mismatches against the fixed golden model: **{mismatches}**."]
    timed = [r["simulation"] for r in simulated if "sim_seconds" in r["simulation"]]
    if timed:
        seconds = sum(s["sim_seconds"] + s["stalled"]["sim_seconds"] for s in timed)
        cycles = sum(s["cycles"] + s["stalled"]["cycles"] for s in timed)
        builds = sum(s["build_seconds"] for s in timed)
        lines.append(f"- Simulated {cycles:,} cycles in {seconds:.1f} s inside the simulator "
                     f"({cycles / seconds:,.0f} cycles/s overall); builds {builds:.0f} s; "
                     f"simulations with golden models and data {sum(s['seconds'] for s in timed):.0f} s "
                     f"in all.")
    if big:
        worst = min(big, key=lambda r: r["simulation"]["efficiency"])
        reached = all(r["simulation"]["efficiency"] >= 0.98 for r in big)
        lines.append(f"- Efficiency of back-to-back frames on layers of 32x32 and larger: "
                     f"lowest **{worst['simulation']['efficiency']:.4f}** ({worst['layer']}), "
                     f"all {len(big)} >= 0.98: {'yes' if reached else 'no'}.")
    for name, label in (("hls4ml", "hls4ml io_stream"), ("finn_matched", "FINN matched"),
                        ("input_bound", "the input-bound limit")):
        lines.append(f"- Cycles per frame against {label}: geometric mean ratio "
                     f"**{_geomean([r['ratio'][name] for r in layers]):.3f}** (ours / theirs; "
                     f"below 1 is fewer cycles).")
    ratios = [r["line_buffer_words"] / r["line_buffer_min_words"] for r in layers]
    lines.append(f"- Line buffer against the minimum: {min(ratios):.3f} to {max(ratios):.3f} "
                 f"times.")
    return "\n".join(lines)


def _cycles_table(layers):
    rows = []
    for r in layers:
        s = r["simulation"]
        if "stalled" in s:
            t = s["stalled"]
            speed = [f"{s['build_seconds']:.1f}", f"{s['sim_seconds']:.2f}",
                     f"{s['cycles_per_second']:,}", t["cycles"], f"{t['sim_seconds']:.2f}",
                     f"{t['cycles_per_second']:,}"]
        else:
            speed = ["-"] * 6
        rows.append([r["source"], r["layer"], _shape(r["input_shape"]), _kernel(r), r["lanes"],
                     s["frames"], s["cycles"], s["ideal_cycles"], f"{s['efficiency']:.4f}",
                     s["overhead_cycles"], s["latency_cycles"], s["mismatches"], *speed])
    return _table(["source", "layer", "input HxWxC", "kernel", "P", "frames", "cycles",
                   "ideal", "efficiency", "overhead", "latency", "mismatches", "build s",
                   "sim s", "cycles/s", "stalled cycles", "stalled sim s", "stalled cycles/s"],
                  rows)


def _peers_table(layers):
    rows = []
    for r in layers:
        p, q = r["peers_per_frame"], r["ratio"]
        rows.append([_name(r), _shape(r["input_shape"]), _kernel(r), r["lanes"],
                     f"{r['cycles_per_frame']:.0f}", p["input_bound"],
                     f"{q['input_bound']:.3f}", p["hls4ml"], f"{q['hls4ml']:.3f}",
                     p["finn_matched"], f"{q['finn_matched']:.3f}", p["finn_default"],
                     f"{q['finn_default']:.3f}"])
    return _table(["layer", "input", "kernel", "P", "ours/frame", "input bound", "ratio",
                   "hls4ml", "ratio", "FINN matched", "ratio", "FINN default", "ratio"], rows)


def _storage_table(layers):
    rows = [[_name(r), _shape(r["input_shape"]), _kernel(r), r["lanes"],
             r["line_buffer_words"], r["line_buffer_min_words"],
             f"{r['line_buffer_words'] / r['line_buffer_min_words']:.3f}", r["multipliers"]]
            for r in layers]
    return _table(["layer", "input", "kernel", "P", "line buffer words", "minimum", "ratio",
                   "multipliers"], rows)


def _quantization_table(layers):
    rows = []
    for r in layers:
        q = r["quantization"]
        cells = [_name(r), _shape(r["input_shape"]), f"{q['max_abs_keras']:.3g}",
                 f"{q['float_vs_keras']:.2g}"]
        for bits in ("8", "16"):
            e = q["fixed_vs_keras"][bits]
            f = e["formats"]
            cells += [f"{f['input']} / {f['weight']}", f"{e['max_abs_error']:.3g}"]
        rows.append(cells)
    return _table(["layer", "input", "max abs Keras", "float golden vs Keras",
                   "8-bit input / weight", "max abs error", "16-bit input / weight",
                   "max abs error"], rows)


def _speed_section(speed):
    rows = []
    for name, s in speed["simulators"].items():
        if "skipped" in s:
            rows.append([name, "-", "-", "-", "-", "-", "-", s["skipped"]])
            continue
        first = s["build_or_first_run_seconds"]
        native = name in ("verilator", "icarus")
        built = ("cached" if native and not first else f"{first} s (build)" if native else
                 "-" if first is None else f"{first} s (build + one frame)")
        per_cpu = s.get("cycles_per_cpu_second")
        rows.append([name, s.get("frames", speed["frames"]), s.get("stall", 0.0), s["cycles"],
                     s.get("sim_seconds", s["seconds"]), f"{s['cycles_per_second']:,}",
                     "-" if per_cpu is None else f"{per_cpu:,}", built])
    e = speed.get("end_to_end")
    end_to_end = "" if not e else (
        f"End to end, `simulate_layer` (what `dwconv simulate --sim verilator --stall "
        f"{e['stall']}` runs, less the files: input quantization, fixed and float golden "
        f"models, engine and Verilog generation, the cached build, simulation, comparison) on "
        f"{e['frames']} frames: **{e['seconds']} s**, of which {e['sim_seconds']} s in the "
        f"simulator ({e['cycles_per_second']:,} cycles/s"
        + (f", {e['cycles_per_cpu_second']:,} per CPU second" if "cycles_per_cpu_second" in e
           else "") + f"), {e['mismatches']} mismatches.")
    matched = all(s.get("mismatches", 0) == 0 for s in speed["simulators"].values())
    g = speed["golden"]
    golden = _table(["model", f"seconds for {g['frames']} frames", "against Keras"], [
        ["Keras predict (JAX, compiled)", f"{g['keras_predict_seconds']:.4f}", "1.00"],
        ["float golden (NumPy)", f"{g['float_golden_seconds']:.4f}",
         f"{g['float_golden_seconds'] / g['keras_predict_seconds']:.2f}"],
        ["fixed golden (NumPy, int64)", f"{g['fixed_golden_seconds']:.4f}",
         f"{g['fixed_golden_seconds'] / g['keras_predict_seconds']:.2f}"],
    ])
    return "\n\n".join([
        f"Layer {speed['layer']} ({_shape(speed['input_shape'])}, "
        f"{_shape(speed['kernel_size'])} {speed['padding']}, P={speed['lanes']}), "
        f"frames back to back, all mismatches 0: {'yes' if matched else 'NO'}. "
        "verilator and icarus are the compiled paths (`--sim verilator`, `--sim icarus`: "
        "tb_stream.v, no Python in the cycle loop), timed inside the simulator process "
        "(start-up and file reading included) with a cached build; cycles per CPU second "
        "count the simulator's own CPU time, which a machine shared with other work does not "
        "inflate.  The cocotb runs "
        "include cocotb's start-up and its Python per-cycle AXI-Stream source, sink and "
        "monitor, which dominate; their build is timed apart.",
        _table(["simulator", "frames", "stall", "cycles", "seconds", "cycles/s",
                "cycles/CPU s", "build"], rows),
        end_to_end, golden])


def _fmax(r):
    """Best Fmax over the seeds, and the median when there were several; seeds stopped at
    their time limit are named."""
    seeds = r.get("fmax_seeds_mhz") or [r["fmax_mhz"]]
    stopped = r.get("seeds_unfinished") or []
    return ((f"{r['fmax_mhz']}" if len(seeds) == 1 else
             f"{r['fmax_mhz']} / {r['fmax_median_mhz']} ({len(seeds)} seeds)")
            + (f"; seed {', '.join(map(str, stopped))} stopped after {r['seed_timeout_s']} s"
               if stopped else ""))


def _signal_name(cell):
    """The engine signal a netlist cell was made from: "x$153[2]" is x, but an unnamed
    signal ("$signal$10") keeps its whole name."""
    name = cell.replace("engine.", "").split("_TRELLIS")[0].split("_SB_")[0]
    scope, _, last = name.rpartition(".")
    if not last.startswith("$"):
        last = last.split("$")[0]
    return f"{scope}.{last}" if scope else last


def _path(r):
    """The critical path, shortened: where it starts and ends, and its delay."""
    path = r.get("critical_path")
    if not path:
        return "-"
    cells = path.get("cells") or []
    ends = [_signal_name(c) for c in (cells[:1] + cells[-1:])]
    return (f"{ends[0]} -> {ends[-1]}: {path['delay_ns']} ns ({path['logic_ns']} logic, "
            f"{len(cells)} cells)") if ends else f"{path['delay_ns']} ns"


def _boards(synthesis):
    """One line per board build of the seed layer, with its netlist simulation."""
    simulated = lambda b: b.get("simulated", True)
    icarus = lambda b: simulated(b) and b.get("netlist_simulator", "icarus") == "icarus"
    how = lambda b: ("" if icarus(b) else
                     f" (Verilator, {b['netlist_seconds']:.0f} s with its build)")
    return [f"- `dwconv build --board {b['board']} --lanes {b['lanes']} --reuse "
            f"{b.get('reuse', 1)}{' --simulate-netlist' if icarus(b) else ''}` "
            f"(self-checking design, {b['configuration']}): "
            + (f"bitstream of {b['bitstream_bytes']} bytes; "
               + (f"its netlist, simulated{how(b)}, lit the pass LED after "
                  f"{b['netlist_cycles']} cycles; " if simulated(b) else
                  "netlist not simulated; ")
               + f"{b['seconds']:.0f} s"
               if b["exit_code"] == 0 else f"failed: {b.get('error')}")
            for b in synthesis.get("boards", [])]


def _synthesis_section(synthesis):
    if "skipped" in synthesis:
        return f"Not measured in this run: {synthesis['skipped']}."
    rows, failed, paths, notes = [], [], [], []
    for r in synthesis["results"]:
        if "error" in r:
            failed.append(f"- {r['configuration']} ({r.get('weights', 'const')} weights) on "
                          f"{r['target']} {r['device']} at P={r['lanes']}, "
                          f"R={r.get('reuse', 1)}: {r['error']}")
            continue
        label = (f"{r['configuration']}, {r['part']}, P={r['lanes']}, R={r.get('reuse', 1)}, "
                 f"{r.get('weights', 'const')}")
        rows.append([r["configuration"], r["part"], r["lanes"], r.get("reuse", 1),
                     r.get("weights", "const"), r.get("real_multipliers", r["multipliers"]),
                     r["line_buffer_words"], r["luts"], r["ffs"], r.get("engine_ffs", "-"),
                     r["dsps"], r["brams"], r.get("lutram", "-"), _fmax(r)])
        paths.append(f"- {label}: {_path(r)}")
        notes += [f"- {label}: {note}" for note in r.get("notes", [])]
    boards = _boards(synthesis)
    return ("`dwconv synth --seeds N` on exported layers: constant and port weights, 8-bit "
            "formats (the seed layer: the demo's formats), yosys + nextpnr from YoWASP, the "
            "engine in its I/O harness (engine FFs exclude the harness' registers).  "
            "Multipliers are DSP block instances with their registers (MULT18X18D, SB_MAC16; "
            "hw/multiplier.py).  Fmax: best / median over nextpnr seeds; the critical path "
            "is the best seed's.\n\n" +
            _table(["configuration", "part", "P", "R", "weights", "multipliers",
                    "line buffer words", "LUTs", "FFs", "engine FFs", "DSPs", "BRAMs",
                    "LUT RAM", "Fmax MHz best / median"], rows) +
            ("\n\nCritical paths:\n\n" + "\n".join(paths) if paths else "") +
            ("\n\nMultipliers not in DSP blocks:\n\n" + "\n".join(notes) if notes else "") +
            ("\n\nDid not fit (or failed):\n\n" + "\n".join(failed) if failed else "") +
            ("\n\nBoard builds (amaranth-boards, YoWASP tools):\n\n" + "\n".join(boards)
             if boards else ""))


def render(data):
    about, layers = data["about"], data["layers"]
    return "\n\n".join([
        "# dwconv benchmark",
        f"Made by `{about['command']}` (campaigns/bench.py) in {about['seconds']:.0f} s"
        + (f" (the layers: {about['layers_seconds']:.0f} s, {about['layers_cpu_seconds']:.0f} s "
           f"of CPU with the tools it ran)" if "layers_cpu_seconds" in about else "")
        + (f" plus {about['synthesis_seconds']:.0f} s of synthesis and board builds"
           if "synthesis_seconds" in about else "")
        + (f" ({about['synthesis_note']})" if "synthesis_note" in about else "") + " on "
        f"{about['cpus']} CPUs ({about['machine']}, Python {about['python']}); every figure "
        "is also in bench.json.  Cycles are **simulated** (Verilator on the shipped Verilog, "
        "compiled testbench, frames back to back without stalls, first input beat accepted to "
        "last output beat taken; each layer runs again with random stalls); limits, peer figures, storage minimum and quantization error "
        "are **computed**.",
        _summary(layers),
        "## Cycles and efficiency (simulated)",
        f"P: {about['lanes_rule']}.  Frames: {about['frames_rule']}.  Efficiency = ideal "
        "(frames * H*W*C/P) / cycles.  Overhead = cycles - ideal: the pipeline fill of the "
        "first frame and the flush of the last frame's bottom/right padded outputs, paid "
        "once per burst, not per frame.  Every layer is simulated with its own weights (its "
        "own build: `build s`, 0 when cached), then again with stalls: `sim s` is the time "
        "inside the simulator process.  The MobileNetV2 stride-2 layers are `valid` on an input already "
        "padded by Keras' ZeroPadding2D (e.g. 113x113); the engine could make that padding "
        "itself (`same` on 112x112), but the layers are measured as Keras defines them.",
        _cycles_table(layers),
        "## Against the input-bound limit and the peers (computed, cycles per frame)",
        "Matched parallelism: every design gets P channel lanes and P*kh*kw*M multipliers, "
        "the engine's.  *input bound* = H*W*C/P, one input beat per cycle.  *hls4ml* "
        f"({HLS4ML_SOURCE}) streams the padded frame, (H+pt+pb)*(W+pl+pr) pixels at reuse "
        "factor 1 with all C channels per beat (C*kh*kw multipliers); scaled to P lanes, "
        "(H+pt+pb)*(W+pl+pr)*C/P.  *FINN matched* "
        f"({FINN_SOURCE}): the slowest of FMPadding (padded H*W*C/P), the RTL sliding window "
        "in parallel-window mode (padded H*W*C/P + 2) and the VVAU with PE=P, SIMD=kh*kw "
        "(C*kh*kw/(PE*SIMD)*OH*OW).  *FINN default* is what SetFolding picks below PE = C: "
        "the window serialized tap by tap (RTL generator, default style) and a VVAU with "
        "SIMD=1, so only P multipliers; it is listed for reference, not matched.  The peers' "
        "formulas are per frame in steady state; ours is the measured cycles divided by "
        "the frames, fill and flush included.  Ratio = ours / theirs.",
        _peers_table(layers),
        "## Storage and multipliers (computed from the design)",
        "Minimum = ((kh-1)*dh*W + (kw-1)*dw + 1)*C words, the least any sliding window can "
        "keep.  The line buffer is held in `amaranth.lib.memory` (block RAM).  Multipliers = "
        "kh*kw*P*M, full rate; with constant weights synthesis shrinks them further.",
        _storage_table(layers),
        "## Quantization error against Keras (computed)",
        "Float golden = Keras (float32) to rounding.  The fixed formats follow docs/formats.md's "
        "rule (integer bits from the largest magnitude, round to nearest, saturate; output "
        "16 bits); the seed layer's 8-bit column is the demo's formats.  Inputs are random: "
        "uniform [0, 6) for MobileNetV2 (its depthwise layers read ReLU6 outputs), uniform "
        "[-4, 4) otherwise.  MobileNetV2 is built with weights=None (random initial weights, "
        "nothing downloaded), saved as .keras and read back with dwconv's reader.",
        _quantization_table(layers),
        "## Simulation speed",
        _speed_section(data["speed"]),
        "## Synthesis",
        _synthesis_section(data["synthesis"]),
    ]) + "\n"
