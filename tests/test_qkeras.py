"""QKeras models read without QKeras: golden, simulation and quantizers equal QKeras' own output.

The reference models and outputs in tests/data/qkeras were made by qkeras-v3 itself
(tests/data/qkeras/make_models.py); where qkeras-v3 is installed (``dwconv[qkeras]``) the
last tests make fresh ones and compare again.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from dwconv.cli import main
from dwconv.golden.fixed_ref import fixed_forward
from dwconv.golden.formats import LayerFormats
from dwconv.models.keras_io import load_model_layer
from dwconv.models.qkeras import (holding_format, parse_activation, parse_quantizer,
                                  quantize_tensor)
from dwconv.golden.spec import LayerError

DATA = pathlib.Path(__file__).parent / "data" / "qkeras"
sys.path.insert(0, str(DATA))
from make_models import CASES, LEGACY, QUANTIZER_SWEEP, quantizer_inputs  # noqa: E402

sys.path.remove(str(DATA))


def _reference(name, folder=DATA):
    with np.load(folder / f"{name}.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.mark.parametrize("name, suffix", [(name, ".keras") for name in sorted(CASES)]
                         + [(name, ".h5") for name in LEGACY])
def test_golden_equals_qkeras(name, suffix):
    """Formats and quantized weights from the file alone give QKeras' output, bit for bit."""
    ref = _reference(name)
    layer, formats = load_model_layer(DATA / f"{name}{suffix}", "qdw")
    np.testing.assert_array_equal(layer.kernel, ref["kernel"])
    if layer.spec.use_bias:
        np.testing.assert_array_equal(layer.bias, ref["bias"])
    y = fixed_forward(layer, LayerFormats.from_strings(**formats), ref["x"])
    np.testing.assert_array_equal(y, ref["y"])
    assert np.count_nonzero(y) > y.size // 4       # a meaningful comparison, not all zeros


def test_quantizers_equal_qkeras():
    """QKeras' quantizers on 260,160 values: our float32 emulation and, for activations, the
    fixed-point format that stands for them."""
    with np.load(DATA / "quantizers.npz") as data:
        expected = {key: data[key] for key in data.files}
    assert len(expected) == len(QUANTIZER_SWEEP)
    for index, entry in enumerate(QUANTIZER_SWEEP):
        x = quantizer_inputs(entry, index)
        quantizer = parse_quantizer(entry.split(":", 1)[-1], entry)
        reference = expected[f"q{index}"]
        np.testing.assert_array_equal(quantize_tensor(quantizer, x), reference, err_msg=entry)
        if not quantizer.is_po2:
            fmt = quantizer.fixed_format()
            np.testing.assert_array_equal(fmt.to_float(fmt.quantize(x.astype(np.float64))),
                                          reference, err_msg=f"{entry} as {fmt}")


def _run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize("name", ["auto_po2", "unsigned_weights", "symmetric"])
def test_cli_simulate_and_export_equal_qkeras(name, tmp_path, capsys):
    """dwconv export keeps the formats; golden and the simulated engine equal QKeras."""
    ref = _reference(name)
    np.save(tmp_path / "x.npy", ref["x"])
    code, err = _run(["export", DATA / f"{name}.keras", "-o", tmp_path / "exp"], capsys)
    assert code == 0, err
    stored = json.loads((tmp_path / "exp" / "layer.json").read_text())["formats"]
    assert stored["weight"] == str(load_model_layer(DATA / f"{name}.keras")[1]["weight"])
    code, err = _run(["golden", tmp_path / "exp", "-i", tmp_path / "x.npy",
                      "-o", tmp_path / "g.npy"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "g.npy"), ref["y"])
    code, err = _run(["simulate", DATA / f"{name}.keras", "-i", tmp_path / "x.npy",
                      "-o", tmp_path / "s.npy", "--lanes", ref["x"].shape[-1]], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), ref["y"])


