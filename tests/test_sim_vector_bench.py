"""Our plain Verilog testbench (tb_vectors.v) on `dwconv vectors` files, under Icarus."""

import shutil

import numpy as np
import pytest

from dwconv.cli import main
from dwconv.models.export import export_layer
from dwconv.golden.formats import LayerFormats
from dwconv.golden.layer import Layer
from dwconv.golden.spec import LayerSpec
from dwconv.sim.vector_bench import run_vector_testbench

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None,
                                reason="Icarus Verilog (iverilog) is not installed")

FORMATS = ["--input-format", "fixed<8,3>", "--weight-format", "fixed<8,2>",
           "--bias-format", "fixed<8,3>", "--output-format", "fixed<10,5,RND,SAT>"]


def _layer(seed):
    spec = LayerSpec(input_shape=(5, 6, 4), kernel_size=(3, 3), padding="same",
                     depth_multiplier=2, activation="relu6", name="dw")
    rng = np.random.default_rng(seed)
    return Layer(spec, rng.normal(size=spec.kernel_shape).astype(np.float32),
                 rng.normal(size=spec.out_channels).astype(np.float32))


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """A layer exported, its vectors and its Verilog written by the command line."""
    root = tmp_path_factory.mktemp("vectors")
    layer = _layer(1)
    export_layer(root / "layer", layer, LayerFormats.from_strings())
    np.save(root / "x.npy", np.random.default_rng(2).normal(0, 3, (2, 5, 6, 4)))
    args = [str(root / "layer"), *FORMATS, "--lanes", "2"]
    assert main(["vectors", *args, "-i", str(root / "x.npy"), "-o", str(root / "vec")]) == 0
    assert main(["verilog", *args, "-o", str(root / "dwconv.v")]) == 0
    return root


def test_vectors_pass(flow, tmp_path):
    result = run_vector_testbench(flow / "vec", flow / "dwconv.v", tmp_path)
    assert result.passed, result.log
    assert "PASS: 120 output beats match (120 input beats" in result.log


def test_one_corrupted_expected_value_fails(flow, tmp_path):
    lines = (flow / "vec" / "output.hex").read_text().splitlines()
    # flip the lowest bit of one lane in the middle of the second frame
    k = len(lines) * 3 // 4
    lines[k] = format(int(lines[k], 16) ^ 1, f"0{len(lines[k])}x")
    corrupted = tmp_path / "output.hex"
    corrupted.write_text("\n".join(lines) + "\n")
    result = run_vector_testbench(flow / "vec", flow / "dwconv.v", tmp_path,
                                  expected_hex=corrupted)
    assert not result.passed
    assert f"beat {k}: got data" in result.log
    assert "FAIL: 1 of 120 output beats differ" in result.log


def test_weight_port_loads_weights_hex(flow, tmp_path):
    """A --weights port engine built from other weights computes the layer after the
    testbench loads weights.hex through w_axis."""
    other = tmp_path / "other"
    export_layer(other, _layer(5), LayerFormats.from_strings())
    assert main(["verilog", str(other), *FORMATS, "--lanes", "2", "--weights", "port",
                 "-o", str(tmp_path / "port.v")]) == 0
    result = run_vector_testbench(flow / "vec", tmp_path / "port.v", tmp_path / "run",
                                  weight_port=True)
    assert result.passed, result.log
