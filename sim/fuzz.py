"""Differential fuzzing: random layers and format sets, the engine against the fixed golden model.

hypothesis draws a layer (kernel, strides, dilation, padding, channels, depth multiplier,
lanes, bias, activation, data format, weight mode) and a format set for all five tensors
(signed and unsigned, every width and integer-bit count the formats module accepts, every
rounding and overflow mode, the accumulator exact or given), then two frames that go through
the engine back to back with random stalls on both sides.  The engine's output must equal
``fixed_forward_raw`` exactly.

The same strategy serves the test suite (a fixed, seeded budget) and ``make fuzz`` (a long
campaign, ``python -m dwconv.sim.fuzz``).  A failing example is written out as an export
folder and an input array, and reported as a ready-to-run ``dwconv simulate`` command.
"""

import argparse
import os
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, assume, given, seed, settings
from hypothesis import strategies as st

from ..golden.export import export_layer
from ..golden.fixed import MAX_ACCUM_WIDTH, MAX_WIDTH, OVERFLOW_MODES, ROUNDING_MODES, \
    FormatError, QFormat
from ..golden.fixed_ref import fixed_forward_raw, quantize_weights
from ..golden.formats import LayerFormats
from ..golden.layer import Layer, from_channels_last
from ..golden.spec import ACTIVATIONS, DATA_FORMATS, PADDINGS, LayerSpec

__all__ = ["FuzzCase", "fuzz_cases", "check_engine", "main"]

#: Where failing examples are written (an export folder and the input array each).
DEFAULT_FAILURE_DIR = Path("build") / "fuzz-failures"


@st.composite
def formats_of(draw, role, *, max_width=MAX_WIDTH):
    """A QFormat of any accepted shape: widths favour small ones but reach the limit."""
    signed = draw(st.booleans())
    lowest = 2 if signed else 1
    width = draw(st.one_of(st.integers(lowest, 12), st.integers(lowest, max_width)),
                 label=f"{role} width")
    int_bits = draw(st.integers(0, width), label=f"{role} integer bits")
    return QFormat(signed, width, int_bits, draw(st.sampled_from(ROUNDING_MODES)),
                   draw(st.sampled_from(OVERFLOW_MODES)), max_width=max_width)


@st.composite
def near_format(draw, role, int_bits, frac, *, max_width):
    """A format whose integer and fraction bits lie a few bits either side of the given
    ones: narrower and wider at both ends, any sign and any modes."""
    signed = draw(st.booleans())
    int_bits = max(int_bits + draw(st.integers(-6, 6), label=f"{role} integer offset"), 0)
    frac = max(frac + draw(st.integers(-8, 8), label=f"{role} fraction offset"), 0)
    width = min(max(int_bits + frac, 2), max_width)
    return QFormat(signed, width, min(int_bits, width), draw(st.sampled_from(ROUNDING_MODES)),
                   draw(st.sampled_from(OVERFLOW_MODES)), max_width=max_width)


@st.composite
def accumulator_of(draw, exact):
    """None (exact), a given accumulator near the exact one, or one anywhere."""
    kind = draw(st.sampled_from(("exact", "near", "any")))
    if kind == "exact":
        return None
    if kind == "any":
        return draw(formats_of("accum", max_width=MAX_ACCUM_WIDTH))
    return draw(near_format("accum", exact.int_bits, exact.frac, max_width=MAX_ACCUM_WIDTH))


@st.composite
def output_of(draw, exact, taps):
    """An output format anywhere, or near the range the sums really reach: random products
    add up like a random walk, about log2(sqrt(taps)) + 1 bits below the worst case, so
    outputs are neither all saturated nor all zero."""
    if draw(st.booleans()):
        return draw(formats_of("output"))
    typical = exact.int_bits - (taps.bit_length() + 1) // 2 - 1
    return draw(near_format("output", typical, min(exact.frac, 10), max_width=MAX_WIDTH))


