"""Extreme but legal layers: every one builds (and simulates bit-exact), or is refused clearly.

A hypothesis campaign over layer specifications far from the usual (dilations and kernels
that span far beyond the input, 1x1 and 1xN inputs, strides beyond the input, up to 4096
channels and a depth multiplier up to 64, same and valid padding) runs ``dwconv verilog``,
and ``dwconv simulate`` where the layer is small enough, in a child process with a memory
limit (RLIMIT_AS) and a wall-clock limit.  Every case must either complete (simulate: exit
0, output equal to the fixed golden model) or exit 2 with one line on stderr and no output
file.

CI runs a fixed slice (``EXAMPLES``, derandomized); ``DWCONV_EXTREME_EXAMPLES=N`` runs N
random examples (``make fuzz-extreme``), ``DWCONV_EXTREME_SECONDS`` and
``DWCONV_EXTREME_GB`` set the child's limits.  The figures (cases, exits, time) are printed
at the end of the run (``pytest -s``).
"""

import collections
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings, strategies as st

from dwconv.golden.fixed_ref import fixed_forward, quantize_weights
from dwconv.golden.formats import LayerFormats
from dwconv.golden.layer import Layer
from dwconv.golden.spec import LayerError, LayerSpec
from dwconv.hw import limits
from dwconv.hw.engine import SCAN_DELAY, DepthwiseEngine
from dwconv.hw.scanner import OutputScanner
from dwconv.hw.start_queue import REGISTER_DEPTH

LONG = "DWCONV_EXTREME_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("DWCONV_EXTREME_EXAMPLES", "6"))
SECONDS = float(os.environ.get("DWCONV_EXTREME_SECONDS", "300"))
# the builtin yosys (WebAssembly) reserves 4 GiB of address space before it runs
GIGABYTES = float(os.environ.get("DWCONV_EXTREME_GB", "8"))

#: simulate only where the Amaranth simulation takes seconds: beats until the last output
SIMULATE_CYCLES = 1500

FIGURES = collections.Counter()
TIMES = collections.defaultdict(float)


@pytest.fixture(scope="module", autouse=True)
def campaign_figures():
    """Prints the campaign's figures at the end of the module (seen with ``pytest -s``)."""
    yield
    if FIGURES:
        print(f"\nextreme layers: {dict(FIGURES)}, "
              + ", ".join(f"{k} {v:.1f}" for k, v in TIMES.items()))


#: The child limits its own address space, then runs the command line: no preexec_fn, so
#: no fork handlers run in this (JAX-threaded) process.
_LIMITED = ("import resource, runpy, sys; size = int(sys.argv.pop(1)); "
            "resource.setrlimit(resource.RLIMIT_AS, (size, size)); "
            "runpy.run_module('dwconv.cli', run_name='__main__', alter_sys=True)")


def run_child(args, cwd):
    """Run ``dwconv ARGS`` limited; (exit code, stdout, stderr, seconds, max RSS in MB)."""
    out, err = (open(pathlib.Path(cwd) / name, "w+") for name in ("stdout", "stderr"))
    env = dict(os.environ, PYTHONWARNINGS="error")
    env.pop("DWCONV_DEBUG", None)
    start = time.monotonic()
    with out, err:
        size = int(GIGABYTES * (1 << 30))
        # its own session and group: a timeout stops yosys too
        proc = subprocess.Popen([sys.executable, "-c", _LIMITED, str(size), *args], cwd=cwd,
                                stdout=out, stderr=err, env=env, start_new_session=True)
        deadline = start + SECONDS
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = -1
                pytest.fail(f"dwconv {' '.join(args)} ran past {SECONDS} s")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (proc.returncode, out.read(), err.read(), time.monotonic() - start,
                usage.ru_maxrss / 1024)


def write_layer(folder, document, kernel_shape, seed):
    """An export folder: layer.json as written by hand (it may hold a layer LayerSpec
    refuses) and random weights of the shape its configuration names."""
    folder.mkdir()
    (folder / "layer.json").write_text(json.dumps(document))
    rng = np.random.default_rng(seed)
    kernel = rng.uniform(-1, 1, kernel_shape).astype(np.float32)
    outputs = kernel_shape[2] * kernel_shape[3]
    bias = rng.uniform(-1, 1, outputs).astype(np.float32)
    with open(folder / "weights.npz", "wb") as file:
        np.savez(file, kernel=kernel, bias=bias)


def check_refusal_or_success(code, stderr, output, what):
    if code == 2:
        lines = stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("dwconv: error: "), (what, stderr)
        assert not output.exists(), (what, "a refused command left", output)
        return "refused"
    assert code == 0, (what, code, stderr[-2000:])
    assert output.exists(), what
    return "built"


