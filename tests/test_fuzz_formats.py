"""Layers and format sets drawn together: each engine equals its golden model exactly.

The regression cases are the given-accumulator configurations that were wrong in hardware
(a negative sum zero-extended into a wider accumulator format); the fuzz budget is the CI
slice of ``make fuzz`` (dwconv.campaigns.fuzz): seeded examples of every kind (depthwise layers,
separable blocks, int8 layers) in the Amaranth simulator and three through the generated
Verilog in Verilator (the long campaigns are ``make fuzz``).
"""

import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings

from dwconv.golden.formats import LayerFormats
from dwconv.golden.spec import LayerSpec
from dwconv.campaigns.fuzz import (FuzzCase, check_engine, fuzz_cases, int8_cases, main,
                             mixed_cases, separable_cases)

from support.engine_cases import random_layer

EIGHT_BIT = "fixed<8,3,RND,SAT>"


def _case(spec, formats, *, lanes, weights="const", stall=0.3, seed_value=0):
    rng = np.random.default_rng(seed_value)
    layer = random_layer(spec, rng, scale=2.0)
    fmt = formats.input
    frames = rng.integers(fmt.raw_min, fmt.raw_max + 1, size=(2, *spec.input_shape))
    return FuzzCase(layer, formats, lanes, weights, frames, stall, seed_value)


# The issue's layer: 10x10x3, kernel 3x5, stride 2, valid, an hls4ml-style accumulator.
ISSUE_SPEC = LayerSpec(input_shape=(10, 10, 3), kernel_size=(3, 5), strides=2)


@pytest.mark.parametrize("output", ["fixed<8,2,RND,SAT>", "fixed<8,2,TRN,SAT>", "fixed<8,2>"])
@pytest.mark.parametrize("weights", ["const", "port"])
def test_given_accumulator_regression(output, weights, tmp_path):
    formats = LayerFormats.from_strings(input=EIGHT_BIT, weight=EIGHT_BIT, bias=EIGHT_BIT,
                                        accum="fixed<40,20>", output=output)
    check_engine(_case(ISSUE_SPEC, formats, lanes=3, weights=weights), failure_dir=tmp_path)


def test_fuzz_found_regression(tmp_path):
    """The first fuzz campaign's shrunk example against the unfixed engine (121 of 192
    values wrong): a signed accumulator 9 integer bits wider than the exact sum."""
    spec = LayerSpec(input_shape=(5, 7, 8), kernel_size=(2, 4), dilation_rate=(1, 2),
                     depth_multiplier=3, use_bias=False)
    formats = LayerFormats.from_strings(
        input="fixed<4,0>", weight="ufixed<11,0>", bias="fixed<8,3,TRN_ZERO,SAT_ZERO>",
        accum="fixed<46,37,RND_CONV,SAT_SYM>", output="ufixed<11,11,RND_INF,SAT_ZERO>")
    check_engine(_case(spec, formats, lanes=1, stall=0.2, seed_value=507),
                 failure_dir=tmp_path)


def test_fuzz_found_wide_kernel_regression(tmp_path):
    """A fuzz campaign's example (seed 20261262) that the Amaranth simulator could not
    build: its kernel port, 20 taps x 24 lanes x 32 bits, is a constant of over 4300
    decimal digits in the simulator's generated code."""
    spec = LayerSpec(input_shape=(2, 7, 8), kernel_size=(5, 4), strides=2,
                     dilation_rate=(1, 2), padding="same", depth_multiplier=3)
    formats = LayerFormats.from_strings(
        input="ufixed<17,17,RND_INF,SAT_SYM>", weight="fixed<32,8,TRN_ZERO,SAT_SYM>",
        bias="fixed<12,4,RND_MIN_INF,SAT_SYM>", accum="fixed<54,25,RND_CONV,SAT_SYM>",
        output="ufixed<26,20,TRN,SAT>")
    check_engine(_case(spec, formats, lanes=8, stall=0.5, seed_value=376),
                 failure_dir=tmp_path)


