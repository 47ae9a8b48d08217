"""Hostile input to every command, table-driven: empty, truncated and corrupted files,
layer.json options the engine cannot build, arrays that do not fit, every malformed format
string, and weights that overflow their format (a one-line warning, exit 0).

Complements test_cli_errors.py (one case per kind of error): here every command meets
every defect that applies to it.  Each error: exit code 2, one stderr line
``dwconv: error: <what>; <what to do>``, no traceback, nothing left behind.
"""

import io
import json
import zipfile

import h5py
import numpy as np
import pytest

from dwconv.cli import main
from dwconv.models.export import export_layer
from dwconv.golden.fixed_ref import fixed_forward_raw
from dwconv.golden.formats import LayerFormats
from dwconv.golden.layer import Layer
from dwconv.golden.spec import LayerSpec

SPEC = LayerSpec(input_shape=(4, 5, 2), kernel_size=3, padding="same", name="dw")

#: Every command and its arguments with a good layer ({layer}), input and output.
COMMANDS = {
    "export": ["export", "{layer}", "-o", "{out}/exp"],
    "golden": ["golden", "{layer}", "-i", "{x}", "-o", "{out}/y.npy"],
    "vectors": ["vectors", "{layer}", "-i", "{x}", "-o", "{out}/vec"],
    "simulate": ["simulate", "{layer}", "-i", "{x}", "-o", "{out}/y.npy"],
    "verilog": ["verilog", "{layer}", "-o", "{out}/dw.v"],
    "synth": ["synth", "{layer}", "--target", "ice40", "--report", "{out}/r.json"],
    "build": ["build", "{layer}", "--board", "icebreaker", "-o", "{out}/board"],
}
WITH_INPUT = ["golden", "vectors", "simulate"]
WITH_FORMATS = ["export", "golden", "vectors", "simulate", "verilog", "synth", "build"]


