"""BENCH.md from the data ``bench.run_bench`` measured (tables, and how each figure was made)."""

import math
import textwrap

__all__ = ["render", "readme_section", "update_readme"]

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


def _seed_timeout(synthesis):
    """The nextpnr seeds' time limit of the synthesis runs (the bench gives them all one)."""
    return next((r["seed_timeout_s"] for r in synthesis.get("results", [])
                 if r.get("seed_timeout_s")), None)


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
        f"Made by `{about['command']}` (sim/bench.py) in {about['seconds']:.0f} s"
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
        "Float golden = Keras (float32) to rounding.  The fixed formats follow the README's "
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


# ---------------------------------------------------------------------------------------------
# The README's "Measured figures" section, from the same data

README_SECTION = "## Measured figures"


def _readme_throughput(layers):
    picked = [r for r in layers if r["source"] in ("seed", "reference")]
    picked += [r for r in layers if r["source"].startswith("MobileNetV2 alpha 1.0")
               and "shared_with" not in r["simulation"]]
    rows = []
    for r in picked:
        s, q = r["simulation"], r["ratio"]
        name = (f"MobileNetV2 1.0 {r['layer']}" if r["source"].startswith("MobileNetV2")
                else r["layer"])
        rows.append([name, _shape(r["input_shape"]), _kernel(r), r["lanes"], s["frames"],
                     s["cycles"], f"{s['efficiency']:.4f}", f"{q['input_bound']:.3f}",
                     f"{q['hls4ml']:.3f}", f"{q['finn_matched']:.3f}",
                     f"{r['line_buffer_words']} / {r['line_buffer_min_words']}"])
    return _table(["layer", "input HxWxC", "kernel", "P", "frames", "cycles", "efficiency",
                   "/ input bound", "/ hls4ml", "/ FINN", "line buffer / minimum words"], rows)


def _readme_synthesis(synthesis):
    if "skipped" in synthesis:
        return f"Not measured in this run: {synthesis['skipped']}."
    rows, failed = [], []
    for r in synthesis["results"]:
        if "error" in r:
            failed.append(f"{r['configuration']} ({r.get('weights', 'const')} weights) on "
                          f"{r['target']} {r['device']} at P={r['lanes']}, "
                          f"R={r.get('reuse', 1)}")
            continue
        rows.append([r["configuration"], r["part"], r["lanes"], r.get("reuse", 1),
                     r.get("weights", "const"), r["luts"],
                     f"{r['ffs']} ({r.get('engine_ffs', '-')})", r["dsps"], r["brams"],
                     r.get("lutram", "-"), _fmax(r), _path(r)])
    return (_table(["configuration", "part", "P", "R", "weights", "LUTs", "FFs (engine)",
                    "DSPs", "BRAMs", "LUT RAM", "Fmax MHz best / median", "critical path"],
                   rows) +
            (f"\n\nDid not fit, or place and route did not finish ([BENCH.md](BENCH.md) "
             f"gives the reason): {'; '.join(failed)}." if failed else "") +
            ("\n\nBoard builds of the seed layer:\n\n" + "\n".join(_boards(synthesis))
             if synthesis.get("boards") else ""))


