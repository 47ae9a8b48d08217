"""The demo end to end: every file written, zero mismatches in both simulators."""

import io
import json

import numpy as np

from dwconv.models.export import load_layer
from dwconv.demo import DEMO_LANES, SEED_SPEC, run_demo, seed_layer
from support.shared_build import native_build_root


def test_demo_writes_everything_and_matches(tmp_path):
    out = tmp_path / "demo"
    log = io.StringIO()
    summary = run_demo(out, frames=2, build_dir=native_build_root(), stream=log)

    text = log.getvalue()
    assert "[9/9] summary" in text and "PASS: 0 mismatches" in text
    assert summary["mismatches"] == 0
    for name in ("amaranth", "verilator"):
        run = summary["simulations"][name]
        assert run["mismatches"] == 0 and run["framing_errors"] == 0 and not run["error_flag"]
        assert run["ideal_cycles"] == 2 * 16 * 12 * 6 // DEMO_LANES
        assert run["cycles"] >= run["ideal_cycles"]
    # both simulators count the same cycles on the same design
    assert summary["simulations"]["amaranth"]["cycles"] == \
        summary["simulations"]["verilator"]["cycles"]
    assert json.loads((out / "summary.json").read_text()) == summary

    # the .keras file and the export hold the seed layer with its fixed weights
    for source in (out / "seed.keras", out / "export"):
        layer, _ = load_layer(source)
        assert layer.spec.input_shape == SEED_SPEC.input_shape
        assert layer.spec.kernel_size == SEED_SPEC.kernel_size
        np.testing.assert_array_equal(layer.kernel, seed_layer().kernel)
        np.testing.assert_array_equal(layer.bias, seed_layer().bias)
    assert (out / "dwconv.v").read_text().count("module dwconv") == 1
    vectors = json.loads((out / "vectors" / "vectors.json").read_text())
    assert vectors["frames"] == 2 and vectors["lanes"] == DEMO_LANES
    assert (out / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the quantization error is measured against Keras' own output
    keras_out = np.load(out / "keras_output.npy")
    fixed_out = np.load(out / "fixed_output.npy")
    assert keras_out.shape == (2, 14, 8, 6)
    assert summary["max_abs_error_fixed_vs_keras"] == np.max(np.abs(fixed_out - keras_out))
    assert 0 < summary["max_abs_error_fixed_vs_keras"] < 0.2
    assert summary["max_abs_error_float_vs_keras"] < 1e-5