@dataclass
class FuzzCase:
    """One drawn example: a layer, its formats, the engine options and two raw frames."""

    layer: Layer
    formats: LayerFormats
    lanes: int
    weights: str
    frames_raw: np.ndarray
    stall: float
    stall_seed: int

    def expected(self):
        return fixed_forward_raw(self.layer, self.formats, self.frames_raw)

    def describe(self):
        s = self.layer.spec
        return (f"{s.input_shape} k={s.kernel_size} s={s.strides} d={s.dilation_rate} "
                f"{s.padding} M={s.depth_multiplier} bias={s.use_bias} {s.activation} "
                f"{s.data_format} P={self.lanes} weights={self.weights} "
                f"formats={self.formats.to_dict()}")

    def command(self, folder):
        """Write the layer and its input under ``folder``; return the ``dwconv simulate``
        command line that replays this example."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        export_layer(folder / "layer", self.layer, self.formats)
        x = from_channels_last(self.layer.spec, self.formats.input.to_float(self.frames_raw))
        np.save(folder / "x.npy", x)
        argv = ["dwconv", "simulate", str(folder / "layer"), "-i", str(folder / "x.npy"),
                "-o", str(folder / "y.npy")]
        for role, text in self.formats.to_dict().items():
            argv += [f"--{role}-format", text]
        argv += ["--lanes", str(self.lanes), "--weights", self.weights,
                 "--stall", repr(self.stall), "--seed", str(self.stall_seed)]
        return shlex.join(argv)


def _kernel_values(rng, fmt, shape):
    """Float weights across the format's range and a half beyond, on a half-LSB grid (so
    every rounding tie occurs), some at the extremes."""
    low, high = fmt.raw_min, fmt.raw_max
    span = max(high - low, 1)
    halves = rng.integers(2 * low - span, 2 * high + span + 1, size=shape)
    extremes = rng.choice([2 * low, 2 * high, 2 * low - 1, 2 * high + 1], size=shape)
    halves = np.where(rng.random(shape) < 0.15, extremes, halves)
    return (halves.astype(np.float64) * (fmt.lsb / 2)).astype(np.float32)


@st.composite
def fuzz_cases(draw, *, max_side=7):
    """A FuzzCase: layer options, lanes and weight mode, five formats, data and stalls."""
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.sampled_from(PADDINGS))
    reach = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    if padding == "valid":   # at least one output row and column
        height, width = (draw(st.integers(r, max(r, max_side) + 1)) for r in reach)
    else:
        height, width = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    channels = draw(st.integers(1, 8))
    lanes = draw(st.sampled_from([p for p in range(1, channels + 1) if channels % p == 0]))
    spec = LayerSpec(input_shape=(height, width, channels), kernel_size=kernel,
                     strides=strides, dilation_rate=dilation, padding=padding,
                     depth_multiplier=draw(st.integers(1, 3)), use_bias=draw(st.booleans()),
                     activation=draw(st.sampled_from(ACTIVATIONS)),
                     data_format=draw(st.sampled_from(DATA_FORMATS)), name="fuzz")

    input_fmt, weight_fmt, bias_fmt = (
        draw(formats_of(role)) for role in ("input", "weight", "bias"))
    formats = LayerFormats(input_fmt, weight_fmt, bias_fmt, None, input_fmt)
    try:
        exact = formats.exact_accumulator(spec.taps)
    except FormatError:
        assume(False)       # a documented refusal: the exact sum would not fit 62 bits
    accum = draw(accumulator_of(exact))
    formats = LayerFormats(input_fmt, weight_fmt, bias_fmt, accum,
                           draw(output_of(exact, spec.taps)))

    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="data seed"))
    kernel_float = _kernel_values(rng, weight_fmt, spec.kernel_shape)
    bias_float = _kernel_values(rng, bias_fmt, (spec.out_channels,)) if spec.use_bias else None
    layer = Layer(spec, kernel_float, bias_float)

    shape = (2, *spec.input_shape)
    frames = rng.integers(input_fmt.raw_min, input_fmt.raw_max + 1, size=shape)
    extremes = rng.choice([input_fmt.raw_min, input_fmt.raw_max, 0], size=shape)
    frames = np.where(rng.random(shape) < 0.2, extremes, frames)
    return FuzzCase(layer, formats, lanes, draw(st.sampled_from(("const", "port"))),
                    frames, draw(st.sampled_from((0.0, 0.2, 0.5))),
                    draw(st.integers(0, 1000), label="stall seed"))


def check_engine(case, *, sim="amaranth", failure_dir=DEFAULT_FAILURE_DIR):
    """Run ``case`` through the engine; AssertionError with a replay command on any
    difference from the golden model, a framing problem or a raised error flag."""
    from ..hw.engine import DepthwiseEngine
    from .amaranth_sim import run_amaranth

    expected = case.expected()
    if sim == "amaranth":
        kernel_raw, bias_raw = quantize_weights(case.layer, case.formats)
        engine = DepthwiseEngine(case.layer.spec, case.formats, case.lanes, kernel_raw,
                                 bias_raw, weights=case.weights)
        loads = {0: (kernel_raw, bias_raw)} if case.weights == "port" else None
        result = run_amaranth(engine, case.frames_raw, stall=case.stall,
                              seed=case.stall_seed, loads=loads)
        outputs, framing, error = result.outputs, result.framing, result.error
    else:
        from .simulate import simulate_layer
        x = case.formats.input.to_float(case.frames_raw)
        outputs, report = simulate_layer(case.layer, case.formats, x, case.lanes, sim=sim,
                                         stall=case.stall, seed=case.stall_seed,
                                         weights=case.weights)
        framing, error = [None] * report["framing_errors"], report["error_flag"]
    mismatches = int(np.count_nonzero(outputs != expected)) if \
        np.shape(outputs) == expected.shape else expected.size
    if mismatches or framing or error:
        folder = Path(failure_dir) / f"case-{os.getpid()}-{time.monotonic_ns()}"
        command = case.command(folder)
        raise AssertionError(
            f"{sim}: {mismatches} of {expected.size} values differ from the golden model, "
            f"{len(framing)} framing problem(s), error flag {bool(error)}; "
            f"{case.describe()}\nreplay: {command}")


def _campaign(examples, seed_value, sim, failure_dir):
    """Run one seeded hypothesis campaign; returns (examples run, failure text or None)."""
    count = [0]

    @seed(seed_value)
    @settings(max_examples=examples, deadline=None, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(fuzz_cases())
    def run(case):
        count[0] += 1
        check_engine(case, sim=sim, failure_dir=failure_dir)

    try:
        run()
    except Exception as failure:    # a mismatch, or the engine refusing a valid case
        return count[0], f"{type(failure).__name__}: {failure}"
    return count[0], None


#: Examples per seeded chunk: a worker runs chunks until its share or the time is used up.
CHUNK = 25


def _worker(index, workers, base, share, deadline, sim, failure_dir):
    """Chunks seeded ``base + index``, ``base + index + workers``, ...; returns
    (examples run, [(seed, failure text)])."""
    ran, failures, chunk = 0, [], 0
    while ran < share and time.monotonic() < deadline:
        chunk_seed = base + index + workers * chunk
        count, failure = _campaign(min(CHUNK, share - ran), chunk_seed, sim, failure_dir)
        ran += count
        chunk += 1
        if failure:
            failures.append((chunk_seed, failure))
    return ran, failures


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m dwconv.sim.fuzz",
        description="Differential fuzzing of the engine against the fixed golden model.")
    parser.add_argument("--examples", type=int, default=5000, help="examples in all")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop starting new chunks after this long (default: no limit)")
    parser.add_argument("--seed", type=int, default=None, help="campaign seed (default: "
                        "random, printed)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="parallel workers, each with its own seeds")
    parser.add_argument("--sim", default="amaranth", help="amaranth (default) or verilator")
    parser.add_argument("--failures", default=str(DEFAULT_FAILURE_DIR),
                        help="where failing examples are written")
    args = parser.parse_args(argv)
    base = args.seed if args.seed is not None else int.from_bytes(os.urandom(3), "little")
    workers = max(1, min(args.workers, args.examples))
    shares = [args.examples // workers + (k < args.examples % workers) for k in range(workers)]
    limit = f", at most {args.minutes:g} min" if args.minutes else ""
    print(f"fuzz: {args.examples} examples{limit}, {workers} worker(s), seed {base} "
          f"(chunks of {CHUNK}: chunk k of worker w uses seed {base} + w + {workers}k), "
          f"simulator {args.sim}", flush=True)
    start = time.monotonic()
    deadline = start + 60 * args.minutes if args.minutes else float("inf")
    with ProcessPoolExecutor(workers) as pool:
        outcomes = list(pool.map(_worker, range(workers), [workers] * workers,
                                 [base] * workers, shares, [deadline] * workers,
                                 [args.sim] * workers, [args.failures] * workers))
    elapsed = time.monotonic() - start
    ran = sum(count for count, _ in outcomes)
    failures = [failure for _, found in outcomes for failure in found]
    print(f"fuzz: {ran} examples in {elapsed:.0f} s ({ran / elapsed:.2f}/s), "
          f"{len(failures)} failing chunk(s)")
    for chunk_seed, text in failures:
        print(f"\nfailure (chunk seed {chunk_seed}, shrunk):\n{text}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
