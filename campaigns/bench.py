"""``make bench``: cycles, storage, multipliers and error on real layers, against the limits
and the peers' published cycle formulas; simulator speeds; synthesis figures.

Writes ``bench.json`` (every figure, with how it was obtained) and ``BENCH.md`` (the same as
tables).  Run ``python -m dwconv.campaigns.bench --help`` for the options; ``--quick`` runs the
seed layer alone (a smoke run, minutes less).

What is measured and what is computed:

- **simulated** (Verilator on the shipped Verilog, compiled testbench of ``native_sim``, no
  Python in the cycle loop): every layer at full size, its own weights and its own build,
  8 frames back to back twice: without stalls (cycles, from the first input beat accepted to
  the last output beat taken) and with random source pauses and sink backpressure (10% of
  cycles each); the mismatch count against the fixed golden model covers both runs, and each
  run's simulator time and speed are recorded.
- **computed**: the input-bound limit H*W*C/P, the peers' cycle formulas (below), the
  line-buffer minimum, and the quantization error (golden models against Keras itself).

Peer formulas, per frame, normalized to the same P channel lanes and P*kh*kw*M multipliers:

- hls4ml io_stream (``nnet_sepconv2d_stream.h``, ``depthwise_conv_2d_buffer_cl``: one
  pipelined iteration per pixel of the padded frame at II = reuse factor; same padding is a
  separate ZeroPadding2D layer, ``nnet_padding_stream.h``): (H+pt+pb)*(W+pl+pr) beats of all
  C channels at reuse factor 1, i.e. C*kh*kw multipliers.  At P lanes (the same multipliers
  as ours) that is (H+pt+pb)*(W+pl+pr)*C/P.
- FINN (Xilinx/finn, ``src/finn/custom_op/fpgadataflow/``): FMPadding (``fmpadding.py``,
  padded H*W*C/SIMD), the RTL sliding-window generator (``rtl/convolutioninputgenerator_rtl.py``)
  and the VVAU (``vectorvectoractivation.py``, C*kh*kw/(PE*SIMD)*OH*OW) form a dataflow
  pipeline whose frame time is its slowest stage's ``get_exp_cycles``.  Matched: VVAU PE=P,
  SIMD=kh*kw with the generator in parallel-window mode (H'*W'*C/P + 2).  FINN's default
  folding (SetFolding raises VVAU SIMD only once PE = C) serializes the window tap by tap:
  buffer + OH*max(OW*kh*kw*C/P + OW*(sw-1)*(C/P-1), sw*W'*C/P) + (sh-1)*W'*C/P, with only P
  multipliers; it is listed for reference, not as a matched comparison.
"""

import argparse
import contextlib
import json
import math
import os
import pathlib
import platform
import re
import sys
import time

import numpy as np

from ..golden.fixed_ref import fixed_forward_raw, quantize_weights
from ..golden.float_ref import float_forward_nhwc
from ..golden.formats import LayerFormats
from ..golden.spec import LayerSpec
from ..hw.engine import DepthwiseEngine
from ..progress import Progress
from ..demo import DEMO_FORMATS, DEMO_LANES, seed_layer
from ..models.keras_import import import_keras
from ..sim.simulate import line_buffer_minimum
from ..flows.tools import ToolTimeout, run_tool

__all__ = ["main", "run_bench", "synthesis_only", "boards_only", "dscnn_only",
           "choose_formats", "peer_cycles", "lanes_for"]

MOBILENETS = ((0.35, 96), (1.0, 224))
MAX_LANES = 8
#: frames per simulation, back to back
SIM_FRAMES = 8
#: the second run of each layer: probability per cycle of a source pause and, independently,
#: of sink backpressure
SIM_STALL = 0.1
#: Amaranth, cocotb and Icarus take ~1,000 cycles/s: 8 frames; compiled Verilator 256
SPEED_FRAMES, NATIVE_SPEED_FRAMES = 8, 256
OUTPUT_BITS = 16
#: MobileNetV2's depthwise layers read ReLU6 outputs: random inputs in [0, 6)
RELU6_RANGE = (0.0, 6.0)
#: the 32x32x8 layers of the engine issue (P = 8)
REFERENCE_LAYERS = [
    LayerSpec(input_shape=(32, 32, 8), kernel_size=(3, 3), padding="same", name="ref_3x3_same"),
    LayerSpec(input_shape=(32, 32, 8), kernel_size=(3, 3), strides=(2, 2), padding="same",
              name="ref_3x3_same_s2"),
    LayerSpec(input_shape=(32, 32, 8), kernel_size=(5, 5), padding="valid",
              name="ref_5x5_valid"),
]


def lanes_for(spec):
    """P = the largest divisor of C not above 8: one pixel per beat up to 8 channels."""
    return max(p for p in range(1, min(spec.channels, MAX_LANES) + 1) if spec.channels % p == 0)


def _int_bits(magnitude):
    """Integer bits (sign included) of a signed format holding +-magnitude; at least 0."""
    if magnitude <= 0:
        return 0
    return max(0, math.floor(math.log2(magnitude)) + 2)


def choose_formats(layer, input_max, bits):
    """Formats by docs/formats.md's rule: integer bits from the largest magnitude, the rest fraction.

    Input: |x| <= input_max; weight and bias: their largest magnitude; output (16 bits): the
    largest sum of |w|*input_max + |b| over channels.  Round to nearest, saturate.
    """
    kernel, bias = np.abs(layer.kernel), np.abs(layer.bias)
    bound = float(np.max(kernel.sum(axis=(0, 1)).reshape(-1) * input_max + bias))

    def fmt(width, magnitude):
        return f"fixed<{width},{min(width, _int_bits(magnitude))},RND,SAT>"

    return LayerFormats.from_strings(
        input=fmt(bits, input_max), weight=fmt(bits, float(kernel.max())),
        bias=fmt(bits, float(bias.max())), output=fmt(OUTPUT_BITS, bound))