def test_cli_formats_override_qkeras(tmp_path, capsys):
    ref = _reference("signed")
    np.save(tmp_path / "x.npy", ref["x"])
    code, err = _run(["golden", DATA / "signed.keras", "-i", tmp_path / "x.npy", "-o",
                      tmp_path / "y.npy", "--output-format", "fixed<6,5,TRN,WRAP>"], capsys)
    assert code == 0, err
    layer, formats = load_model_layer(DATA / "signed.keras")
    formats["output"] = "fixed<6,5,TRN,WRAP>"
    expected = fixed_forward(layer, LayerFormats.from_strings(**formats), ref["x"])
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)
    assert not np.array_equal(expected, ref["y"])


def _edited(tmp_path, name, edit, *, source=None, classes=None):
    """A copy of a model (a reference model by name, or ``source``) with its config.json
    changed by ``edit(layers)`` (layer configs by name) and layers renamed to other classes
    (``classes``: name -> class name)."""
    path = tmp_path / f"{name}_edited.keras"
    with zipfile.ZipFile(source or DATA / f"{name}.keras") as source, \
            zipfile.ZipFile(path, "w") as target:
        for item in source.namelist():
            content = source.read(item)
            if item == "config.json":
                config = json.loads(content)
                for entry in config["config"]["layers"]:
                    entry["class_name"] = (classes or {}).get(entry["config"]["name"],
                                                              entry["class_name"])
                edit({entry["config"]["name"]: entry["config"]
                      for entry in config["config"]["layers"]})
                content = json.dumps(config).encode()
            target.writestr(item, content)
    return path


def _set(layer, key, **changes):
    layer[key]["config"].update(changes)


