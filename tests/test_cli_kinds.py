"""Every command on a separable export (from a real Keras SeparableConv2D) and on .tflite
int8 fixtures: golden bit for bit with the interpreter's stored outputs, simulate with 0
mismatches, vectors and Verilog written (Verilator lints it), one-line errors (exit 2) for
options that do not fit the layer's kind."""

import json
import pathlib
import shutil

import numpy as np
import pytest

import dwconv
from dwconv.cli import main
from dwconv.flows.lint import lint_verilog

DATA = pathlib.Path(__file__).parent / "data" / "tflite"
FORMATS = ["--input-format", "fixed<8,3,RND,SAT>", "--weight-format", "fixed<8,2,RND>",
           "--mid-format", "fixed<10,5,RND,SAT>", "--pointwise-format", "fixed<8,2,RND>",
           "--output-format", "fixed<10,5,RND,SAT>"]


@pytest.fixture(scope="module")
def separable(tmp_path_factory):
    """(export folder, input .npy, Keras' output) of a SeparableConv2D (4x5x2, M = 2,
    F = 3), exported with 8-bit formats."""
    keras = pytest.importorskip("keras")
    folder = tmp_path_factory.mktemp("separable_cli")
    model = keras.Sequential([keras.Input((4, 5, 2)), keras.layers.SeparableConv2D(
        3, 3, padding="same", depth_multiplier=2, activation="relu6", name="sep")])
    rng = np.random.default_rng(5)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    model.save(folder / "sep.keras")
    x = rng.normal(0, 1.0, (2, 4, 5, 2)).astype(np.float32)
    np.save(folder / "x.npy", x.astype(np.float64))
    keras_y = np.asarray(keras.ops.convert_to_numpy(model(x)), np.float64)
    assert main(["export", str(folder / "sep.keras"), *FORMATS, "-o",
                 str(folder / "export")]) == 0
    return folder / "export", folder / "x.npy", keras_y


def _error_line(capsys):
    err = capsys.readouterr().err
    assert err.startswith("dwconv: error: ") and err.count("\n") == 1, err
    return err


# ---------------------------------------------------------------------------------------------
# separable

def test_separable_export_and_golden(separable, tmp_path):
    export, x, keras_y = separable
    document = json.loads((export / "layer.json").read_text())
    assert document["kind"] == "SeparableConv2D" and document["filters"] == 3
    assert document["formats"]["mid"] == "fixed<10,5,RND,SAT>"
    assert main(["golden", str(export), "-i", str(x), "-o", str(tmp_path / "y.npy")]) == 0
    design = dwconv.Design(dwconv.load(export))
    y = np.load(tmp_path / "y.npy")
    np.testing.assert_array_equal(y, design.predict(np.load(x)))
    assert np.abs(y - keras_y).max() < 0.25
    assert main(["golden", str(export), "-i", str(x), "-o", str(tmp_path / "f.npy"),
                 "--float"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), keras_y, rtol=1e-5, atol=1e-5)
    # a format given on the command line goes over the stored one
    assert main(["golden", str(export), "-i", str(x), "-o", str(tmp_path / "m.npy"),
                 "--mid-format", "fixed<4,2,TRN,SAT>"]) == 0
    assert not np.array_equal(np.load(tmp_path / "m.npy"), y)


@pytest.mark.parametrize("sim", ["amaranth", "verilator"])
def test_separable_simulate(separable, tmp_path, sim, capsys):
    if sim == "verilator" and shutil.which("verilator") is None:
        pytest.skip("verilator is not installed")
    export, x, _ = separable
    code = main(["simulate", str(export), "-i", str(x), "-o", str(tmp_path / "y.npy"),
                 "--lanes", "2", "--reuse", "2", "--stall", "0.2", "--sim", sim, "-q",
                 "--report", str(tmp_path / "r.json")])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["mismatches"] == 0 and report["frames"] == 2
    assert report["layer_kind"] == "SeparableConv2D" and report["lanes"] == 2
    assert report["ideal_cycles"] == 2 * 4 * 5 * 2 // 2 * 2
    assert {"cycles", "efficiency", "latency_cycles", "max_abs_error_vs_float",
            "overflows"} <= set(report)
    design = dwconv.Design(dwconv.load(export))
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), design.predict(np.load(x)))