def padded_size(spec):
    top, bottom, left, right = spec.pads
    return spec.height + top + bottom, spec.width + left + right


def peer_cycles(spec, lanes):
    """Cycles per frame of the peers' published formulas at P lanes (see the module doc)."""
    kh, kw = spec.kernel_size
    sh, sw = spec.strides
    dh, dw = spec.dilation_rate
    hp, wp = padded_size(spec)
    oh, ow = spec.out_height, spec.out_width
    fold = spec.channels // lanes                       # C / P (FINN: IFMChannels / SIMD)
    multiplier = spec.depth_multiplier
    padding = hp * wp * fold                            # FMPadding, SIMD = P
    vvau_matched = spec.channels * multiplier * kh * kw // (lanes * kh * kw) * oh * ow
    swg_parallel = hp * wp * fold + 2
    buffer = ((kh - 1) * dh * wp + (kw - 1) * dw + 1) * fold
    write_block = ow * kw * kh * fold + ow * (sw - 1) * (fold - 1)
    read_block = sw * wp * fold
    swg_default = buffer + oh * max(write_block, read_block) + (sh - 1) * wp * fold
    vvau_simd1 = spec.channels * multiplier * kh * kw // lanes * oh * ow
    return {
        "input_bound": spec.height * spec.width * fold,
        "hls4ml": hp * wp * fold,
        "finn_matched": max(padding, swg_parallel, vvau_matched),
        "finn_default": max(padding, swg_default, vvau_simd1),
    }


class _Log:
    """The benchmark's output: notes with the time since the start, and the progress of each
    phase (``dwconv.progress``: a bar on a terminal, a line per step otherwise, nothing at
    all when ``quiet``).

    Members
    -------
    __call__(text) : a note.
    phase(total, what) : a ``Progress`` of ``total`` steps, the current one until closed.
    step(label) : one step of the current phase.
    """

    def __init__(self, stream=None, *, quiet=False):
        self.stream = sys.stderr if stream is None else stream
        self.mode = "off" if quiet else "auto"
        self.started = time.perf_counter()
        self._phases = []

    def __call__(self, text):
        text = f"[{time.perf_counter() - self.started:6.0f} s] {text}"
        if self._phases:
            self._phases[-1].note(text)
        elif self.mode != "off":
            print(f"dwconv: {text}", file=self.stream, flush=True)

    @contextlib.contextmanager
    def phase(self, total, what):
        with Progress(total, what, mode=self.mode, stream=self.stream) as progress:
            self._phases.append(progress)
            try:
                yield progress
            finally:
                self._phases.pop()

    def step(self, label=""):
        self._phases[-1].step(label)


def _keras_call(keras, keras_layer, x):
    return np.asarray(keras.ops.convert_to_numpy(keras_layer(x)), dtype=np.float64)


def _keras_layer(keras, layer):
    """A built Keras DepthwiseConv2D holding ``layer``'s weights (the float reference)."""
    spec = layer.spec
    conv = keras.layers.DepthwiseConv2D(
        kernel_size=spec.kernel_size, strides=spec.strides, padding=spec.padding,
        depth_multiplier=spec.depth_multiplier, dilation_rate=spec.dilation_rate,
        use_bias=spec.use_bias, activation=spec.activation, name=spec.name)
    conv.build((None, *spec.input_shape))
    conv.set_weights([layer.kernel, layer.bias] if spec.use_bias else [layer.kernel])
    return conv


def _mobilenet_layers(keras, alpha, size, work, log):
    """(Layer, Keras layer) for every DepthwiseConv2D, read back through our .keras reader."""
    from ..models.keras_io import depthwise_layer_names, load_keras_layer, read_model

    keras.utils.set_random_seed(0)      # the same initial weights, so the same designs
    model = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha,
                                           weights=None, include_top=False)
    path = work / f"mobilenetv2_{alpha}_{size}.keras"
    model.save(path)
    names = depthwise_layer_names(read_model(path))
    log(f"MobileNetV2 alpha {alpha} at {size}x{size}: {len(names)} DepthwiseConv2D layers "
        f"({path})")
    return [(load_keras_layer(path, name), model.get_layer(name)) for name in names]


def _quantization(keras, layer, keras_layer, x, formats_by_bits):
    """Max |float golden - Keras| and, per format set, max |fixed golden - Keras|."""
    keras_out = _keras_call(keras, keras_layer, x.astype(np.float32))
    float_out = float_forward_nhwc(layer, x)
    errors = {}
    for bits, formats in formats_by_bits.items():
        fixed = formats.output.to_float(fixed_forward_raw(layer, formats,
                                                          formats.input.quantize(x)))
        errors[str(bits)] = {"formats": formats.to_dict(),
                             "max_abs_error": float(np.max(np.abs(fixed - keras_out))),
                             "output_lsb": formats.output.lsb}
    return {"max_abs_keras": float(np.max(np.abs(keras_out))),
            "float_vs_keras": float(np.max(np.abs(float_out - keras_out))),
            "fixed_vs_keras": errors}


