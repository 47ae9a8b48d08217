"""golden/keras_io.py and golden/fuse.py on files that Keras itself saved."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dwconv.golden.float_ref import float_forward  # noqa: E402
from dwconv.golden.keras_io import ModelFileError, load_keras_layer, snake_case  # noqa: E402
from dwconv.golden.layer import Layer  # noqa: E402
from dwconv.golden.spec import LayerError, LayerSpec  # noqa: E402
from dwconv.golden.fuse import combine_activations, fold_batchnorm  # noqa: E402

L = keras.layers


def _randomize(model, seed):
    """Random weights everywhere, BN variances positive, so every weight is told apart."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        new = [rng.normal(0, 0.7, w.shape).astype(np.float32) for w in weights]
        if isinstance(layer, L.BatchNormalization):
            new[-1] = rng.uniform(0.3, 2.0, weights[-1].shape).astype(np.float32)
        layer.set_weights(new)
    return model


def _functional():
    """Three depthwise layers with custom names, other layers in between, one branch."""
    inp = keras.Input((7, 6, 4))
    a = L.Conv2D(4, 1, name="pre")(inp)
    b = L.DepthwiseConv2D(3, padding="same", name="dw_a")(a)
    c = L.BatchNormalization(name="bn_a")(b)
    d = L.ReLU(6.0, name="relu6_a")(c)
    e = L.DepthwiseConv2D(2, depth_multiplier=2, use_bias=False, strides=2, name="dw_b")(d)
    f = L.DepthwiseConv2D((1, 3), dilation_rate=2, activation="relu", name="zz_first")(a)
    g = L.BatchNormalization(name="bn_z")(f)
    return _randomize(keras.Model(inp, [e, g]), 1)


def _sequential():
    return _randomize(keras.Sequential([
        keras.Input((6, 5, 2)),
        L.DepthwiseConv2D(3, name="second", padding="same"),
        L.BatchNormalization(name="bn"),
        L.Activation("relu", name="act"),
        L.Dense(2, name="dense"),
        L.DepthwiseConv2D(2, strides=(1, 2), depth_multiplier=3, name="first"),
        L.ReLU(name="relu"),
    ]), 2)