def test_separable_vectors_and_verilog(separable, tmp_path, capsys):
    export, x, _ = separable
    assert main(["vectors", str(export), "-i", str(x), "-o", str(tmp_path / "v"),
                 "--lanes", "2"]) == 0
    assert {"input.hex", "output.hex", "weights.hex", "vectors.json", "vectors.npz",
            "expected.npy", "input.npy"} == {p.name for p in (tmp_path / "v").iterdir()}
    assert main(["verilog", str(export), "--lanes", "2", "--weights", "port", "-o",
                 str(tmp_path / "sep.v")]) == 0
    assert "module dwconv" in capsys.readouterr().out
    text = (tmp_path / "sep.v").read_text()
    assert text.startswith("// dwconv engine dwconv: SeparableConv2D 'sep'")
    if shutil.which("verilator") is not None:
        assert lint_verilog(text) == []


def test_separable_pointwise_options(separable, tmp_path, capsys):
    export, _, _ = separable
    assert main(["verilog", str(export), "--lanes", "2", "--pointwise-lanes", "1",
                 "--pointwise-reuse", "4", "-o", str(tmp_path / "sep.v")]) == 0
    assert "pointwise stage: 3 filters, Q=1 per output beat, Rp=4" in \
        (tmp_path / "sep.v").read_text()
    capsys.readouterr()
    assert main(["verilog", str(export), "--pointwise-lanes", "2", "-o",
                 str(tmp_path / "bad.v")]) == 2
    assert "pointwise_lanes 2 does not divide the 3 filters" in _error_line(capsys)
    assert not (tmp_path / "bad.v").exists()


def test_separable_config_profile_build(separable, tmp_path, capsys):
    export, x, _ = separable
    assert main(["config", str(export), "-o", str(tmp_path / "c.json")]) == 0
    entry = json.loads((tmp_path / "c.json").read_text())["layers"]["sep"]
    assert entry["formats"]["mid"] == "fixed<10,5,RND,SAT>"
    assert main(["golden", str(export), "-i", str(x), "-o", str(tmp_path / "y.npy"),
                 "--config", str(tmp_path / "c.json")]) == 0
    capsys.readouterr()
    assert main(["profile", str(export), "-i", str(x), "-o", str(tmp_path / "p")]) == 2
    assert "profile chooses the formats of depthwise layers only" in _error_line(capsys)
    assert not (tmp_path / "p").exists()
    assert main(["build", str(export), "--board", "icebreaker", "-o", str(tmp_path / "b")]) == 2
    assert "for depthwise layers only; layer 'sep' is a SeparableConv2D" in _error_line(capsys)
    assert not (tmp_path / "b").exists()


def test_separable_refuses_tflite_rounding(separable, tmp_path, capsys):
    export, x, _ = separable
    assert main(["golden", str(export), "-i", str(x), "-o", str(tmp_path / "y.npy"),
                 "--tflite-rounding", "double"]) == 2
    assert "rounding is for int8 TFLite layers only" in _error_line(capsys)
    assert not (tmp_path / "y.npy").exists()


# ---------------------------------------------------------------------------------------------
# .tflite

@pytest.fixture(scope="module")
def tflite(tmp_path_factory):
    """(model, int8 input .npy, stored outputs) of a fixture with M = 2."""
    folder = tmp_path_factory.mktemp("tflite_cli")
    with np.load(DATA / "dw3x3_m2.npz") as data:
        stored = {key: data[key] for key in data.files}
    np.save(folder / "x.npy", stored["x"])
    return DATA / "dw3x3_m2.tflite", folder / "x.npy", stored


@pytest.mark.parametrize("rounding, key", [(None, "auto"), ("fp32", "auto"),
                                           ("double", "ref")])
def test_tflite_golden_equals_the_interpreter(tflite, tmp_path, rounding, key):
    model, x, stored = tflite
    extra = [] if rounding is None else ["--tflite-rounding", rounding]
    assert main(["golden", str(model), "-i", str(x), "-o", str(tmp_path / "y.npy"),
                 *extra]) == 0
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.int8
    np.testing.assert_array_equal(y, stored[key])