def _simulate(layer, formats, lanes, frames, rng, input_range, build_root):
    """Verilator on the shipped Verilog: ``frames`` frames without and with stalls."""
    from ..sim.native_sim import run_native_timed

    spec = layer.spec
    started = time.perf_counter()
    x = rng.uniform(*input_range, (frames, *spec.input_shape))
    x_raw = formats.input.quantize(x)
    kernel_raw, bias_raw = quantize_weights(layer, formats)
    engine = DepthwiseEngine(spec, formats, lanes, kernel_raw, bias_raw)
    expected = fixed_forward_raw(layer, formats, x_raw)
    runs = []
    for stall in (0.0, SIM_STALL):
        result, timing = run_native_timed(engine, x_raw, simulator="verilator", stall=stall,
                                          seed=len(runs), build_dir=build_root)
        runs.append((result, timing, {
            "cycles": result.cycles,
            "mismatches": int(np.count_nonzero(result.outputs != expected)),
            "framing_errors": len(result.framing), "error_flag": bool(result.error),
            "sim_seconds": round(timing.sim_seconds, 3),
            "cycles_per_second": round(timing.cycles_run / timing.sim_seconds)}))
    (steady, timing, figures), (_, stalled_timing, stalled) = runs
    ideal = frames * spec.height * spec.width * spec.channels // lanes
    return {"frames": frames, "cycles": steady.cycles, "ideal_cycles": ideal,
            "efficiency": ideal / steady.cycles, "overhead_cycles": steady.cycles - ideal,
            "latency_cycles": steady.latency_cycles,
            "mismatches": figures["mismatches"] + stalled["mismatches"],
            "framing_errors": figures["framing_errors"] + stalled["framing_errors"],
            "error_flag": figures["error_flag"] or stalled["error_flag"],
            "build_seconds": round(timing.build_seconds + stalled_timing.build_seconds, 1),
            "sim_seconds": figures["sim_seconds"],
            "cycles_per_second": figures["cycles_per_second"],
            "stalled": dict(stalled, stall=SIM_STALL),
            "seconds": round(time.perf_counter() - started, 1),
            "line_buffer_words": engine.line_buffer_words,
            "multipliers": engine.multipliers}


def _layer_rows(keras, entries, build_root, rng, log, source):
    """One row per layer: design figures and its simulation (each layer simulated)."""
    with log.phase(len(entries), f"bench layers ({source})"):
        return [_layer_row(keras, entry, build_root, rng, log, source) for entry in entries]


def _layer_row(keras, entry, build_root, rng, log, source):
    """The row of one layer (see ``_layer_rows``), one step of the layers' phase."""
    layer, keras_layer, formats8, formats16, input_range = entry
    spec = layer.spec
    lanes = lanes_for(spec)
    input_max = max(abs(v) for v in input_range)
    x = rng.uniform(*input_range, (2, *spec.input_shape))
    log(f"  {spec.name} {spec.height}x{spec.width}x{spec.channels} P={lanes}: "
        f"Verilator, {SIM_FRAMES} frames, then again with stalls {SIM_STALL}")
    simulation = _simulate(layer, formats8, lanes, SIM_FRAMES, rng, input_range,
                           build_root)
    stalled = simulation["stalled"]
    log(f"    {simulation['cycles']} cycles, efficiency {simulation['efficiency']:.4f}, "
        f"mismatches {simulation['mismatches']}; build {simulation['build_seconds']} s, "
        f"sim {simulation['sim_seconds']} s ({simulation['cycles_per_second']:,} cycles/s)"
        f" + {stalled['sim_seconds']} s stalled ({stalled['cycles_per_second']:,} "
        f"cycles/s); {simulation['seconds']} s in all")
    peers = peer_cycles(spec, lanes)
    per_frame = simulation["cycles"] / simulation["frames"]
    row = {
        "source": source, "layer": spec.name, "input_shape": list(spec.input_shape),
        "kernel_size": list(spec.kernel_size), "strides": list(spec.strides),
        "padding": spec.padding, "pads": list(spec.pads),
        "depth_multiplier": spec.depth_multiplier, "lanes": lanes,
        "multipliers": simulation["multipliers"],
        "line_buffer_words": simulation["line_buffer_words"],
        "line_buffer_min_words": line_buffer_minimum(spec),
        "simulation": simulation,
        "cycles_per_frame": per_frame,
        "peers_per_frame": peers,
        "ratio": {name: per_frame / value for name, value in peers.items()},
        "quantization": _quantization(keras, layer, keras_layer, x,
                                      {8: formats8, 16: formats16}),
        "input_max": input_max,
    }
    log.step(spec.name)
    return row


#: the simulators timed by ``_speeds``; its steps: each of them, end to end, golden models
SPEED_SIMULATORS = ("verilator", "icarus", "amaranth", "cocotb-verilator", "cocotb-icarus")
SPEED_STEPS = len(SPEED_SIMULATORS) + 2


def _speeds(keras, layer, formats, lanes, build_root, rng, log, warm_up=True,
            native_frames=NATIVE_SPEED_FRAMES, cocotb=True):
    """Cycles per second of each simulator, end to end time of the compiled path, and
    golden models against Keras predict (``cocotb=False``: not the cocotb runs)."""
    from ..sim.simulate import simulate_layer

    spec = layer.spec
    kernel_raw, bias_raw = quantize_weights(layer, formats)
    engine = DepthwiseEngine(spec, formats, lanes, kernel_raw, bias_raw)
    x = rng.uniform(-1.0, 1.0, (native_frames, *spec.input_shape))
    x_raw = formats.input.quantize(x)
    expected = fixed_forward_raw(layer, formats, x_raw)
    simulators = {}
    for name in SPEED_SIMULATORS:
        simulators[name] = _simulator_speed(name, engine, x_raw, expected, build_root, log,
                                            warm_up=warm_up, cocotb=cocotb,
                                            native_frames=native_frames)
        log.step(f"{name} skipped" if "skipped" in simulators[name] else name)

    # what `dwconv simulate --sim verilator --stall 0.1` does for 256 frames, less the files:
    # input quantization, fixed and float golden models, engine and Verilog, the cached
    # build found, the simulation, the comparison
    end_to_end = None
    if "skipped" not in simulators["verilator"]:
        started = time.perf_counter()
        _, report = simulate_layer(layer, formats, x, lanes, sim="verilator", stall=SIM_STALL,
                                   seed=2, build_dir=build_root)
        end_to_end = {"frames": native_frames, "stall": SIM_STALL,
                      "seconds": round(time.perf_counter() - started, 2),
                      "sim_seconds": report["sim_seconds"],
                      "cycles_per_second": report["cycles_per_second"],
                      "cycles_per_cpu_second": report["cycles_per_cpu_second"],
                      "build_seconds": report["build_seconds"],
                      "mismatches": report["mismatches"]}
        log(f"  end to end, {native_frames} frames through Verilator with stalls "
            f"{SIM_STALL}: {end_to_end['seconds']} s (simulator {report['sim_seconds']} s)")
    log.step("end to end")
    golden = _golden_speeds(keras, layer, formats, x[:SPEED_FRAMES], log)
    log.step("golden models")
    return {"layer": spec.name, "input_shape": list(spec.input_shape),
            "kernel_size": list(spec.kernel_size), "padding": spec.padding, "lanes": lanes,
            "frames": SPEED_FRAMES, "formats": formats.to_dict(), "simulators": simulators,
            "end_to_end": end_to_end, "golden": golden}