@pytest.mark.parametrize("edit, message", [
    (lambda ls: _set(ls["q_in"], "activation", alpha="auto_po2"), "found at run time"),
    (lambda ls: ls["q_in"]["activation"].update(class_name="quantized_po2"),
     "quantized_po2 is not supported"),
    (lambda ls: _set(ls["qdw"], "depthwise_quantizer", alpha="auto"), "float scale"),
    (lambda ls: _set(ls["qdw"], "depthwise_quantizer", qnoise_factor=0.5), "qnoise_factor"),
    (lambda ls: _set(ls["qdw"], "depthwise_quantizer", bits=1, alpha=1), "sign-only"),
    (lambda ls: _set(ls["q_out"], "activation", integer=12), "cannot hold"),
    (lambda ls: _set(ls["qdw"], "depthwise_quantizer", alpha=0.3), "not a power of two"),
])
def test_unsupported_quantizers_are_clear_errors(tmp_path, capsys, edit, message):
    path = _edited(tmp_path, "signed", edit)
    with pytest.raises(LayerError, match=message):
        load_model_layer(path)
    code, err = _run(["export", path, "-o", tmp_path / "exp"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "exp").exists()


def test_weights_too_spread_for_one_format():
    """auto_po2 scales far apart (one per depth-multiplier index) need one wide grid."""
    kernel = np.zeros((3, 3, 2, 2), np.float32)
    kernel[..., 0] = 2.0 ** -24
    kernel[0, 0, 0, 1] = 6.0
    assert str(holding_format(kernel, True, "kernel X")) == "fixed<28,4,RND_CONV,SAT>"
    kernel[..., 0] = 2.0 ** -30
    with pytest.raises(LayerError, match=r"kernel X needs a 34-bit format"):
        holding_format(kernel, True, "kernel X")


def test_quantizer_text_forms():
    """Call text (older files, layer activations) reads like the saved dicts."""
    q = parse_quantizer("quantized_bits(6, 0, 1, alpha=1)", "t")
    assert str(q.fixed_format()) == "fixed<6,1,RND_CONV,SAT_SYM>"
    q = parse_quantizer("quantized_bits(8,3,keep_negative=False,alpha=1)", "t")
    assert str(q.fixed_format()) == "ufixed<8,3,RND_CONV,SAT>"
    assert parse_activation("quantized_relu(4,2)", "t")[0] == "relu"
    assert parse_activation({"class_name": "function", "config": "relu6"}, "t") == ("relu6",
                                                                                   None)
    with pytest.raises(LayerError, match="cannot read"):
        parse_quantizer("quantized_bits(6, 0", "t")


qkeras_installed = importlib.util.find_spec("qkeras") is not None


@pytest.mark.skipif(not qkeras_installed, reason="qkeras-v3 is not installed (pip install "
                    "'dwconv[qkeras]', TensorFlow backend)")
@pytest.mark.parametrize("name", ["auto_po2", "relu_multiplier", "nested"])
def test_fresh_qkeras_models(name, tmp_path):
    """Models made now by the installed QKeras, with new weights, still match."""
    # QKeras runs on TensorFlow, the tests' Keras on JAX: make the model in its own process
    script = ("import sys; sys.path.insert(0, sys.argv[1]); "
              "from make_models import CASES, make_case; "
              "make_case(sys.argv[2], __import__('pathlib').Path(sys.argv[3]), seed=12345, "
              "**CASES[sys.argv[2]])")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    # QKeras' own imports warn (pyparsing deprecations): not this project's warnings
    env.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    result = subprocess.run([sys.executable, "-c", script, str(DATA), name, str(tmp_path)],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    ref = _reference(name, tmp_path)
    layer, formats = load_model_layer(tmp_path / f"{name}.keras", "qdw")
    y = fixed_forward(layer, LayerFormats.from_strings(**formats), ref["x"])
    np.testing.assert_array_equal(y, ref["y"])


def test_reference_files_are_the_listed_cases():
    """Every case make_models.py lists is shipped, and nothing else."""
    assert {p.stem for p in DATA.glob("*.keras")} == set(CASES)
    assert {p.stem for p in DATA.glob("*.h5")} == set(LEGACY)
    assert {p.stem for p in DATA.glob("*.npz")} == set(CASES) | {"quantizers"}


def test_fuse_refuses_batchnorm_after_a_quantized_kernel(tmp_path, capsys):
    """A BatchNormalization cannot fold into QKeras' quantized kernel: a clear error."""
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((5, 5, 2)),
                              keras.layers.DepthwiseConv2D(3, name="qdw"),
                              keras.layers.BatchNormalization(name="bn")])
    plain = tmp_path / "plain.keras"
    model.save(plain)
    quantizer = {"class_name": "quantized_bits",
                 "config": {"bits": 6, "integer": 0, "alpha": 1, "keep_negative": True}}

    def as_qkeras(layers):
        layers["qdw"]["depthwise_quantizer"] = quantizer

    path = _edited(tmp_path, "q", as_qkeras, source=plain,
                   classes={"qdw": "QDepthwiseConv2D"})
    layer, formats = load_model_layer(path)
    assert formats == {"weight": "fixed<6,1,RND_CONV,SAT>"}
    with pytest.raises(LayerError, match="cannot fold 'bn' into the QKeras layer"):
        load_model_layer(path, fuse=True)
    code, err = _run(["export", path, "--fuse", "-o", tmp_path / "exp"], capsys)
    assert code == 2 and "QDepthwiseConv2DBatchnorm" in err and not (tmp_path / "exp").exists()


def test_batchnorm_after_an_output_quantizer_is_not_folded(tmp_path):
    """DepthwiseConv2D -> QActivation -> BatchNormalization: the QActivation gives the output
    format; the BatchNormalization acts on quantized values, so --fuse leaves it out."""
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((5, 5, 2)),
                              keras.layers.DepthwiseConv2D(3, name="dw"),
                              keras.layers.ReLU(name="q_out"),
                              keras.layers.BatchNormalization(name="bn")])
    plain = tmp_path / "plain.keras"
    model.save(plain)
    path = _edited(tmp_path, "q",
                   lambda layers: layers["q_out"].update(activation="quantized_relu(6,2)"),
                   source=plain, classes={"q_out": "QActivation"})
    layer, formats = load_model_layer(path, fuse=True)
    assert layer.fused == ("q_out",) and layer.spec.activation == "relu"
    assert formats == {"output": "ufixed<6,2,RND_CONV,SAT>"}
