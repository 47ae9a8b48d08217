"""The main job on a built-in layer: Keras in, golden models, engine simulations, files out.

``run_demo`` is what ``dwconv demo`` and ``make demo`` run.  It builds the seed layer
(DepthwiseConv2D, input 16x12x6, kernel 3x5, valid, depth multiplier 1) in Keras with fixed
random weights, saves it as ``.keras``, reads it back and exports it (layer.json +
weights.npz), runs the float and fixed golden models on random frames, simulates the engine
in Amaranth's simulator and in Verilator on the shipped Verilog (frames back to back; the
compiled testbench of ``native_sim``, no Python in the cycle loop),
compares everything bit for bit, writes the Verilog, golden vectors, a summary JSON and a
PNG figure, and prints progress and a summary.

The demo formats are 8-bit operands (input, weight, bias) and a 16-bit output: 8 bits is
what FPGA inference engines usually carry and each product fits one DSP multiplier; the
exact accumulator loses nothing, and the 16-bit output keeps the sum on a grid fine enough
that the error against Keras shown in the figure is that of the 8-bit operands.
"""

import json
import pathlib
import sys
import time

import numpy as np

from .models.export import export_layer, load_layer
from .golden.fixed_ref import fixed_forward_raw, quantize_weights
from .golden.float_ref import float_forward_nhwc
from .golden.formats import LayerFormats
from .golden.layer import Layer
from .golden.spec import LayerSpec
from .sim.amaranth_sim import run_amaranth
from .models.keras_import import import_keras
from .sim.simulate import line_buffer_minimum
from .sim.vectors import write_vectors
from .flows.verilog import build_engine

__all__ = ["SEED_SPEC", "DEMO_FORMATS", "DEMO_LANES", "DEMO_FRAMES", "DEFAULT_OUTPUT",
           "seed_layer", "seed_keras_model", "run_demo"]

#: The seed layer of the original network generator.
SEED_SPEC = LayerSpec(input_shape=(16, 12, 6), kernel_size=(3, 5), padding="valid",
                      depth_multiplier=1, name="seed_dw")

#: 8-bit operands, exact accumulator, 16-bit output (see the module docstring for why).
DEMO_FORMATS = {
    "input": "fixed<8,3,RND,SAT>",    # [-4, 4) in steps of 1/32: random N(0, 1) frames
    "weight": "fixed<8,1,RND,SAT>",   # [-1, 1) in steps of 1/128
    "bias": "fixed<8,1,RND,SAT>",
    "accum": "exact",
    "output": "fixed<16,6,RND,SAT>",  # [-32, 32) in steps of 1/1024
}

#: All six channels in one beat: the engine takes one pixel per cycle.
DEMO_LANES = 6
DEMO_FRAMES = 4
DEFAULT_OUTPUT = pathlib.Path("build") / "demo"
WEIGHT_SEED, INPUT_SEED = 2024, 7


def seed_layer():
    """The seed layer with its fixed random float32 weights (the same on every run)."""
    rng = np.random.default_rng(WEIGHT_SEED)
    kernel = rng.normal(0.0, 0.3, SEED_SPEC.kernel_shape).astype(np.float32)
    bias = rng.uniform(-0.5, 0.5, SEED_SPEC.out_channels).astype(np.float32)
    return Layer(SEED_SPEC, kernel, bias)


def seed_keras_model(keras, layer=None):
    """A Keras model of one DepthwiseConv2D holding ``layer`` (default: the seed layer)."""
    layer = layer or seed_layer()
    spec = layer.spec
    inputs = keras.Input(shape=spec.input_shape, name="frames")
    conv = keras.layers.DepthwiseConv2D(
        kernel_size=spec.kernel_size, strides=spec.strides, padding=spec.padding,
        depth_multiplier=spec.depth_multiplier, dilation_rate=spec.dilation_rate,
        use_bias=spec.use_bias, activation=spec.activation, name=spec.name)
    model = keras.Model(inputs, conv(inputs), name="seed_model")
    conv.set_weights([layer.kernel, layer.bias])
    return model


class _Progress:
    """Numbered progress lines with the time each step took."""

    def __init__(self, steps, stream):
        self.steps, self.stream, self.number = steps, stream, 0

    def step(self, text):
        self.number += 1
        self.started = time.perf_counter()
        print(f"[{self.number}/{self.steps}] {text} ...", end="", flush=True, file=self.stream)

    def done(self, text=""):
        seconds = time.perf_counter() - self.started
        print(f" {text}{' ' if text else ''}({seconds:.1f} s)", flush=True, file=self.stream)