def _simulator_speed(name, engine, x_raw, expected, build_root, log, *, warm_up, cocotb,
                     native_frames):
    """One simulator's speed on the first frames of ``x_raw`` (or why it was skipped)."""
    from ..flows.tools import MissingToolError, require_tools

    native = name in ("verilator", "icarus")
    # Icarus is slow on the engine itself (~1,000 cycles/s), compiled or not
    frames = native_frames if name == "verilator" else SPEED_FRAMES
    stall = SIM_STALL if native else 0.0
    if name.startswith("cocotb-") and not cocotb:
        return {"skipped": "not run by --quick"}
    if name != "amaranth":
        try:
            require_tools(name)
        except MissingToolError as error:
            return {"skipped": str(error).split(";")[0]}
    timed = _native_speed if native else _interpreted_speed
    result, seconds, cycles, sim_seconds, build, cpu = timed(
        name, engine, x_raw[:frames], stall, build_root, warm_up)
    log(f"  {name}: {frames} frames, stall {stall}: {cycles} cycles in {sim_seconds:.2f} s "
        f"({cycles / sim_seconds:,.0f} cycles/s"
        + (f", {cpu['cycles_per_cpu_second']:,} per CPU second)" if cpu else ")"))
    return {"frames": frames, "stall": stall, "cycles": cycles, "seconds": round(seconds, 2),
            "sim_seconds": round(sim_seconds, 3),
            "cycles_per_second": round(cycles / sim_seconds),
            "build_or_first_run_seconds": build,
            "mismatches": int(np.count_nonzero(result.outputs != expected[:frames])), **cpu}


def _native_speed(name, engine, x_raw, stall, build_root, warm_up):
    """(result, seconds, cycles, simulator seconds, build seconds, CPU figures) of a
    compiled run (a build first needs no warm-up run: it is timed apart)."""
    from ..sim.native_sim import run_native_timed

    def timed_run():
        started = time.perf_counter()
        result, timing = run_native_timed(engine, x_raw, simulator=name, stall=stall, seed=1,
                                          build_dir=build_root)
        return result, timing, time.perf_counter() - started

    result, timing, seconds = timed_run()
    build = round(timing.build_seconds, 1)
    if timing.build_seconds:
        # the timed run is the one with the cached build
        result, timing, seconds = timed_run()
    cycles = timing.cycles_run
    cpu = {"sim_cpu_seconds": round(timing.sim_cpu_seconds, 3),
           "cycles_per_cpu_second": round(cycles / max(timing.sim_cpu_seconds, 1e-6))}
    return result, seconds, cycles, timing.sim_seconds, build, cpu


def _interpreted_speed(name, engine, x_raw, stall, build_root, warm_up):
    """The same for Amaranth's simulator and cocotb (Python in the cycle loop); with
    ``warm_up``, a first one-frame cocotb run builds (or finds) the simulator."""
    from ..sim.amaranth_sim import run_amaranth
    from ..sim.cocotb_sim import run_cocotb

    build = None
    simulator = name.removeprefix("cocotb-")
    if name != "amaranth" and warm_up:
        started = time.perf_counter()
        run_cocotb(engine, x_raw[:1], simulator=simulator, build_dir=build_root)
        build = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    result = (run_amaranth(engine, x_raw) if name == "amaranth" else
              run_cocotb(engine, x_raw, simulator=simulator, build_dir=build_root))
    seconds = time.perf_counter() - started
    return result, seconds, result.cycles, seconds, build, {}


def _golden_speeds(keras, layer, formats, x, log):
    """Best-of-5 times of Keras predict and the float and fixed golden models on ``x``."""
    spec = layer.spec
    inputs = keras.Input(shape=spec.input_shape)
    model = keras.Model(inputs, _keras_layer(keras, layer)(inputs))
    batch = x.astype(np.float32)
    model.predict(batch, verbose=0)                  # JAX compiles on the first call

    def best(function, repeats=5):
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            function()
            times.append(time.perf_counter() - started)
        return min(times)

    golden = {
        "frames": SPEED_FRAMES,
        "keras_predict_seconds": best(lambda: model.predict(batch, verbose=0)),
        "float_golden_seconds": best(lambda: float_forward_nhwc(layer, x)),
        "fixed_golden_seconds": best(
            lambda: fixed_forward_raw(layer, formats, formats.input.quantize(x))),
    }
    log(f"  Keras predict {golden['keras_predict_seconds'] * 1e3:.1f} ms, float golden "
        f"{golden['float_golden_seconds'] * 1e3:.1f} ms, fixed golden "
        f"{golden['fixed_golden_seconds'] * 1e3:.1f} ms ({SPEED_FRAMES} frames)")
    return golden


#: place and route that has not finished by then is recorded as timed out: nextpnr can spend
#: hours on a design that nearly fills an iCE40 HX8K
TOOL_TIMEOUT = 600