def readme_section(data):
    """The README's measured-figures section (markdown, heading included)."""
    layers, speed = data["layers"], data["speed"]
    mobilenet = {alpha: [r for r in layers if r["source"].startswith(f"MobileNetV2 alpha "
                                                                     f"{alpha} ")]
                 for alpha in ("1.0", "0.35")}
    simulated = [r for r in layers if "shared_with" not in r["simulation"]]
    big = [r for r in layers if r["input_shape"][0] >= 32 and r["input_shape"][1] >= 32]
    low = [r for r in layers if r["simulation"]["efficiency"] < 0.98]
    finn_default = [1 / r["ratio"]["finn_default"] for r in layers]
    storage = [r["line_buffer_words"] / r["line_buffer_min_words"] for r in layers]
    mob = mobilenet["1.0"] + mobilenet["0.35"]
    seed_limit = _seed_timeout(data["synthesis"])

    def worst(bits):
        return max(r["quantization"]["fixed_vs_keras"][bits]["max_abs_error"] for r in mob)

    def hls4ml(rows):
        return f"{_geomean([r['ratio']['hls4ml'] for r in rows]):.2f}"

    same = {r["layer"]: r["ratio"]["hls4ml"] for r in layers}
    goal = ("holds on every such layer" if all(r["simulation"]["efficiency"] >= 0.98
                                               for r in big) else "is missed on some")
    seed = next(r for r in layers if r["layer"] == "seed_dw")
    simulators = ", ".join(f"{name} {s['cycles_per_second']:,} cycles/s"
                           + (f" ({s['cycles_per_cpu_second']:,} per CPU second)"
                              if "cycles_per_cpu_second" in s else "")
                           + (f" ({s['frames']} frames, stalls {s['stall']})"
                              if s.get("stall") else "")
                           for name, s in speed["simulators"].items() if "skipped" not in s)
    e = speed.get("end_to_end")
    timed = [r["simulation"] for r in layers if "stalled" in r["simulation"]]
    cycles = sum(s["cycles"] + s["stalled"]["cycles"] for s in timed)
    sim_seconds = sum(s["sim_seconds"] + s["stalled"]["sim_seconds"] for s in timed)
    g = speed["golden"]
    text = [
        README_SECTION,
        f"All from `make bench` ([BENCH.md](BENCH.md) has every layer and how each figure is "
        f"made; bench.json has the numbers; `python -m dwconv.sim.bench --readme README.md` "
        f"rewrites this section from them), on a shared {data['about']['cpus']}-core "
        f"{data['about']['machine']} machine. Cycles are simulated in Verilator on the shipped "
        f"Verilog, frames back to back, from the first input beat accepted to the last output "
        f"beat taken; every simulated output equals the fixed golden model "
        f"({sum(r['simulation']['mismatches'] for r in simulated)} mismatches; "
        f"{len(layers)} layers, each simulated at full size with its own weights, "
        f"{simulated[0]['simulation']['frames']} frames without and then with random stalls)."
        f" P is the largest divisor of C not above 8.",
        "**Throughput.** The engine takes one input beat per cycle: a burst of N frames costs "
        "N*H*W*C/P cycles plus a fixed fill and flush (the pipeline, and the last frame's "
        "bottom padded outputs), so efficiency rises with N and with the frame size.",
        _readme_throughput(layers),
        "Ratios are cycles per frame, ours over theirs, at matched parallelism (P lanes and "
        "P*kh*kw multipliers for everyone); below 1 is fewer cycles. hls4ml io_stream and "
        "FINN stream the padded frame, (H+pt+pb)*(W+pl+pr)*C/P beats per frame, so `same` "
        "layers gain most"
        + (f": {1 - same['ref_3x3_same']:.0%} fewer cycles on 32x32 3x3"
           if "ref_3x3_same" in same else "")
        + (f", {1 - same['block_14_depthwise']:.0%} on MobileNetV2's 7x7x960"
           if mobilenet["1.0"] and "block_14_depthwise" in same else "")
        + ". Valid layers (MobileNetV2's stride-2 layers after Keras' ZeroPadding2D) are "
        "input-bound for everyone."
        + (f" Over all {len(mobilenet['1.0'])} depthwise layers of MobileNetV2 the geometric "
           f"mean ratio to hls4ml is {hls4ml(mobilenet['1.0'])} at alpha 1.0 / 224x224 and "
           f"{hls4ml(mobilenet['0.35'])} at alpha 0.35 / 96x96." if mob else "")
        + f" FINN's default folding (the window serialized tap by tap, P multipliers) takes "
        f"{min(finn_default):.1f} to {max(finn_default):.0f} times our cycles (geometric mean "
        f"{_geomean(finn_default):.1f})."
        + (f" The efficiency >= 0.98 goal (32x32 and larger) {goal} (lowest "
           f"{min(r['simulation']['efficiency'] for r in big):.4f})." if big else "")
        + (f" Below 0.98 are {len(low)} layers of {min(r['input_shape'][0] for r in low)}x"
           f"{min(r['input_shape'][1] for r in low)} to {max(r['input_shape'][0] for r in low)}x"
           f"{max(r['input_shape'][1] for r in low)} pixels with "
           f"{min(r['input_shape'][2] for r in low)} to {max(r['input_shape'][2] for r in low)} "
           f"channels (efficiency {min(r['simulation']['efficiency'] for r in low):.3f} to "
           f"{max(r['simulation']['efficiency'] for r in low):.3f}), where the last frame's "
           f"flush is a large part of a short burst." if low else ""),
        f"**Storage.** The line buffer holds ((kh-1)*dh*W + (kw-1)*dw)*C + 3P words, the "
        f"window's span at beat granularity plus two beats of scan delay: {min(storage):.2f} "
        f"to {max(storage):.2f} times the pixel-granular minimum ((kh-1)*dh*W + (kw-1)*dw + "
        f"1)*C, in block RAM (or LUT RAM for short rows on ECP5). Products: kh*kw*P*M per "
        f"cycle; with constant weights and P = C they are shift-and-add trees in logic (no "
        f"DSP blocks), otherwise registered multipliers.",
        "**Quantization error against Keras** (random inputs; formats chosen by the rule in "
        "[Fixed-point formats](#fixed-point-formats)): float golden model against Keras at "
        f"most {max(r['quantization']['float_vs_keras'] for r in layers):.1g}"
        + (f"; fixed point with 8-bit input and weights, max |error| {worst('8'):.3f} on the "
           f"MobileNetV2 layers (inputs in [0, 6)), with 16-bit input and weights "
           f"{worst('16'):.5f}" if mob else "")
        + f"; the seed layer (inputs in [-4, 4)): "
        f"{seed['quantization']['fixed_vs_keras']['8']['max_abs_error']:.3f} with the demo's "
        f"8-bit formats.",
        f"**Simulation speed** ({speed['layer']}: {_shape(speed['input_shape'])}, "
        f"{_shape(speed['kernel_size'])} {speed['padding']}, P={speed['lanes']}, "
        f"{speed['frames']} frames unless said): {simulators} (verilator and icarus: the "
        f"compiled testbench, no Python in the cycle loop; the cocotb runs are dominated by "
        f"cocotb's Python AXI-Stream source, sink and monitor, not by the simulators)"
        + (f"; {e['frames']} frames end to end (data, golden models, cached build, "
           f"simulation with stalls {e['stall']}, comparison) in {e['seconds']} s" if e else "")
        + (f"; all the layers above: {cycles:,} cycles in {sim_seconds:.0f} s inside Verilator"
           if timed else "")
        + f"; the golden "
        f"models take {g['float_golden_seconds'] * 1e3:.1f} ms (float) and "
        f"{g['fixed_golden_seconds'] * 1e3:.1f} ms (fixed) where Keras' compiled predict "
        f"takes {g['keras_predict_seconds'] * 1e3:.1f} ms.",
        "**Synthesis** (`dwconv synth --seeds N` for each run of the bench's `SYNTH_RUNS`, "
        "N with each Fmax"
        + (f", each seed stopped after {seed_limit} s if it had not finished"
           if seed_limit else "") + ": "
        "ECP5 LFE5U-85F and iCE40 UP5K, constant and port weights, several lane counts P "
        "and reuse factors R, 8-bit operands, yosys + nextpnr from YoWASP, multipliers in "
        "DSP blocks with their registers where they fit; LUTs, FFs with the engine's own "
        "in brackets, the best seed's critical path; BENCH.md also lists each run's "
        "multipliers and notes):",
        _readme_synthesis(data["synthesis"]),
    ]
    return "\n\n".join(block if block.startswith("|") else textwrap.fill(
        block, 92, break_long_words=False, break_on_hyphens=False) for block in text) + "\n"


def update_readme(path, data):
    """Replace the measured-figures section of the README at ``path``, up to its tests
    paragraph (kept as written, since the bench does not run the suite)."""
    import pathlib
    import re

    path = pathlib.Path(path)
    text = path.read_text()
    pattern = re.compile(rf"(?ms)^{re.escape(README_SECTION)}\n.*?(?=^\*\*Tests\.\*\*|^## )")
    if not pattern.search(text):
        raise ValueError(f"{path} has no '{README_SECTION}' section")
    path.write_text(pattern.sub(lambda _: readme_section(data) + "\n", text, count=1))