def test_tflite_float_input_is_dequantized(tflite, tmp_path):
    model, _, stored = tflite
    layer = dwconv.load(model)
    x = (stored["x"].astype(np.float64) - layer.input_zero_point) * layer.input_scale
    np.save(tmp_path / "x.npy", x)
    assert main(["golden", str(model), "-i", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npy")]) == 0
    np.testing.assert_array_equal(
        np.load(tmp_path / "y.npy"),
        (stored["auto"].astype(np.float64) - layer.output_zero_point) * layer.output_scale)


@pytest.mark.parametrize("sim", ["amaranth", "verilator"])
def test_tflite_simulate(tflite, tmp_path, sim, capsys):
    if sim == "verilator" and shutil.which("verilator") is None:
        pytest.skip("verilator is not installed")
    model, x, stored = tflite
    code = main(["simulate", str(model), "-i", str(x), "-o", str(tmp_path / "y.npy"),
                 "--lanes", "1", "--stall", "0.2", "--sim", sim, "-q", "--tflite-rounding",
                 "double", "--report", str(tmp_path / "r.json")])
    assert code == 0, capsys.readouterr().err
    assert "mismatches 0" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), stored["ref"])
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["mismatches"] == 0 and report["rounding"] == "double"
    assert report["kind"] == "int8" and report["frames"] == len(stored["x"])


def test_tflite_vectors_verilog_config(tflite, tmp_path, capsys):
    model, x, stored = tflite
    assert main(["vectors", str(model), "-i", str(x), "-o", str(tmp_path / "v"),
                 "--lanes", "3"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "v" / "expected.npy"), stored["auto"])
    assert main(["verilog", str(model), "-o", str(tmp_path / "t.v")]) == 0
    text = (tmp_path / "t.v").read_text()
    assert text.startswith("// dwconv engine dwconv: int8 DEPTHWISE_CONV_2D")
    if shutil.which("verilator") is not None:
        assert lint_verilog(text) == []
    assert main(["config", str(model), "-o", str(tmp_path / "c.json")]) == 0
    assert main(["golden", str(model), "-i", str(x), "-o", str(tmp_path / "y.npy"),
                 "--config", str(tmp_path / "c.json")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), stored["auto"])


def test_int8_export_folder_takes_every_command(tflite, tmp_path, capsys):
    from dwconv.models.export import export_layer
    model, x, stored = tflite
    try:
        export_layer(tmp_path / "probe", dwconv.load(model))
    except AttributeError:
        pytest.skip("int8 export folders come with models/export.py's int8 support")
    assert main(["export", str(model), "-o", str(tmp_path / "e")]) == 0
    folder = str(tmp_path / "e")
    assert main(["golden", folder, "-i", str(x), "-o", str(tmp_path / "y.npy"),
                 "--tflite-rounding", "double"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), stored["ref"])
    assert main(["simulate", folder, "-i", str(x), "-o", str(tmp_path / "s.npy"), "-q"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), stored["auto"])
    assert main(["vectors", folder, "-i", str(x), "-o", str(tmp_path / "v")]) == 0
    assert main(["verilog", folder, "-o", str(tmp_path / "t.v")]) == 0
    capsys.readouterr()
    assert main(["golden", folder, "-i", str(x), "-o", str(tmp_path / "f.npy"),
                 "--output-format", "fixed<8,8>"]) == 2
    assert "takes no formats" in _error_line(capsys)


@pytest.mark.parametrize("options, message", [
    (["--input-format", "fixed<8,3>"], "takes no formats"),
    (["--float"], "has no float model"),
    (["--tflite-rounding", "nearest"], "invalid choice: 'nearest'"),
])
def test_tflite_errors_are_one_line(tflite, tmp_path, capsys, options, message):
    model, x, _ = tflite
    assert main(["golden", str(model), "-i", str(x), "-o", str(tmp_path / "y.npy"),
                 *options]) == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "y.npy").exists()


def test_tflite_int8_input_out_of_range(tflite, tmp_path, capsys):
    model, _, stored = tflite
    np.save(tmp_path / "x.npy", stored["x"].astype(np.int32) * 2)
    assert main(["golden", str(model), "-i", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npy")]) == 2
    assert "outside [-128, 127]" in _error_line(capsys)


def test_tflite_profile_and_build_refuse(tflite, tmp_path, capsys):
    model, x, _ = tflite
    assert main(["verilog", str(model), "--pointwise-lanes", "1", "-o",
                 str(tmp_path / "t.v")]) == 2
    assert "for separable blocks only" in _error_line(capsys)
    assert main(["profile", str(model), "-i", str(x), "-o", str(tmp_path / "p")]) == 2
    assert "int8 DEPTHWISE_CONV_2D" in _error_line(capsys)
    assert main(["build", str(model), "--board", "icebreaker", "-o", str(tmp_path / "b")]) == 2
    assert "for depthwise layers only" in _error_line(capsys)