def _dwconv(argv, log, timeout=TOOL_TIMEOUT):
    """Run a ``dwconv`` command line as a user would; returns (exit code, error line,
    what it printed)."""
    log(f"  dwconv {' '.join(argv)}")
    try:
        run = run_tool([sys.executable, "-m", "dwconv.cli", *argv], cwd=os.getcwd(),
                       name="dwconv", timeout=timeout, capture=True, check=False)
    except ToolTimeout as stopped:
        log(f"    {stopped.reason}")
        return -1, stopped.reason, ""
    # the tools' log is in a temporary folder that is gone afterwards: keep the message only
    lines = [re.sub(r" \(log /[^)]*\)", "", line) for line in run.output.splitlines()
             if line.startswith("dwconv:")]
    if run.returncode:
        log(f"    {lines[-1] if lines else f'exit code {run.returncode}'}")
    return run.returncode, (lines[-1] if lines else None), run.output


#: a seed whose nextpnr has not finished by then is stopped and left out (``dwconv synth
#: --seed-timeout``): router1 can go on for hours on a seed that does not converge
SEED_TIMEOUT = 900

#: (configuration, target, device, P, R, weights, nextpnr seeds) of every synthesis run: the
#: engine issue's 32x32x8 layer and the seed layer, constant and port weights, several lane
#: counts, reuse factors where multipliers are scarce.  Fmax is the best and the median over
#: the seeds (``dwconv synth --seeds``, in parallel); the issue's clock runs (32x32x8 at P=8,
#: R=1 on ECP5) get 10: one netlist's seeds spread over 15-35 % from worst to best there,
#: so more seeds give a steadier median.  HX8K is left out: these designs nearly fill it
#: and nextpnr ran past 10 minutes.
SYNTH_RUNS = [
    ("32x32x8_3x3_same", "ecp5", "85k", 8, 1, "const", 10),
    ("32x32x8_3x3_same", "ecp5", "85k", 8, 1, "port", 10),
    ("32x32x8_3x3_same", "ecp5", "85k", 8, 3, "port", 3),
    ("32x32x8_3x3_same", "ecp5", "85k", 2, 1, "const", 3),
    ("32x32x8_3x3_same", "ecp5", "85k", 2, 1, "port", 3),
    ("seed_dw", "ecp5", "85k", 6, 1, "const", 3),
    ("seed_dw", "ecp5", "85k", 6, 1, "port", 3),
    ("32x32x8_3x3_same", "ice40", "up5k", 1, 1, "const", 3),
    ("32x32x8_3x3_same", "ice40", "up5k", 1, 2, "port", 3),
    ("seed_dw", "ice40", "up5k", 1, 1, "const", 3),
    ("seed_dw", "ice40", "up5k", 1, 1, "port", 3),
    ("seed_dw", "ice40", "up5k", 1, 2, "port", 3),
]

#: the distinct depthwise layer shapes of MobileNetV2 1.0 at 224x224 (the stride-2 ones
#: follow a ZeroPadding2D ((0, 1), (0, 1)): valid padding on the padded frame), random
#: weights, 8-bit formats (``choose_formats``), synthesized at P=8 with both weight modes
MOBILENETV2_SHAPES = [
    ((112, 112, 32), 1, "same"), ((113, 113, 96), 2, "valid"), ((56, 56, 144), 1, "same"),
    ((57, 57, 144), 2, "valid"), ((28, 28, 192), 1, "same"), ((29, 29, 192), 2, "valid"),
    ((14, 14, 384), 1, "same"), ((14, 14, 576), 1, "same"), ((15, 15, 576), 2, "valid"),
    ((7, 7, 960), 1, "same"),
]


def mobilenetv2_specs():
    """``MOBILENETV2_SHAPES`` as layer specs, named ``mnv2_HxWxC_sS``."""
    return [LayerSpec(input_shape=shape, kernel_size=(3, 3), strides=(stride, stride),
                      padding=padding, name="mnv2_{}x{}x{}_s{}".format(*shape, stride))
            for shape, stride, padding in MOBILENETV2_SHAPES]


SYNTH_RUNS += [(spec.name, "ecp5", "85k", 8, 1, weights, 3)
               for spec in mobilenetv2_specs() for weights in ("const", "port")]

#: board builds of the seed layer: (board, P, R, netlist simulator or None).  Icarus runs
#: through ``dwconv build --simulate-netlist``; the ULX3S netlist (ECP5) ran for over 10
#: minutes in Icarus without a verdict, so it is compiled by Verilator
#: (``postsynth.run_board_netlist(simulator="verilator")``) after the build
BOARD_RUNS = [("icebreaker", 1, 2, "icarus"), ("ulx3s", 6, 1, "verilator")]
#: cycle limit of a board netlist simulated here (the seed layer's frame takes a few hundred)
BOARD_MAX_CYCLES = 200000


def _synthesis(configurations, work, log):
    """``dwconv synth --seeds`` for every run of ``SYNTH_RUNS`` on the exported
    ``configurations`` ({name: (layer, formats)}), and ``dwconv build --simulate-netlist``
    of the seed layer for every board of ``BOARD_RUNS``."""
    from ..models.export import export_layer

    results = []
    for name, (layer, formats) in configurations.items():
        (work / "synth" / name).mkdir(parents=True, exist_ok=True)
        export_layer(work / "synth" / name / "layer", layer, formats)
    with log.phase(len(SYNTH_RUNS), "bench synthesis"):
        for run in SYNTH_RUNS:
            results.append(_synthesis_run(configurations, run, work, log))
            log.step(" ".join(map(str, run[:6])))
    return {"results": results, "boards": _boards(work, log)}