def _figure(path, keras_out, engine_out, spec, formats, mismatches):
    """Per output channel of frame 0: Keras, the engine (fixed point), and their difference."""
    # a Figure of its own, drawn by Agg: no pyplot state, no display needed
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    channels = keras_out.shape[-1]
    difference = engine_out - keras_out
    value_limit = float(np.max(np.abs(keras_out)))
    error_limit = float(np.max(np.abs(difference))) or formats.output.lsb
    figure = Figure(figsize=(2.1 * channels + 1.6, 8.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(3, channels, squeeze=False)
    rows = [("Keras (float32)", keras_out, "RdBu_r", value_limit),
            ("engine (Verilator)", engine_out, "RdBu_r", value_limit),
            ("engine - Keras", difference, "PuOr_r", error_limit)]
    for row, (label, data, colours, limit) in enumerate(rows):
        for channel in range(channels):
            axis = axes[row, channel]
            image = axis.imshow(data[..., channel], cmap=colours, vmin=-limit, vmax=limit,
                                interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(f"channel {channel}")
            if channel == 0:
                axis.set_ylabel(label, fontsize=11)
            if row == 2:
                axis.set_xlabel(f"max |diff| {np.max(np.abs(data[..., channel])):.3g}",
                                fontsize=9)
        figure.colorbar(image, ax=axes[row, :].tolist(), shrink=0.9, pad=0.01)
    h, w, c = spec.input_shape
    kh, kw = spec.kernel_size
    figure.suptitle(
        f"{spec.name}: DepthwiseConv2D {kh}x{kw} {spec.padding}, input {h}x{w}x{c} -> output "
        f"{spec.out_height}x{spec.out_width}x{spec.out_channels}, frame 0\n"
        f"input {formats.input}, weight {formats.weight}, output {formats.output}; "
        f"{mismatches} mismatches against the fixed golden model", fontsize=11)
    figure.savefig(path, dpi=110)


def _describe(spec):
    h, w, c = spec.input_shape
    kh, kw = spec.kernel_size
    return (f"DepthwiseConv2D {kh}x{kw} {spec.padding}, stride {spec.strides[0]}x"
            f"{spec.strides[1]}, input {h}x{w}x{c} -> output {spec.out_height}x"
            f"{spec.out_width}x{spec.out_channels}, depth multiplier {spec.depth_multiplier}")


def run_demo(out=DEFAULT_OUTPUT, *, frames=DEMO_FRAMES, build_dir=None, stream=None):
    """Run the demo into folder ``out``; returns the summary dict (also written as JSON).

    ``build_dir`` holds the cached Verilator build (default: run_native's cache, the same
    as ``dwconv simulate --sim verilator``; ``make`` puts it in the repository's .cache);
    ``stream`` receives the progress lines and the summary (default: standard output).
    """
    from .sim.native_sim import run_native_timed, verilog_of

    stream = stream or sys.stdout
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    progress = _Progress(9, stream)
    started = time.perf_counter()

    progress.step("Keras: building the seed layer (JAX backend) and saving it")
    keras = import_keras(out / "keras-home")
    model = seed_keras_model(keras)
    model_path = out / "seed.keras"
    model.save(model_path)
    progress.done(f"{model_path}")

    progress.step("export: reading the .keras file (without Keras) into layer.json + "
                  "weights.npz")
    formats = LayerFormats.from_strings(**DEMO_FORMATS)
    layer, _ = load_layer(model_path)
    export_dir = out / "export"
    export_layer(export_dir, layer, formats)
    layer, _ = load_layer(export_dir)
    spec = layer.spec
    progress.done(f"{export_dir}")

    progress.step(f"golden: {frames} random frames through Keras, the float and the fixed "
                  f"models")
    x, keras_out, x_raw, expected_raw, fixed_vs_keras, float_vs_keras = _golden(
        model, layer, formats, frames, out)
    progress.done(f"max |fixed - Keras| {fixed_vs_keras:.4g}, |float - Keras| "
                  f"{float_vs_keras:.2g}")

    progress.step(f"engine: building it with {DEMO_LANES} lanes")
    kernel_raw, bias_raw = quantize_weights(layer, formats)
    engine = build_engine(layer, formats, DEMO_LANES, kernel_raw, bias_raw)
    progress.done(f"{engine.multipliers} multipliers, line buffer {engine.line_buffer_words} "
                  f"words")

    runs = {}
    progress.step(f"Amaranth simulator: {frames} frames back to back")
    result = run_amaranth(engine, x_raw)
    runs["amaranth"] = result
    progress.done(f"{result.cycles} cycles")

    progress.step(f"Verilator (compiled testbench) on the shipped Verilog: {frames} frames back "
                  f"to back (the first build takes ~10-30 s)")
    result, timing = run_native_timed(engine, x_raw, simulator="verilator",
                                      build_dir=build_dir)
    runs["verilator"] = result
    built = f", built in {timing.build_seconds:.1f} s" if timing.build_seconds else ""
    progress.done(f"{result.cycles} cycles ({timing.sim_seconds:.2f} s{built})")

    progress.step("Verilog and golden vectors")
    verilog_path = out / "dwconv.v"
    verilog_path.write_text(verilog_of(engine))       # converted once, for Verilator
    vectors_dir = out / "vectors"
    write_vectors(vectors_dir, layer, formats, x.astype(np.float64), DEMO_LANES)
    progress.done(f"{verilog_path}, {vectors_dir}")

    ideal = frames * spec.height * spec.width * spec.channels // DEMO_LANES
    simulations = {name: _figures(result, ideal, expected_raw) for name, result in runs.items()}
    mismatches = sum(s["mismatches"] for s in simulations.values())
    progress.step("figure: Keras, the engine and their difference per channel")
    figure_path = out / "demo.png"
    engine_out = formats.output.to_float(runs["verilator"].outputs)
    _figure(figure_path, keras_out[0], engine_out[0], spec, formats, mismatches)
    progress.done(f"{figure_path}")

    summary = dict(
        _design_summary(spec, formats, engine, frames),
        max_abs_error_fixed_vs_keras=fixed_vs_keras,
        max_abs_error_float_vs_keras=float_vs_keras, output_step=formats.output.lsb,
        simulations=simulations, mismatches=mismatches,
        files={"keras": str(model_path), "export": str(export_dir),
               "verilog": str(verilog_path), "vectors": str(vectors_dir),
               "figure": str(figure_path), "summary": str(out / "summary.json")})
    progress.step("summary")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    progress.done(str(out / "summary.json"))
    _print_summary(summary, spec, formats, stream, time.perf_counter() - started)
    return summary


def _golden(model, layer, formats, frames, out):
    """Random frames through Keras and the golden models, saved in ``out``: (frames, Keras'
    output, raw frames, raw fixed output, max |fixed - Keras|, max |float - Keras|)."""
    rng = np.random.default_rng(INPUT_SEED)
    x = rng.normal(0.0, 1.0, (frames, *layer.spec.input_shape)).astype(np.float32)
    keras_out = np.asarray(model.predict(x, verbose=0), dtype=np.float64)
    float_out = float_forward_nhwc(layer, x.astype(np.float64))
    x_raw = formats.input.quantize(x)
    expected_raw = fixed_forward_raw(layer, formats, x_raw)
    fixed_out = formats.output.to_float(expected_raw)
    np.save(out / "input.npy", x)
    np.save(out / "keras_output.npy", keras_out)
    np.save(out / "fixed_output.npy", fixed_out)  # the fixed golden model
    return (x, keras_out, x_raw, expected_raw, float(np.max(np.abs(fixed_out - keras_out))),
            float(np.max(np.abs(float_out - keras_out))))


def _design_summary(spec, formats, engine, frames):
    """The summary's description of the layer, its formats and the engine."""
    return {"layer": spec.to_dict(), "formats": formats.to_dict(), "lanes": DEMO_LANES,
            "frames": frames, "multipliers": engine.multipliers,
            "line_buffer_words": engine.line_buffer_words,
            "line_buffer_min_words": line_buffer_minimum(spec),
            "latency_cycles": engine.latency}


def _figures(result, ideal, expected_raw):
    """A simulation's figures for the summary."""
    return {"cycles": result.cycles, "ideal_cycles": ideal,
            "efficiency": ideal / result.cycles, "latency_cycles": result.latency_cycles,
            "mismatches": int(np.count_nonzero(result.outputs != expected_raw)),
            "framing_errors": len(result.framing), "error_flag": bool(result.error)}


def _print_summary(summary, spec, formats, stream, seconds):
    def line(label, text):
        print(f"  {label:<13} {text}", file=stream)

    print("\nSummary", file=stream)
    line("layer", f"{spec.name}: {_describe(spec)}")
    line("formats", ", ".join(f"{role} {text}" for role, text in summary["formats"].items()))
    line("vs Keras", f"max |fixed - Keras| = {summary['max_abs_error_fixed_vs_keras']:.4g} "
                     f"(output step 2^-{formats.output.frac}); float golden vs Keras "
                     f"{summary['max_abs_error_float_vs_keras']:.2g}")
    line("engine", f"{summary['lanes']} lanes, {summary['multipliers']} multipliers, line "
                   f"buffer {summary['line_buffer_words']} words (minimum "
                   f"{summary['line_buffer_min_words']}), pipeline {summary['latency_cycles']} "
                   f"cycles from window to output")
    for name, run in summary["simulations"].items():
        line(name, f"{summary['frames']} frames back to back: {run['cycles']} cycles (ideal "
                   f"{run['ideal_cycles']}, efficiency {run['efficiency']:.3f}), mismatches "
                   f"{run['mismatches']}")
    for label, path in summary["files"].items():
        line(label, path)
    verdict = "PASS" if summary["mismatches"] == 0 else "FAIL"
    print(f"\n{verdict}: {summary['mismatches']} mismatches against the fixed golden model "
          f"({seconds:.0f} s)", file=stream)