def _keras_bytes(layers, weights):
    """A .keras archive written by hand: config.json + model.weights.h5."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        for key, arrays in weights.items():
            for i, array in enumerate(arrays):
                h5[f"layers/{key}/vars/{i}"] = array
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("config.json", json.dumps(
            {"class_name": "Sequential", "config": {"name": "s", "layers": layers}}))
        archive.writestr("metadata.json", "{}")
        archive.writestr("model.weights.h5", buffer.getvalue())
    return out.getvalue()


def _dw_config(name="dw", **changes):
    config = {"name": name, "kernel_size": [3, 3], "strides": [1, 1], "padding": "same",
              "depth_multiplier": 1, "dilation_rate": [1, 1], "activation": "linear",
              "use_bias": True, "data_format": "channels_last"}
    config.update(changes)
    return {"class_name": "DepthwiseConv2D", "config": config,
            "build_config": {"input_shape": [None, 4, 5, 2]}}


GOOD_WEIGHTS = [np.full((3, 3, 2, 1), 0.25, np.float32), np.zeros(2, np.float32)]


def _layer_json_variant(base, **changes):
    document = dict(base)
    document.update(changes)
    return document


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Good and bad layers and arrays in one folder (read only by the tests)."""
    root = tmp_path_factory.mktemp("hostile")
    layer = Layer(SPEC, GOOD_WEIGHTS[0], GOOD_WEIGHTS[1])
    export_layer(root / "good", layer)
    np.save(root / "x.npy", np.ones((1, 4, 5, 2)))
    good_json = json.loads((root / "good" / "layer.json").read_text())
    npz = (root / "good" / "weights.npz").read_bytes()
    keras_bytes = _keras_bytes([_dw_config()], {"depthwise_conv2d": GOOD_WEIGHTS})
    (root / "good.keras").write_bytes(keras_bytes)

    def folder(name, document=None, weights=npz, text=None):
        path = root / name
        path.mkdir()
        (path / "layer.json").write_text(text if text is not None else json.dumps(document))
        if weights is not None:
            (path / "weights.npz").write_bytes(weights)

    layers = {}
    # files missing, empty, truncated, corrupted
    layers["missing .keras"] = (root / "none.keras", "does not exist")
    for suffix in (".keras", ".h5"):
        (root / f"empty{suffix}").write_bytes(b"")
        layers[f"empty {suffix}"] = (root / f"empty{suffix}", "")
    (root / "half.keras").write_bytes(keras_bytes[:len(keras_bytes) // 2])
    layers["truncated .keras"] = (root / "half.keras", "")
    flipped = bytearray(keras_bytes)
    for k in range(100, len(flipped), 97):
        flipped[k] ^= 0x5A
    (root / "flipped.keras").write_bytes(bytes(flipped))
    layers["corrupted .keras"] = (root / "flipped.keras", "")
    legacy = io.BytesIO()
    with h5py.File(legacy, "w") as h5:
        h5.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {
            "name": "s", "layers": [_dw_config()]}})
        h5["model_weights/dw/dw/depthwise_kernel"] = GOOD_WEIGHTS[0]
        h5["model_weights/dw/dw/bias"] = GOOD_WEIGHTS[1]
    legacy = legacy.getvalue()
    (root / "half.h5").write_bytes(legacy[:len(legacy) // 2])
    layers["truncated .h5"] = (root / "half.h5", "")
    (root / "conv.keras").write_bytes(_keras_bytes(
        [{"class_name": "Conv2D", "config": {"name": "c", "filters": 4}},
         {"class_name": "Dense", "config": {"name": "d"}}], {}))
    layers["only other layer types"] = (root / "conv.keras", "DepthwiseConv2D")
    (root / "two.keras").write_bytes(_keras_bytes(
        [_dw_config("a"), _dw_config("b")],
        {"depthwise_conv2d": GOOD_WEIGHTS, "depthwise_conv2d_1": GOOD_WEIGHTS}))
    layers["several DepthwiseConv2D"] = (root / "two.keras", "--layer")
    (root / "tanh.keras").write_bytes(_keras_bytes(
        [_dw_config(activation="tanh")], {"depthwise_conv2d": GOOD_WEIGHTS}))
    layers["keras activation tanh"] = (root / "tanh.keras", "tanh")
    (root / "dm0.keras").write_bytes(_keras_bytes(
        [_dw_config(depth_multiplier=0)], {"depthwise_conv2d": GOOD_WEIGHTS}))
    layers["keras depth_multiplier 0"] = (root / "dm0.keras", "depth_multiplier")
    (root / "groups.keras").write_bytes(_keras_bytes(
        [{"class_name": "Functional", "config": {"name": "f", "layers": "nonsense"}}], {}))
    layers["keras config of the wrong shape"] = (root / "groups.keras", "")
    # exported folders with bad layer.json or weights.npz
    folder("empty json", text="")
    layers["empty layer.json"] = (root / "empty json", "layer.json")
    folder("list json", text="[1, 2]")
    layers["layer.json not an object"] = (root / "list json", "layer.json")
    folder("half json", text=json.dumps(good_json)[:40])
    layers["truncated layer.json"] = (root / "half json", "layer.json")
    variants = {
        "activation tanh": (dict(activation="tanh"), "tanh"),
        "depth_multiplier 0": (dict(depth_multiplier=0), "depth_multiplier"),
        "negative stride": (dict(stride=[-1, 1]), "stride"),
        "zero kernel": (dict(kernel_size=[0, 3]), "kernel_size"),
        "kernel as text": (dict(kernel_size="three"), "kernel_size"),
        "padding full": (dict(padding="full"), "padding"),
        "data_format bogus": (dict(data_format="nhwc"), "data_format"),
        "input shape of two": (dict(first_input_shape=[4, 5]), ""),
        "input shape negative": (dict(first_input_shape=[4, -5, 2]), ""),
        "formats not a map": (dict(formats=["fixed<8,3>"]), "formats"),
        "stored format bad": (dict(formats={"input": "fixed<8>"}), "fixed<8>"),
    }
    for name, (changes, fragment) in variants.items():
        folder(name, _layer_json_variant(good_json, **changes))
        layers[f"layer.json {name}"] = (root / name, fragment)
    folder("no npz", good_json, weights=None)
    layers["missing weights.npz"] = (root / "no npz", "weights.npz")
    folder("empty npz", good_json, weights=b"")
    layers["empty weights.npz"] = (root / "empty npz", "weights.npz")
    folder("half npz", good_json, weights=npz[:len(npz) // 2])
    layers["truncated weights.npz"] = (root / "half npz", "weights.npz")
    for name, kernel, bias in [
            ("kernel shape", np.zeros((3, 3, 3, 1), np.float32), GOOD_WEIGHTS[1]),
            ("bias shape", GOOD_WEIGHTS[0], np.zeros(5, np.float32)),
            ("kernel text", np.full((3, 3, 2, 1), "a"), GOOD_WEIGHTS[1]),
            ("kernel NaN", np.full((3, 3, 2, 1), np.nan, np.float32), GOOD_WEIGHTS[1]),
            ("bias Inf", GOOD_WEIGHTS[0], np.full(2, np.inf, np.float32))]:
        buffer = io.BytesIO()
        np.savez(buffer, kernel=kernel, bias=bias)
        folder(name, good_json, weights=buffer.getvalue())
        layers[f"weights.npz {name}"] = (root / name, "")

    arrays = {}
    def array(name, value, fragment):
        np.save(root / f"{name}.npy", value)
        arrays[name] = (root / f"{name}.npy", fragment)
    array("channels first", np.ones((1, 2, 4, 5)), "shape")
    array("five dims", np.ones((1, 1, 4, 5, 2)), "shape")
    array("scalar", np.float64(1.0), "shape")
    array("empty batch", np.ones((0, 4, 5, 2)), "")
    array("complex", np.ones((4, 5, 2), np.complex64), "")
    array("NaN", np.full((4, 5, 2), np.nan), "NaN")
    array("Inf", np.full((4, 5, 2), np.inf, np.float32), "Inf")
    np.save(root / "objects.npy", np.array([{}, 1], dtype=object), allow_pickle=True)
    arrays["objects"] = (root / "objects.npy", "")
    (root / "empty.npy").write_bytes(b"")
    arrays["empty file"] = (root / "empty.npy", "")
    good_npy = (root / "x.npy").read_bytes()
    (root / "half.npy").write_bytes(good_npy[:len(good_npy) - 40])
    arrays["truncated"] = (root / "half.npy", "")
    (root / "header.npy").write_bytes(good_npy[:20])
    arrays["truncated header"] = (root / "header.npy", "")
    return root, layers, arrays


#: Malformed format strings (each must be rejected wherever a format is given).
BAD_FORMATS = [
    "", " ", "fixed", "fixed<>", "fixed<8>", "fixed<8,>", "fixed<,3>", "fixed<8;3>",
    "fixed[8,3]", "fixed<8,3", "fixed8,3>", "float<8,3>", "int8", "fixed<8.5,3>",
    "fixed<8,3.0>", "fixed<0,0>", "fixed<-8,3>", "fixed<8,-1>", "fixed<8,9>", "ufixed<4,5>",
    "fixed<1,1>", "fixed<33,3>", "fixed<99999999999999999999,3>", "fixed<8,3,RND_HALF>",
    "fixed<8,3,RND,WRAPAROUND>", "fixed<8,3,SAT>", "fixed<8,3,RND,SAT,1>",
    "fixed<8,3,RND,SAT,0,0>", "fixed<8,3,,SAT>", "fixed<８,3>", "fixed<8,3>junk",
    "fixed<0x8,3>",
]


def _run(args, root, capsys, layer=None, x=None):
    out = root / "out"
    out.mkdir(exist_ok=True)
    for child in out.iterdir():
        raise AssertionError(f"{child} left over from an earlier case")
    fill = {"layer": layer or root / "good", "x": x or root / "x.npy", "out": out}
    code = main([a.format(**fill) for a in args])
    captured = capsys.readouterr()
    left = sorted(p.name for p in out.iterdir())
    for child in out.iterdir():   # leave the folder empty for the next case
        import shutil
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    return code, captured, left


def _check_error(code, captured, left, fragment):
    assert code == 2, (code, captured.err)
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("dwconv: error: ") and "; " in lines[0], lines[0]
    assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in captured.err and captured.out == ""
    assert left == [], f"left behind: {left}"


LAYER_CASES = ["missing .keras", "empty .keras", "empty .h5", "truncated .keras",
               "corrupted .keras", "truncated .h5", "only other layer types",
               "several DepthwiseConv2D", "keras activation tanh", "keras depth_multiplier 0",
               "keras config of the wrong shape", "empty layer.json",
               "layer.json not an object", "truncated layer.json",
               "layer.json activation tanh", "layer.json depth_multiplier 0",
               "layer.json negative stride", "layer.json zero kernel",
               "layer.json kernel as text", "layer.json padding full",
               "layer.json data_format bogus", "layer.json input shape of two",
               "layer.json input shape negative", "layer.json formats not a map",
               "layer.json stored format bad", "missing weights.npz", "empty weights.npz",
               "truncated weights.npz", "weights.npz kernel shape", "weights.npz bias shape",
               "weights.npz kernel text", "weights.npz kernel NaN", "weights.npz bias Inf"]
ARRAY_CASES = ["channels first", "five dims", "scalar", "empty batch", "complex", "NaN",
               "Inf", "objects", "empty file", "truncated", "truncated header"]


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case", LAYER_CASES)
def test_bad_layer(world, command, case, capsys):
    root, layers, _ = world
    path, fragment = layers[case]
    _check_error(*_run(COMMANDS[command], root, capsys, layer=path), fragment)


@pytest.mark.parametrize("command", WITH_INPUT)
@pytest.mark.parametrize("case", ARRAY_CASES)
def test_bad_array(world, command, case, capsys):
    root, _, arrays = world
    path, fragment = arrays[case]
    _check_error(*_run(COMMANDS[command], root, capsys, x=path), fragment)


@pytest.mark.parametrize("command", WITH_FORMATS)
@pytest.mark.parametrize("text", BAD_FORMATS)
def test_bad_format_string(world, command, text, capsys):
    root, _, _ = world
    role = ["input", "weight", "bias", "accum", "output"][BAD_FORMATS.index(text) % 5]
    args = COMMANDS[command] + [f"--{role}-format", text]
    _check_error(*_run(args, root, capsys), f"--{role}-format")


def test_good_layer_and_array_work(world, capsys):
    """The baseline of the matrix succeeds, so each failure above is due to its defect."""
    root, _, _ = world
    for command in ("export", "golden", "vectors", "verilog"):
        for layer in (root / "good", root / "good.keras"):
            code, captured, left = _run(COMMANDS[command], root, capsys, layer=layer)
            assert code == 0 and left, (command, layer, captured.err)


@pytest.mark.parametrize("overflow", ["SAT", "WRAP"])
def test_overflowing_weights_warn_and_follow_the_format(tmp_path, overflow, capsys):
    kernel = np.full((3, 3, 2, 1), 0.25, np.float32)
    kernel[0, 0, 0, 0], kernel[1, 1, 1, 0] = 100.0, -50.0      # outside fixed<8,3>
    bias = np.array([9.0, 0.5], np.float32)                    # 9 is outside fixed<6,3>
    layer = Layer(SPEC, kernel, bias)
    export_layer(tmp_path / "dw", layer)
    x = np.random.default_rng(0).normal(size=(1, 4, 5, 2))
    np.save(tmp_path / "x.npy", x)
    weight, bias_fmt = f"fixed<8,3,TRN,{overflow}>", f"fixed<6,3,TRN,{overflow}>"
    code = main(["golden", str(tmp_path / "dw"), "-i", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "y.npy"), "--weight-format", weight,
                 "--bias-format", bias_fmt])
    err = capsys.readouterr().err
    assert code == 0, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dwconv: warning: "), err
    done = "saturated" if overflow == "SAT" else "wrapped"
    assert f"2 kernel value(s) overflow {weight.replace(',TRN', ',TRN')}" in lines[0] or \
        "2 kernel value(s) overflow" in lines[0], lines[0]
    assert "1 bias value(s) overflow" in lines[0] and done in lines[0], lines[0]
    # the output is the golden model's with the weights as the format made them
    formats = LayerFormats.from_strings(weight=weight, bias=bias_fmt)
    expected = formats.output.to_float(
        fixed_forward_raw(layer, formats, formats.input.quantize(x)))
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)
    if overflow == "SAT":
        clipped = Layer(SPEC, np.clip(kernel, -16, 16 - 2.0 ** -5),
                        np.clip(bias, -4, 4 - 2.0 ** -3))
        np.testing.assert_array_equal(
            expected, formats.output.to_float(
                fixed_forward_raw(clipped, formats, formats.input.quantize(x))))


def test_weights_that_fit_do_not_warn(tmp_path, capsys):
    export_layer(tmp_path / "dw", Layer(SPEC, *GOOD_WEIGHTS))
    np.save(tmp_path / "x.npy", np.ones((4, 5, 2)))
    assert main(["golden", str(tmp_path / "dw"), "-i", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "y.npy")]) == 0
    assert capsys.readouterr().err == ""