def _synthesis_run(configurations, run, work, log):
    """``dwconv synth`` of one run of ``SYNTH_RUNS``: its report, or its error."""
    name, target, device, lanes, reuse, weights, seeds = run
    layer = configurations[name][0]
    folder = work / "synth" / name
    report = folder / f"{target}-{device}-P{lanes}-R{reuse}-{weights}.json"
    code, error, _ = _dwconv(["synth", str(folder / "layer"), "--target", target,
                              "--device", device, "--lanes", str(lanes),
                              "--reuse", str(reuse), "--weights", weights,
                              "--seeds", str(seeds), "--seed-timeout", str(SEED_TIMEOUT),
                              "--report", str(report)], log,
                             timeout=TOOL_TIMEOUT + SEED_TIMEOUT * seeds)
    result = (json.loads(report.read_text()) if code == 0 else
              {"target": target, "device": device, "lanes": lanes, "reuse": reuse,
               "weights": weights, "error": error or f"exit code {code}"})
    return dict(result, configuration=name, input_shape=list(layer.spec.input_shape),
                kernel_size=list(layer.spec.kernel_size), padding=layer.spec.padding)


def _boards(work, log):
    """``dwconv build --simulate-netlist`` of the exported seed layer for every board of
    ``BOARD_RUNS``, one step each."""
    boards = []
    with log.phase(len(BOARD_RUNS), "bench boards"):
        for run in BOARD_RUNS:
            boards.append(_board_run(run, work, log))
            log.step(run[0])
    return boards


def _board_run(run, work, log):
    """One board of ``BOARD_RUNS``: its build, its netlist's simulation, the figures."""
    from ..flows.board import BOARD_NETLIST
    from ..flows.postsynth import run_board_netlist

    board, lanes, reuse, simulator = run
    started = time.perf_counter()
    out = work / "board" / board
    out.parent.mkdir(parents=True, exist_ok=True)
    code, error, printed = _dwconv(
        ["build", str(work / "synth" / "seed_dw" / "layer"), "--board", board,
         "--lanes", str(lanes), "--reuse", str(reuse),
         *(["--simulate-netlist"] if simulator == "icarus" else []), "-o", str(out)], log)
    passed = re.search(r"pass LED lit after (\d+) cycles", printed)
    netlist_seconds = None
    if simulator == "verilator" and code == 0:
        log(f"  {board} netlist under Verilator")
        simulated = time.perf_counter()
        result = run_board_netlist(out / BOARD_NETLIST, board, out / "netlist_verilator",
                                   max_cycles=BOARD_MAX_CYCLES)
        netlist_seconds = round(time.perf_counter() - simulated, 1)
        verdicts = [line for line in result.log.splitlines()
                    if line.startswith(("PASS", "FAIL"))]
        log(f"    {verdicts[-1] if verdicts else 'no verdict'} ({netlist_seconds} s)")
        passed = re.match(r"PASS (\d+)", verdicts[-1]) if result.passed else None
        if not result.passed:
            code, error = 1, (verdicts[-1] if verdicts else result.log[-300:])
    return {"configuration": "seed_dw", "board": board, "lanes": lanes, "reuse": reuse,
            "simulated": simulator is not None, "netlist_simulator": simulator,
            "netlist_seconds": netlist_seconds, "exit_code": code, "error": error,
            "seconds": round(time.perf_counter() - started, 1),
            "netlist_cycles": int(passed.group(1)) if passed else None,
            "bitstream_bytes": sum(f.stat().st_size for f in out.glob("dwconv_selfcheck.b*"))
            if out.exists() else None}


def _random_layer(spec, rng):
    from ..golden.layer import Layer

    kernel = rng.normal(0.0, 0.3, spec.kernel_shape).astype(np.float32)
    bias = rng.uniform(-0.5, 0.5, spec.out_channels).astype(np.float32)
    return Layer(spec, kernel, bias)


def _work_folder(work):
    """The folder for models, simulator builds and synthesis runs: ``work``, or
    build/bench."""
    return pathlib.Path(work) if work is not None else pathlib.Path("build") / "bench"


def run_bench(out=".", *, quick=False, synth=None, work=None, build_root=None, stream=None,
              quiet=False):
    """Run the benchmark; writes ``out``/bench.json and ``out``/BENCH.md, returns the data.

    Progress and notes go to ``stream`` (default standard error; nothing when ``quiet``)."""
    out = pathlib.Path(out)
    work = _work_folder(work)
    work.mkdir(parents=True, exist_ok=True)
    build_root = pathlib.Path(build_root) if build_root is not None else work / "cocotb"
    synth = (not quick) if synth is None else synth
    log = _Log(stream, quiet=quiet)
    keras = import_keras(work / "keras-home")
    rng = np.random.default_rng(1)
    started, cpu_started = time.perf_counter(), _cpu_seconds()

    seed = seed_layer()
    demo_formats = LayerFormats.from_strings(**DEMO_FORMATS)
    seed_entry = (seed, _keras_layer(keras, seed), demo_formats,
                  choose_formats(seed, 4.0, 16), (-4.0, 4.0))
    log("seed layer")
    rows = _layer_rows(keras, [seed_entry], build_root, rng, log, "seed")
    if not quick:
        log("engine reference layers (32x32x8, P=8)")
        entries = []
        for spec in REFERENCE_LAYERS:
            layer = _random_layer(spec, rng)
            entries.append((layer, _keras_layer(keras, layer), choose_formats(layer, 4.0, 8),
                            choose_formats(layer, 4.0, 16), (-4.0, 4.0)))
        rows += _layer_rows(keras, entries, build_root, rng, log, "reference")
        for alpha, size in MOBILENETS:
            source = f"MobileNetV2 alpha {alpha} {size}x{size}"
            entries = [(layer, keras_layer,
                        choose_formats(layer, RELU6_RANGE[1], 8),
                        choose_formats(layer, RELU6_RANGE[1], 16), RELU6_RANGE)
                       for layer, keras_layer in _mobilenet_layers(keras, alpha, size, work, log)]
            rows += _layer_rows(keras, entries, build_root, rng, log, source)

    layers_seconds = time.perf_counter() - started
    layers_cpu = _cpu_seconds() - cpu_started
    log(f"layers: {layers_seconds:.0f} s ({layers_cpu:.0f} s of CPU, builds included)")
    log("simulator speed and golden models against Keras")
    if quick:
        speed_layer, speed_formats, speed_lanes = seed, demo_formats, DEMO_LANES
    else:
        speed_layer = _random_layer(REFERENCE_LAYERS[0], np.random.default_rng(2))
        speed_formats = choose_formats(speed_layer, 1.0, 8)
        speed_lanes = 8
    # the quick run times the first run (build included) to save a run of each simulator
    with log.phase(SPEED_STEPS, "bench simulator speeds"):
        speeds = _speeds(keras, speed_layer, speed_formats, speed_lanes, build_root, rng, log,
                         warm_up=not quick, cocotb=not quick,
                         native_frames=SPEED_FRAMES if quick else NATIVE_SPEED_FRAMES)

    data = {
        "about": {
            "command": "make bench" + (" (python -m dwconv.campaigns.bench --quick)" if quick else ""),
            "quick": quick, "python": platform.python_version(),
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "seconds": round(time.perf_counter() - started, 1),
            # the layers' part (models, golden, builds, simulations); CPU: this process and
            # the tools it ran, so that a figure taken on a shared machine can be compared
            "layers_seconds": round(layers_seconds, 1),
            "layers_cpu_seconds": round(layers_cpu, 1),
            "lanes_rule": f"P = largest divisor of C not above {MAX_LANES}",
            "frames_rule": f"{SIM_FRAMES} back to back, once without stalls and once with "
                           f"stalls {SIM_STALL} (source pauses and sink backpressure)",
        },
        "layers": rows,
        "speed": speeds,
        "synthesis": {"skipped": "not run (--quick or --no-synth)"},
    }
    _write(out, data, log)
    if synth:
        _add_synthesis(data, out, work, log)
    return data