def _channels_first():
    return _randomize(keras.Sequential([
        keras.Input((3, 5, 6)),
        L.DepthwiseConv2D(3, padding="same", data_format="channels_first", name="dwcf"),
        L.BatchNormalization(axis=1, center=False, name="bncf"),
        L.ReLU(max_value=6.0, name="r6"),
    ]), 3)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The test models, each saved as .keras and as legacy .h5."""
    folder = tmp_path_factory.mktemp("models")
    models = {"functional": _functional(), "sequential": _sequential(),
              "channels_first": _channels_first()}
    paths = {}
    for name, model in models.items():
        for suffix in (".keras", ".h5"):
            path = folder / f"{name}{suffix}"
            model.save(path)
            paths[name, suffix] = path
    return models, paths


def _keras_weights(model, name):
    return model.get_layer(name).get_weights()


CASES = [("functional", "dw_a"), ("functional", "dw_b"), ("functional", "zz_first"),
         ("sequential", "first"), ("sequential", "second"), ("channels_first", "dwcf")]


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("model_name, layer_name", CASES)
def test_reads_every_layer(saved, model_name, layer_name, suffix):
    models, paths = saved
    model = models[model_name]
    layer = load_keras_layer(paths[model_name, suffix], layer_name)
    weights = _keras_weights(model, layer_name)
    np.testing.assert_array_equal(layer.kernel, weights[0])
    keras_layer = model.get_layer(layer_name)
    if keras_layer.use_bias:
        np.testing.assert_array_equal(layer.bias, weights[1])
    else:
        np.testing.assert_array_equal(layer.bias, 0)
    # the layer alone equals Keras' layer alone
    x = np.random.default_rng(0).normal(size=(2,) + tuple(keras_layer.input.shape[1:]))
    expected = np.asarray(keras_layer(x.astype(np.float32)))
    np.testing.assert_allclose(float_forward(layer, x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("model_name, layer_name, last, fused", [
    ("functional", "dw_a", "relu6_a", ("bn_a", "relu6_a")),
    ("functional", "zz_first", "zz_first", ()),      # BN after relu: not foldable
    ("sequential", "second", "act", ("bn", "act")),
    ("sequential", "first", "relu", ("relu",)),
    ("channels_first", "dwcf", "r6", ("bncf", "r6")),
])
def test_fuse_equals_keras_model(saved, model_name, layer_name, last, fused, suffix):
    models, paths = saved
    model = models[model_name]
    layer = load_keras_layer(paths[model_name, suffix], layer_name, fuse=True)
    assert layer.fused == fused
    start = model.get_layer(layer_name)
    sub = keras.Model(start.input, model.get_layer(last).output)
    x = np.random.default_rng(4).normal(0, 2, (2,) + tuple(start.input.shape[1:]))
    expected = np.asarray(sub(x.astype(np.float32), training=False))
    np.testing.assert_allclose(float_forward(layer, x), expected, rtol=1e-5, atol=2e-5)
    if fused:
        assert float_forward(layer, x).max() > 0 and expected.min() >= 0


@pytest.mark.parametrize("model_name, layer_name", CASES)
def test_numbering_rule_without_name_attributes(saved, tmp_path, model_name, layer_name):
    """Older Keras 3 files lack the ``name`` attribute: the numbering rule alone must do."""
    import h5py

    models, paths = saved
    path = tmp_path / "stripped.keras"
    with zipfile.ZipFile(paths[model_name, ".keras"]) as source, \
            zipfile.ZipFile(path, "w") as target:
        for item in source.namelist():
            content = source.read(item)
            if item == "model.weights.h5":
                weights = tmp_path / "w.h5"
                weights.write_bytes(content)
                with h5py.File(weights, "r+") as h5:
                    def strip(_, obj):
                        if "name" in obj.attrs:
                            del obj.attrs["name"]
                    h5.visititems(strip)
                content = weights.read_bytes()
            target.writestr(item, content)
    layer = load_keras_layer(path, layer_name)
    np.testing.assert_array_equal(layer.kernel, _keras_weights(models[model_name], layer_name)[0])


def test_fusion_stops_at_a_branch(tmp_path):
    inp = keras.Input((5, 5, 2))
    a = L.DepthwiseConv2D(3, name="dw")(inp)
    model = keras.Model(inp, [L.ReLU(name="r")(a), L.BatchNormalization(name="b")(a)])
    model.save(tmp_path / "m.keras")
    assert load_keras_layer(tmp_path / "m.keras", fuse=True).fused == ()


def test_reader_does_not_import_keras(saved):
    """In a fresh interpreter, reading both kinds of file leaves Keras unimported."""
    _, paths = saved
    script = (
        "import sys, json\n"
        "from dwconv.golden.export import load_layer\n"
        "out = {}\n"
        "for path in sys.argv[1:]:\n"
        "    layer, _ = load_layer(path, 'dw_b', fuse=True)\n"
        "    out[path] = layer.kernel.tolist()\n"
        "heavy = ('keras', 'tensorflow', 'jax')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "assert not bad, bad\n"
        "print(json.dumps(out))\n")
    files = [str(paths["functional", ".keras"]), str(paths["functional", ".h5"])]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-W", "error", "-c", script, *files],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    kernels = json.loads(result.stdout)
    expected = _keras_weights(saved[0]["functional"], "dw_b")[0]
    for path in files:
        np.testing.assert_array_equal(np.array(kernels[path], np.float32), expected)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_choice_errors(saved, suffix):
    _, paths = saved
    with pytest.raises(ModelFileError, match=r"3 DepthwiseConv2D layers \(.*\); choose one "
                                             r"with --layer") as caught:
        load_keras_layer(paths["functional", suffix])
    assert all(name in str(caught.value) for name in ("dw_a", "dw_b", "zz_first"))
    with pytest.raises(ModelFileError, match="'bn_a' is a BatchNormalization"):
        load_keras_layer(paths["functional", suffix], "bn_a")
    with pytest.raises(ModelFileError, match="'nope' is not in the model.*are: .*dw_b"):
        load_keras_layer(paths["functional", suffix], "nope")
    assert load_keras_layer(paths["channels_first", suffix]).name == "dwcf"


def test_no_depthwise_layer(tmp_path):
    model = keras.Sequential([keras.Input((4, 4, 2)), L.Conv2D(2, 3, name="conv")])
    model.save(tmp_path / "m.keras")
    with pytest.raises(ModelFileError, match=r"no DepthwiseConv2D layer \(it has .*conv "
                                             r"\(Conv2D\)"):
        load_keras_layer(tmp_path / "m.keras")


@pytest.mark.parametrize("options, message", [
    (dict(activation="tanh"), "activation 'tanh'"),
    (dict(activation="sigmoid"), "activation 'sigmoid'"),
])
def test_unsupported_options(tmp_path, options, message):
    model = keras.Sequential([keras.Input((4, 4, 2)), L.DepthwiseConv2D(3, **options)])
    model.save(tmp_path / "m.keras")
    with pytest.raises(LayerError, match=message):
        load_keras_layer(tmp_path / "m.keras")


def test_unknown_spatial_size(tmp_path):
    model = keras.Sequential([keras.Input((None, None, 2)), L.DepthwiseConv2D(3)])
    model.save(tmp_path / "m.keras")
    with pytest.raises(LayerError, match="fixed height"):
        load_keras_layer(tmp_path / "m.keras")


def test_weights_only_file(tmp_path):
    model = keras.Sequential([keras.Input((4, 4, 2)), L.DepthwiseConv2D(3)])
    model.save_weights(tmp_path / "m.weights.h5")
    with pytest.raises(ModelFileError):
        load_keras_layer(tmp_path / "m.weights.h5")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "no_config", "bad_json",
                                    "not_a_model"])
def test_damaged_keras_files(saved, tmp_path, damage):
    _, paths = saved
    data = paths["functional", ".keras"].read_bytes()
    path = tmp_path / "m.keras"
    if damage == "truncate":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"PK" + bytes(range(256)) * 4)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        with zipfile.ZipFile(paths["functional", ".keras"]) as source, \
                zipfile.ZipFile(path, "w") as target:
            for item in source.namelist():
                content = source.read(item)
                if item == "config.json":
                    if damage == "no_config":
                        continue
                    content = b"{not json" if damage == "bad_json" else b'{"config": 3}'
                target.writestr(item, content)
    with pytest.raises(ModelFileError):
        load_keras_layer(path, "dw_a")


def test_truncated_h5(saved, tmp_path):
    _, paths = saved
    data = paths["functional", ".h5"].read_bytes()
    path = tmp_path / "m.h5"
    path.write_bytes(data[:len(data) // 3])
    with pytest.raises(ModelFileError):
        load_keras_layer(path, "dw_a")


def test_snake_case_matches_keras():
    from keras.src.utils.naming import to_snake_case
    for name in ["DepthwiseConv2D", "BatchNormalization", "ReLU", "Conv2D", "InputLayer",
                 "SeparableConv2D", "PReLU", "ZeroPadding2D"]:
        assert snake_case(name) == to_snake_case(name)


def test_fold_batchnorm_is_exact_math():
    spec = LayerSpec(input_shape=(4, 4, 2), kernel_size=2, depth_multiplier=2, use_bias=False)
    rng = np.random.default_rng(5)
    layer = Layer(spec, rng.normal(size=spec.kernel_shape).astype(np.float32))
    gamma, beta, mean = rng.normal(size=(3, 4))
    var = rng.uniform(0.5, 2, 4)
    folded = fold_batchnorm(layer, gamma, beta, mean, var, 1e-3)
    assert folded.spec.use_bias
    x = rng.normal(size=(1, 4, 4, 2))
    expected = (float_forward(layer, x) - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(float_forward(folded, x), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(LayerError, match="follows the activation"):
        relu = Layer(LayerSpec(input_shape=(4, 4, 2), kernel_size=2, activation="relu"),
                     np.ones((2, 2, 2, 1), np.float32), np.zeros(2, np.float32))
        fold_batchnorm(relu, *np.ones((4, 2)), 1e-3)


@pytest.mark.parametrize("a, b, both", [("linear", "relu", "relu"), ("relu6", "linear", "relu6"),
                                        ("relu", "relu6", "relu6"), ("relu", "relu", "relu"),
                                        ("relu6", "relu", "relu6")])
def test_combine_activations(a, b, both):
    assert combine_activations(a, b) == both


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_cli_golden_float_with_fuse_equals_keras(saved, tmp_path, suffix):
    """dwconv golden --float --fuse on a saved model gives Keras' output after BN and ReLU6."""
    from dwconv.cli import main

    models, paths = saved
    model = models["functional"]
    x = np.random.default_rng(9).normal(0, 2, (2, 7, 6, 4))
    np.save(tmp_path / "x.npy", x)
    assert main(["golden", str(paths["functional", suffix]), "--layer", "dw_a", "--fuse",
                 "--float", "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    start = model.get_layer("dw_a")
    sub = keras.Model(start.input, model.get_layer("relu6_a").output)
    expected = np.asarray(sub(x.astype(np.float32), training=False))
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=2e-5)
    # the export of the fused layer gives the same numbers
    assert main(["export", str(paths["functional", suffix]), "--layer", "dw_a", "--fuse",
                 "-o", str(tmp_path / "exp")]) == 0
    assert main(["golden", str(tmp_path / "exp"), "--float", "-i", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "y2.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y2.npy"), np.load(tmp_path / "y.npy"))