def spec_of(document):
    return LayerSpec(input_shape=document["first_input_shape"],
                     kernel_size=document["kernel_size"], strides=document["stride"],
                     dilation_rate=document["dilation_rate"], padding=document["padding"],
                     depth_multiplier=document["depth_multiplier"],
                     use_bias=document["use_bias"], activation=document["activation"],
                     name=document["layer_name"])


def small_enough(spec, lanes):
    """A layer the Amaranth simulator runs in seconds."""
    groups = spec.channels // lanes
    last = OutputScanner.targets(spec, lanes, SCAN_DELAY)[-1]
    return (last + spec.height * spec.width * groups <= SIMULATE_CYCLES
            and spec.taps * lanes * spec.depth_multiplier <= 64)


def run_case(document, lanes, reuse, weights, seed, simulate=True):
    """verilog (and simulate, where small) of one layer; returns the outcome's name."""
    h, w, c = document["first_input_shape"]
    kh, kw = document["kernel_size"]
    m = document["depth_multiplier"]
    with tempfile.TemporaryDirectory(prefix="dwconv-extreme-") as temp:
        temp = pathlib.Path(temp)
        write_layer(temp / "layer", document, (kh, kw, c, m), seed)
        output = temp / "out.v"
        args = ["verilog", "layer", "--lanes", str(lanes), "--reuse", str(reuse),
                "--weights", weights, "-o", "out.v"]
        code, _, stderr, seconds, rss = run_child(args, temp)
        outcome = check_refusal_or_success(code, stderr, output, (document, lanes, reuse))
        FIGURES[f"verilog {outcome}"] += 1
        TIMES["verilog"] += seconds
        TIMES["max verilog seconds"] = max(TIMES["max verilog seconds"], seconds)
        TIMES["max verilog MB"] = max(TIMES["max verilog MB"], rss)
        if outcome == "refused" or not simulate:
            return outcome
        spec = spec_of(document)
        if not small_enough(spec, lanes):
            return outcome
        rng = np.random.default_rng(seed + 1)
        x = rng.uniform(-4, 4, (2, h, w, c))
        np.save(temp / "x.npy", x)
        code, _, stderr, seconds, _ = run_child(
            ["simulate", "layer", "-i", "x.npy", "-o", "y.npy", "--lanes", str(lanes),
             "--reuse", str(reuse), "--weights", weights, "--report", "r.json"], temp)
        TIMES["simulate"] += seconds
        assert code == 0, (document, lanes, reuse, code, stderr[-2000:])
        report = json.loads((temp / "r.json").read_text())
        assert report["mismatches"] == 0
        # the simulator's output against the golden model computed here
        with np.load(temp / "layer" / "weights.npz") as weights:
            layer = Layer(spec, weights["kernel"], weights["bias"] if spec.use_bias else None)
        expected = fixed_forward(layer, LayerFormats.from_strings(), x)
        np.testing.assert_array_equal(np.load(temp / "y.npy"), expected)
        FIGURES["simulated bit-exact"] += 1
        return outcome


def divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def extreme_layers(draw):
    """(layer.json document, lanes, reuse, weights mode) of an extreme layer."""
    kind = draw(st.sampled_from(["1x1", "1xN", "Nx1", "small", "wide"]))
    size = {"1x1": lambda: (1, 1),
            "1xN": lambda: (1, draw(st.integers(2, 64))),
            "Nx1": lambda: (draw(st.integers(2, 64)), 1),
            "small": lambda: (draw(st.integers(1, 9)), draw(st.integers(1, 9))),
            "wide": lambda: (draw(st.integers(1, 3)), draw(st.integers(100, 3000)))}[kind]()
    channels = draw(st.one_of(st.sampled_from([1, 3, 8, 64, 4096]), st.integers(1, 4096)))
    lanes = draw(st.sampled_from(divisors(channels)))
    multiplier = draw(st.one_of(st.just(1), st.integers(1, 64)))
    axis = lambda small, large: draw(st.one_of(st.integers(1, small), st.integers(1, large)))
    kernel = [axis(3, 40) for _ in range(2)]
    dilation = [draw(st.one_of(st.just(1), st.integers(1, 12), st.integers(100, 6000)))
                for _ in range(2)]
    strides = [draw(st.one_of(st.just(1), st.integers(1, 4), st.integers(5, 300)))
               for _ in range(2)]
    # the weights file stays small (the campaign is about the engine, not file sizes)
    while channels * multiplier * kernel[0] * kernel[1] > 1 << 21:
        multiplier = max(1, multiplier // 4)
        kernel = [max(1, k // 2) for k in kernel]
    taps = kernel[0] * kernel[1]
    document = {
        "layer_name": "extreme", "first_input_shape": [size[0], size[1], channels],
        "padding": draw(st.sampled_from(["same", "valid"])), "stride": strides,
        "kernel_size": kernel, "depth_multiplier": multiplier, "dilation_rate": dilation,
        "use_bias": draw(st.booleans()),
        "activation": draw(st.sampled_from(["linear", "relu", "relu6"])),
        "data_format": "channels_last",
    }
    reuse = draw(st.one_of(st.just(1), st.integers(1, taps)))
    weights = draw(st.sampled_from(["const", "port"]))
    return document, lanes, reuse, weights


# no shrinking: each step of it is a child process; the failing case is printed as found
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG, database=None,
          suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(case=extreme_layers(), seed=st.integers(0, 2 ** 16))
def test_extreme_layer_builds_or_is_refused(case, seed):
    document, lanes, reuse, weights = case
    note(f"--lanes {lanes} --reuse {reuse} --weights {weights} {json.dumps(document)}")
    run_case(document, lanes, reuse, weights, seed)


def document_of(shape, kernel, *, padding="same", strides=(1, 1), dilation=(1, 1),
                multiplier=1):
    return {"layer_name": "extreme", "first_input_shape": list(shape), "padding": padding,
            "stride": list(strides), "kernel_size": list(kernel),
            "depth_multiplier": multiplier, "dilation_rate": list(dilation),
            "use_bias": True, "activation": "linear", "data_format": "channels_last"}


# Dilations from the issue: 7x7x3 3x3 same ended in a RecursionError (the start queue's
# read and room logic were chains as long as the frames in flight, 329 to 819 here).
@pytest.mark.parametrize("dilation", [2000] + ([3500, 5000] if LONG else []))
def test_issue_dilations_build(dilation):
    document = document_of((7, 7, 3), (3, 3), dilation=(dilation, dilation))
    assert run_case(document, 1, 1, "const", seed=dilation, simulate=False) == "built"


# Hand-picked cases of each kind: refused ones name their limit, the rest build.
@pytest.mark.parametrize("document, lanes, reuse, outcome", [
    # 1x1 input, windows reaching thousands of frames back: past MAX_FRAMES_IN_FLIGHT
    (document_of((1, 1, 1), (3, 3), dilation=(3000, 3000)), 1, 1, "refused"),
    # strides far beyond the input
    (document_of((5, 7, 2), (2, 2), strides=(300, 300)), 2, 1, "built"),
    (document_of((5, 7, 2), (2, 2), strides=(300, 300), padding="valid"), 1, 1, "built"),
    # a kernel spanning far beyond the input with valid padding: LayerSpec refuses it
    (document_of((5, 5, 1), (3, 3), dilation=(10, 1), padding="valid"), 1, 1, "refused"),
    # 1024 channels at M=64 on one lane: weight memories above MAX_MEMORY_BITS
    (document_of((2, 2, 1024), (3, 3), multiplier=64), 1, 1, "refused"),
    # all 4096 lanes: more multipliers than MAX_MULTIPLIERS
    (document_of((1, 1, 4096), (3, 3)), 4096, 1, "refused"),
    # found by the campaign: an internal AssertionError (Amaranth's netlist cells are at
    # most 65,535 bits; the weights of 18 taps x 16 lanes x M=36 are 165,888)
    (dict(document_of((1, 3, 64), (18, 1), strides=(1, 143), dilation=(1, 2),
                      multiplier=36), use_bias=False, activation="relu6"), 16, 8, "refused"),
    # found by the campaign: 14,508 folded MACs (P=403, M=36, R=36) ran past 300 s
    (dict(document_of((1, 39, 403), (1, 36), strides=(2, 1), multiplier=36),
          use_bias=False, activation="relu6"), 403, 36, "refused"),
])
def test_hand_picked_extremes(document, lanes, reuse, outcome):
    assert run_case(document, lanes, reuse, "const", seed=1, simulate=False) == outcome


def engine_of(spec, lanes=1, *, reuse=1, weights="const", formats=None):
    formats = formats or LayerFormats.from_strings()
    kernel = np.full(spec.kernel_shape, 0.25, np.float32)
    layer = Layer(spec, kernel, np.zeros(spec.out_channels, np.float32))
    kernel_raw, bias_raw = quantize_weights(layer, formats)
    return DepthwiseEngine(spec, formats, lanes, kernel_raw, bias_raw, reuse=reuse,
                           weights=weights)


@pytest.mark.parametrize("spec, lanes, reuse, name", [
    (LayerSpec((1, 1, 1), (3, 3), dilation_rate=3000, padding="same"), 1, 1,
     "MAX_FRAMES_IN_FLIGHT"),
    (LayerSpec((7, 7, 3), (3, 3), dilation_rate=6000, padding="same"), 1, 1,
     "MAX_MEMORY_BITS"),
    (LayerSpec((1, 1, 4096), (3, 3), padding="same"), 4096, 1, "MAX_MULTIPLIERS"),
    (LayerSpec((1, 1, 4096), (3, 3), padding="same"), 4096, 9, "MAX_WINDOW_SAMPLES"),
    (LayerSpec((2, 2, 4096), (3, 3), depth_multiplier=64, padding="same"), 1, 1,
     "MAX_MEMORY_BITS"),
    (LayerSpec((100000, 100000, 1), (1, 1)), 1, 1, "MAX_COUNTER_BITS"),
    (LayerSpec((1, 3, 64), (18, 1), padding="same", depth_multiplier=36), 16, 8,
     "MAX_SIGNAL_BITS"),
])
def test_limits_refuse_at_configuration(spec, lanes, reuse, name):
    with pytest.raises(LayerError, match=f"hw.limits.{name}") as error:
        engine_of(spec, lanes, reuse=reuse)
    assert "\n" not in str(error.value) and "; " in str(error.value)


def test_limits_are_exact_boundaries():
    """Just at each limit the engine is built (configured: no hardware elaborated), one
    step beyond it is refused."""
    # frames in flight: 1x1x1 frames, windows (k-1)*d + extra beats back
    at = max(d for d in range(1, 5000) if limits.frames_in_flight(
        LayerSpec((1, 1, 1), (1, 3), dilation_rate=(1, d), padding="same"), 1,
        SCAN_DELAY) <= limits.MAX_FRAMES_IN_FLIGHT)
    engine = engine_of(LayerSpec((1, 1, 1), (1, 3), dilation_rate=(1, at), padding="same"))
    assert engine.frames_in_flight == limits.MAX_FRAMES_IN_FLIGHT
    with pytest.raises(LayerError, match="MAX_FRAMES_IN_FLIGHT"):
        engine_of(LayerSpec((1, 1, 1), (1, 3), dilation_rate=(1, at + 1), padding="same"))
    # multipliers: 4096 = 1024 lanes x 4 taps (8-bit formats: every signal under the limit)
    f8 = LayerFormats.from_strings(*["fixed<8,3>"] * 3, None, "fixed<8,3>")
    assert engine_of(LayerSpec((1, 1, 1024), (2, 2), padding="same"), 1024,
                     formats=f8).multipliers == limits.MAX_MULTIPLIERS
    with pytest.raises(LayerError, match="MAX_MULTIPLIERS"):
        engine_of(LayerSpec((1, 1, 1024), (2, 3), padding="same"), 1024, formats=f8)
    # line buffer bits: 16-bit words, 2**18 of them at most
    words = limits.MAX_MEMORY_BITS // 16
    line = lambda dilation: LayerSpec((1, 200, 1), (1, 2), dilation_rate=(1, dilation),
                                      padding="same")
    assert engine_of(line(words - SCAN_DELAY - 1)).line_buffer_words == words
    with pytest.raises(LayerError, match="line buffer of 4,194,320 bits"):
        engine_of(line(words - SCAN_DELAY))


def test_many_frames_in_flight_simulate_bit_exact():
    """A 1x2 layer with 10 frames in flight: the start queue is the memory form (more than
    REGISTER_DEPTH entries); back-to-back frames with stalls, bit-exact."""
    from dwconv.golden.fixed_ref import fixed_forward_raw
    from dwconv.sim.simulate import simulate_layer

    spec = LayerSpec((1, 2, 2), (3, 3), dilation_rate=(4, 6), padding="same",
                     depth_multiplier=2)
    rng = np.random.default_rng(5)
    layer = Layer(spec, rng.uniform(-1, 1, spec.kernel_shape).astype(np.float32),
                  rng.uniform(-1, 1, spec.out_channels).astype(np.float32))
    formats = LayerFormats.from_strings()
    engine = engine_of(spec)
    assert engine.frames_in_flight + 1 > REGISTER_DEPTH
    x = rng.uniform(-4, 4, (24, 1, 2, 2))
    for stall in (0.0, 0.4):
        out_raw, report = simulate_layer(layer, formats, x, 1, stall=stall, seed=3)
        np.testing.assert_array_equal(out_raw, fixed_forward_raw(
            layer, formats, formats.input.quantize(x)))
        assert report["mismatches"] == 0