# ---------------------------------------------------------------------------------------------
# The DS-CNN keyword spotter's int8 depthwise layer (issue 22): cycles and synthesis

#: The MLPerf Tiny DS-CNN's depthwise layer as TFLite converts it (25x5x64, 3x3 same, ReLU),
#: with the interpreter's outputs stored beside it (``x``; ``auto``: the default resolver).
DSCNN_MODEL = (pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "tflite"
               / "dscnn_25x5x64.tflite")
DSCNN_LANES = (16, 64)
DSCNN_FRAMES = 8
#: (target, device, lanes) of the synthesis runs, nextpnr seed 1 each
DSCNN_SYNTH = [("ecp5", "85k", 16), ("ice40", "up5k", 16)]
#: CFU-Playground ``kws_micro_accel`` (iCE40UP5K, TFLite Micro): its depthwise layers take
#: 9,616 ticks of 1024 cycles at the end of its work (issue 22).
CFU_DEPTHWISE_CYCLES = 9616 * 1024


def _fit_figures(build_dir):
    """What a failed place and route reported: {bel type: [used, available]} from nextpnr's
    utilisation lines."""
    found = {}
    log_path = pathlib.Path(build_dir) / "nextpnr.log"
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    for bel, used, available in re.findall(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)", text):
        found[bel] = [int(used), int(available)]
    return found


