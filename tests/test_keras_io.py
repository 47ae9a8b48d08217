"""models/keras_io.py and golden/fuse.py on files that Keras itself saved."""

import json
import os
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dwconv.golden.float_ref import float_forward  # noqa: E402
from dwconv.models.keras_io import ModelFileError, load_keras_layer, snake_case  # noqa: E402
from dwconv.golden.layer import Layer  # noqa: E402
from dwconv.golden.spec import LayerError, LayerSpec  # noqa: E402
from dwconv.models.fuse import combine_activations, fold_batchnorm  # noqa: E402

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


def _without_name_attributes(keras_path, tmp_path):
    """A copy of a .keras file whose weights carry no ``name`` attributes (as older Keras
    files): the reader must fall back on the numbering rule."""
    path = tmp_path / "stripped.keras"
    with zipfile.ZipFile(keras_path) as source, zipfile.ZipFile(path, "w") as target:
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
    return path


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

    models, paths = saved
    path = _without_name_attributes(paths[model_name, ".keras"], tmp_path)
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
        "from dwconv.models.export import load_layer\n"
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
    with pytest.raises(ModelFileError, match=r"no DepthwiseConv2D or other depthwise-like "
                                             r"layer \(.*\); it has 2 layers: 1 Conv2D, "
                                             r"1 InputLayer"):
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


# ---------------------------------------------------------------------------------------------
# Nested models: depthwise layers inside Sequential/Functional sub-models, at any depth

def _nested():
    """A Functional holding a Sequential and a Functional that both name a layer "dw", and a
    Sequential inside a Sequential (two levels down)."""
    inner = keras.Sequential([keras.Input((7, 6, 4)),
                              L.DepthwiseConv2D(3, padding="same", name="dw"),
                              L.BatchNormalization(name="bn"), L.ReLU(6.0, name="r6")],
                             name="inner")
    sub_in = keras.Input((7, 6, 4))
    fsub = keras.Model(sub_in, L.DepthwiseConv2D(2, depth_multiplier=2, strides=2,
                                                 name="dw")(sub_in), name="fsub")
    block = keras.Sequential([keras.Input((7, 6, 4)),
                              L.DepthwiseConv2D(3, activation="relu", use_bias=False,
                                                name="deep_dw")], name="block")
    deep = keras.Sequential([keras.Input((7, 6, 4)), block], name="deep")
    inp = keras.Input((7, 6, 4))
    a = L.Conv2D(4, 1, name="pre")(inp)
    model = keras.Model(inp, [fsub(inner(a)), deep(a)])
    rng = np.random.default_rng(11)
    for sub in (inner, fsub, block):
        _randomize(sub, int(rng.integers(100)))
    return model


NESTED = {"inner/dw": ("inner",), "fsub/dw": ("fsub",), "deep_dw": ("deep", "block")}


def _keras_nested_layer(model, layer_id):
    container = model
    for name in NESTED[layer_id]:
        container = container.get_layer(name)
    return container, container.get_layer(layer_id.split("/")[-1])


@pytest.fixture(scope="module")
def nested_saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nested")
    model = _nested()
    paths = {suffix: folder / f"nested{suffix}" for suffix in (".keras", ".h5")}
    for path in paths.values():
        model.save(path)
    return model, paths


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_nested_layers_are_found_with_their_weights(nested_saved, suffix):
    from dwconv.models.keras_io import depthwise_layer_names, read_model

    model, paths = nested_saved
    graph = read_model(paths[suffix])
    try:
        assert depthwise_layer_names(graph) == list(NESTED)
    finally:
        graph.close()
    for layer_id in NESTED:
        _, keras_layer = _keras_nested_layer(model, layer_id)
        layer = load_keras_layer(paths[suffix], layer_id)
        weights = keras_layer.get_weights()
        np.testing.assert_array_equal(layer.kernel, weights[0])
        if keras_layer.use_bias:
            np.testing.assert_array_equal(layer.bias, weights[1])
        x = np.random.default_rng(2).normal(size=(2, 7, 6, 4))
        expected = np.asarray(keras_layer(x.astype(np.float32)))
        np.testing.assert_allclose(float_forward(layer, x), expected, rtol=1e-5, atol=1e-5)
    # the full path and the bare name of a unique layer name the same layer
    np.testing.assert_array_equal(load_keras_layer(paths[suffix], "deep/block/deep_dw").kernel,
                                  load_keras_layer(paths[suffix], "deep_dw").kernel)


def test_nested_numbering_rule_without_name_attributes(nested_saved, tmp_path):
    """Without the ``name`` attributes, each nested model numbers its own layers."""

    model, paths = nested_saved
    path = _without_name_attributes(paths[".keras"], tmp_path)
    for layer_id in NESTED:
        _, keras_layer = _keras_nested_layer(model, layer_id)
        np.testing.assert_array_equal(load_keras_layer(path, layer_id).kernel,
                                      keras_layer.get_weights()[0])


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_nested_fuse_and_name_errors(nested_saved, suffix):
    model, paths = nested_saved
    layer = load_keras_layer(paths[suffix], "inner/dw", fuse=True)
    assert layer.fused == ("bn", "r6")
    inner = model.get_layer("inner")
    x = np.random.default_rng(3).normal(0, 2, (2, 7, 6, 4))
    expected = np.asarray(inner(x.astype(np.float32), training=False))
    np.testing.assert_allclose(float_forward(layer, x), expected, rtol=1e-5, atol=2e-5)
    # fsub/dw is its sub-model's output: nothing after it inside fsub to fold
    assert load_keras_layer(paths[suffix], "fsub/dw", fuse=True).fused == ()
    with pytest.raises(ModelFileError, match=r"2 layers .* are called 'dw' \(inner/dw, "
                                             r"fsub/dw\); give --layer with its path"):
        load_keras_layer(paths[suffix], "dw")
    with pytest.raises(ModelFileError, match="3 DepthwiseConv2D layers"):
        load_keras_layer(paths[suffix])