#: The CI slice of each kind: (strategy, examples, seed).  The long campaigns are
#: ``make fuzz``; these keep every kind's drawing and checking honest on each run.
SLICES = {
    "depthwise": (lambda: fuzz_cases(max_side=6), 30, 20261121),
    "separable": (lambda: separable_cases(max_side=5), 14, 20261204),
    "int8": (lambda: int8_cases(max_side=5), 12, 20261205),
}


@pytest.mark.parametrize("kind", SLICES)
def test_fuzz_amaranth(kind, tmp_path):
    strategy, examples, seed_value = SLICES[kind]
    kinds = []

    @seed(seed_value)
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy())
    def run(case):
        kinds.append(case.kind)
        check_engine(case, failure_dir=tmp_path)

    run()
    assert set(kinds) == {kind}


VERILATOR_SLICES = ["depthwise", "separable", "int8"]


@pytest.mark.skipif(shutil.which("verilator") is None, reason="Verilator is not installed")
@pytest.mark.parametrize("kind", VERILATOR_SLICES)
def test_fuzz_verilator(kind, tmp_path):
    """A slice of each kind through the shipped Verilog (one build per example)."""
    strategy = {"depthwise": fuzz_cases, "separable": separable_cases,
                "int8": int8_cases}[kind]

    # no shrinking: each example is a Verilator build, and a failure is reported as drawn
    @seed(20261121)
    @settings(max_examples=2, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy(max_side=4))
    def run(case):
        check_engine(case, sim="verilator", failure_dir=tmp_path)

    run()


def test_mixed_cases_draw_every_kind():
    """The campaign's mix draws each kind in about its proportion (5:3:2 by default)."""
    kinds = []

    @seed(7)
    @settings(max_examples=200, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mixed_cases(max_side=3))
    def draw(case):
        kinds.append(case.kind)

    draw()
    counts = {kind: kinds.count(kind) for kind in ("depthwise", "separable", "int8")}
    assert all(counts.values()), counts
    assert counts["depthwise"] > counts["int8"], counts


class _WrongGolden(FuzzCase):
    """A depthwise case whose golden model is off by one somewhere: a failure to keep."""

    def expected(self):
        expected = super().expected().copy()
        expected.flat[0] += 1
        return expected


def test_failure_is_kept_and_replayed(tmp_path, capsys):
    spec = LayerSpec(input_shape=(3, 3, 2), kernel_size=(2, 2))
    formats = LayerFormats.from_strings(input=EIGHT_BIT, weight=EIGHT_BIT, bias=EIGHT_BIT,
                                        output="fixed<12,6,RND,SAT>")
    case = _case(spec, formats, lanes=2)
    wrong = _WrongGolden(**vars(case))
    with pytest.raises(AssertionError, match=r"1 of 16 values differ") as failure:
        check_engine(wrong, failure_dir=tmp_path)
    replays = [line.removeprefix("replay: ") for line in str(failure.value).splitlines()
               if line.startswith("replay: ")]
    assert len(replays) == 2 and "--replay" in replays[0] and "dwconv simulate" in replays[1]
    kept = next(tmp_path.glob("depthwise-*/case.pickle"))
    assert (kept.parent / "layer" / "layer.json").is_file()
    # the kept example fails again when replayed; the same case with its real golden passes
    assert main(["--replay", str(kept)]) == 1
    replayed = tmp_path / "right.pickle"
    replayed.write_bytes(pickle.dumps(case))
    assert main(["--replay", str(replayed)]) == 0
    assert "equal to the golden model" in capsys.readouterr().out


def test_module_imports_without_hypothesis():
    """hypothesis is imported when fuzzing starts: without it, one line and exit code 2."""
    code = ("import sys; sys.modules['hypothesis'] = None; import dwconv.campaigns.fuzz as f; "
            "sys.exit(f.main(['--examples', '1']))")
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert ran.returncode == 2, ran.stderr
    assert ran.stderr.strip().splitlines() == [
        "fuzz: error: the fuzzer needs hypothesis, which is not installed; install it with "
        "pip install hypothesis (it is in dwconv[dev])"]