def dscnn_figures(work, log, *, synth=True):
    """Verilator cycles per inference of the DS-CNN depthwise layer at ``DSCNN_LANES`` (the
    outputs compared with the interpreter's), and its synthesis for ``DSCNN_SYNTH``."""
    from ..models.tflite_io import load_tflite_layer
    from ..hw.int8 import Int8Engine
    from ..sim.native_sim import run_native_timed
    from ..flows.synth import run_synth

    layer = load_tflite_layer(DSCNN_MODEL)
    with np.load(DSCNN_MODEL.with_suffix(".npz")) as stored:
        x, expected = stored["x"], stored["auto"]
    repeat = -(-DSCNN_FRAMES // len(x))
    frames = np.concatenate([x] * repeat)[:DSCNN_FRAMES]
    expected = np.concatenate([expected] * repeat)[:DSCNN_FRAMES]
    spec = layer.spec
    cycles = []
    for lanes in DSCNN_LANES:
        log(f"DS-CNN 25x5x64 int8, P={lanes}: Verilator")
        engine = Int8Engine.from_layer(layer, lanes)
        one, timing = run_native_timed(engine, frames[:1], build_dir=work / "dscnn" / "native")
        run, _ = run_native_timed(engine, frames, build_dir=work / "dscnn" / "native")
        mismatches = int((one.outputs != expected[:1]).sum() + (run.outputs != expected).sum())
        cycles.append({
            "lanes": lanes, "multipliers": engine.multipliers,
            "ideal_cycles_per_frame": spec.height * spec.width * spec.channels // lanes,
            "cycles_one_frame": one.cycles, "latency_cycles": one.latency_cycles,
            "frames": DSCNN_FRAMES, "cycles": run.cycles,
            "cycles_per_frame": round(run.cycles / DSCNN_FRAMES, 1),
            "mismatches_vs_interpreter": mismatches,
            "build_seconds": round(timing.build_seconds, 1)})
    results = []
    for target, device, lanes in DSCNN_SYNTH if synth else []:
        log(f"DS-CNN 25x5x64 int8, P={lanes}: synthesis for {target} {device}")
        folder = work / "dscnn" / f"{target}-{device}-P{lanes}"
        try:
            report = run_synth(Int8Engine.from_layer(layer, lanes), target, device=device,
                               build_dir=folder, progress=log, seed=1)
        except RuntimeError as error:
            report = {"target": target, "device": device, "lanes": lanes,
                      "error": str(error).splitlines()[0],
                      "utilization": _fit_figures(folder)}
        results.append(report)
    return {"model": DSCNN_MODEL.name, "input_shape": list(spec.input_shape),
            "kernel_size": list(spec.kernel_size), "padding": spec.padding,
            "rounding": "fp32", "cycles": cycles, "synthesis": results,
            "cfu_playground_depthwise_cycles": CFU_DEPTHWISE_CYCLES}


def dscnn_only(out=".", *, work=None, synth=True, stream=None):
    """Measure the DS-CNN figures (``dscnn_figures``) into ``out``/dscnn.json."""
    out = pathlib.Path(out)
    work = _work_folder(work)
    data = dscnn_figures(work, _Log(stream or sys.stdout), synth=synth)
    out.mkdir(parents=True, exist_ok=True)
    (out / "dscnn.json").write_text(json.dumps(data, indent=1) + "\n")
    return data


def _cpu_seconds():
    """User + system CPU time of this process and of the children it waited for."""
    import resource

    return sum(usage.ru_utime + usage.ru_stime for usage in (
        resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


def _write(out, data, log):
    from .bench_report import render

    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "BENCH.md").write_text(render(data))
    log(f"wrote {out / 'bench.json'} and {out / 'BENCH.md'}")


def synthesis_layers():
    """{name: (layer, formats)} of the MobileNetV2 shapes' synthesis runs (``SYNTH_RUNS``):
    random weights of a fixed seed, 8-bit formats, inputs in [0, 6) (ReLU6 outputs)."""
    rng = np.random.default_rng(23)
    layers = {}
    for spec in mobilenetv2_specs():
        layer = _random_layer(spec, rng)
        layers[spec.name] = (layer, choose_formats(layer, RELU6_RANGE[1], 8))
    return layers


def _add_synthesis(data, out, work, log):
    """Synthesis of the reference configurations, added to ``data`` and written."""
    log("synthesis (yosys + nextpnr) and board builds")
    started = time.perf_counter()
    reference = _random_layer(REFERENCE_LAYERS[0], np.random.default_rng(3))
    data["synthesis"] = _synthesis({
        "seed_dw": (seed_layer(), LayerFormats.from_strings(**DEMO_FORMATS)),
        "32x32x8_3x3_same": (reference, choose_formats(reference, 4.0, 8)),
        **synthesis_layers(),
    }, work, log)
    data["about"]["synthesis_seconds"] = round(time.perf_counter() - started, 1)
    _write(out, data, log)


def speed_only(out=".", *, work=None, build_root=None, stream=None, quiet=False):
    """Redo the simulator-speed figures of an earlier run's ``out``/bench.json."""
    out = pathlib.Path(out)
    work = _work_folder(work)
    build_root = pathlib.Path(build_root) if build_root is not None else work / "cocotb"
    log = _Log(stream, quiet=quiet)
    data = json.loads((out / "bench.json").read_text())
    log("simulator speed and golden models against Keras")
    layer = _random_layer(REFERENCE_LAYERS[0], np.random.default_rng(2))
    with log.phase(SPEED_STEPS, "bench simulator speeds"):
        data["speed"] = _speeds(import_keras(work / "keras-home"), layer,
                                choose_formats(layer, 1.0, 8), 8, build_root,
                                np.random.default_rng(1), log)
    _write(out, data, log)
    return data


def synthesis_only(out=".", *, work=None, stream=None, quiet=False):
    """Redo the synthesis figures of an earlier run's ``out``/bench.json."""
    out = pathlib.Path(out)
    work = _work_folder(work)
    data = json.loads((out / "bench.json").read_text())
    _add_synthesis(data, out, work, _Log(stream, quiet=quiet))
    return data


def boards_only(out=".", *, work=None, stream=None, quiet=False):
    """Redo the board builds (and their netlist simulations) of an earlier run's
    ``out``/bench.json, on the seed layer that run exported."""
    out = pathlib.Path(out)
    work = _work_folder(work)
    log = _Log(stream, quiet=quiet)
    data = json.loads((out / "bench.json").read_text())
    seed = work / "synth" / "seed_dw" / "layer"
    if not seed.exists():                   # a fresh work folder: export the seed layer
        from ..models.export import export_layer
        seed.parent.mkdir(parents=True, exist_ok=True)
        export_layer(seed, seed_layer(), LayerFormats.from_strings(**DEMO_FORMATS))
    log("board builds")
    data["synthesis"]["boards"] = _boards(work, log)
    _write(out, data, log)
    return data


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dwconv.campaigns.bench", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="the seed layer only, speeds on it (not cocotb's), no synthesis "
                             "(a smoke run)")
    parser.add_argument("--out", default=".", metavar="DIR",
                        help="folder for bench.json and BENCH.md (default: here)")
    parser.add_argument("--work", default=None, metavar="DIR",
                        help="folder for models, simulator builds and synthesis runs "
                             "(default build/bench)")
    parser.add_argument("--synth", action=argparse.BooleanOptionalAction, default=None,
                        help="run the synthesis figures (default: yes unless --quick)")
    parser.add_argument("--synth-only", action="store_true",
                        help="redo only the synthesis figures of the bench.json in --out")
    parser.add_argument("--boards-only", action="store_true",
                        help="redo only the board builds of the bench.json in --out")
    parser.add_argument("--speed-only", action="store_true",
                        help="redo only the simulator-speed figures of the bench.json in --out")
    parser.add_argument("--dscnn-only", action="store_true",
                        help="only the DS-CNN int8 layer's cycles and synthesis, into "
                             "dscnn.json in --out (--no-synth: cycles only)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress and no notes (errors only)")
    args = parser.parse_args(argv)
    if args.dscnn_only:
        dscnn_only(args.out, work=args.work, synth=args.synth is not False)
    elif args.synth_only:
        synthesis_only(args.out, work=args.work, quiet=args.quiet)
    elif args.boards_only:
        boards_only(args.out, work=args.work, quiet=args.quiet)
    elif args.speed_only:
        speed_only(args.out, work=args.work, quiet=args.quiet)
    else:
        run_bench(args.out, quick=args.quick, synth=args.synth, work=args.work,
                  quiet=args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