def test_export_all(nested_saved, tmp_path, capsys):
    """export --all writes one folder per layer (fused), in the model's order."""
    from dwconv.cli import main
    from dwconv.models.export import load_layer, read_tree

    _, paths = nested_saved
    tree = tmp_path / "tree"
    assert main(["export", str(paths[".keras"]), "--all", "--fuse", "-o", str(tree)]) == 0
    found = read_tree(tree)
    assert [layer_id for layer_id, _ in found] == list(NESTED)
    assert [sub.name for _, sub in found] == ["inner__dw", "fsub__dw", "deep_dw"]
    for layer_id, sub in found:
        exported, formats = load_layer(sub)
        direct = load_keras_layer(paths[".keras"], layer_id, fuse=True)
        assert exported.spec == direct.spec and exported.fused == direct.fused
        np.testing.assert_array_equal(exported.kernel, direct.kernel)
        assert formats is not None
    # a tree answers --layer like a model does
    assert load_layer(tree, "fsub/dw")[0].spec.depth_multiplier == 2
    # all or nothing: a format one layer's exact accumulator cannot take leaves no tree
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert main(["export", str(paths[".keras"]), "--all", "-o", str(bad), "--input-format",
                 "fixed<32,16>", "--weight-format", "fixed<32,16>"]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not bad.exists()
    assert main(["export", str(paths[".keras"]), "--all", "--layer", "dw", "-o",
                 str(bad)]) == 2
    assert not bad.exists()


def _mobilenet_classifier():
    """The usual transfer-learning shape: a MobileNetV2 backbone inside a Sequential."""
    keras.utils.set_random_seed(0)
    backbone = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35,
                                              weights=None, include_top=False)
    model = keras.Sequential([keras.Input((32, 32, 3)), backbone,
                              L.GlobalAveragePooling2D(), L.Dense(3)])
    _randomize(backbone, 8)
    return model


def test_mobilenet_backbone_inside_a_classifier(tmp_path, capsys):
    """All 17 depthwise layers of a nested MobileNetV2, fused with BN and ReLU6, in one call."""
    from dwconv.cli import main
    from dwconv.models.export import load_layer, read_tree

    model = _mobilenet_classifier()
    path = tmp_path / "classifier.keras"
    model.save(path)
    assert main(["export", str(path), "--all", "--fuse", "-o", str(tmp_path / "t")]) == 0
    found = read_tree(tmp_path / "t")
    assert len(found) == 17 and found[1][0] == "block_1_depthwise"
    backbone = model.layers[0]
    for layer_id, sub in (found[0], found[-1]):
        layer, _ = load_layer(sub)
        assert layer.fused == (f"{layer_id}_BN", f"{layer_id}_relu")
        keras_sub = keras.Model(backbone.get_layer(layer_id).input,
                                backbone.get_layer(f"{layer_id}_relu").output)
        x = np.random.default_rng(5).normal(0, 1, (1,) + layer.spec.input_shape)
        expected = np.asarray(keras_sub(x.astype(np.float32), training=False))
        np.testing.assert_allclose(float_forward(layer, x), expected, rtol=1e-4, atol=1e-4)


def test_verilog_tree_one_module_per_layer(tmp_path, capsys):
    """A whole network's depthwise layers in two commands: export --all, then verilog."""
    import json
    import shutil
    import subprocess

    from dwconv.cli import main

    inp = keras.Input((4, 3, 2))
    sub_in = keras.Input((4, 3, 2))
    block = keras.Model(sub_in, L.DepthwiseConv2D(2, name="dw")(sub_in), name="block.1")
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(inp)
    model = _randomize(keras.Model(inp, block(x)), 4)
    model.save(tmp_path / "m.keras")
    assert main(["export", str(tmp_path / "m.keras"), "--all", "-o", str(tmp_path / "t")]) == 0
    capsys.readouterr()
    assert main(["verilog", str(tmp_path / "t"), "-o", str(tmp_path / "v.v")]) == 2
    assert "give -o a folder" in capsys.readouterr().err
    assert main(["verilog", str(tmp_path / "t"), "--top", "net", "-o",
                 str(tmp_path / "v")]) == 0
    listing = json.loads((tmp_path / "v" / "modules.json").read_text())
    assert [(m["layer"], m["module"]) for m in listing] == [("dw", "net_dw"),
                                                           ("block.1/dw", "net_block_1__dw")]
    texts = [(tmp_path / "v" / m["file"]).read_text() for m in listing]
    for m, text in zip(listing, texts):
        assert f"module {m['module']}(" in text
    # the files go into one project together: no module is defined twice
    if shutil.which("iverilog"):
        result = subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "a.out")]
                                + [str(tmp_path / "v" / m["file"]) for m in listing],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
