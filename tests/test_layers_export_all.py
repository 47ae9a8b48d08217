"""export --all on a model mixing every depthwise-like kind: summary, all-or-nothing,
--skip-unsupported, --pointwise; refusals are one short line."""

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")
L = keras.layers

from dwconv.cli import main                                           # noqa: E402
from dwconv.models.export import load_layer, read_tree                # noqa: E402
from dwconv.golden.float_ref import float_forward                     # noqa: E402
from dwconv.models.keras_io import survey_layers                      # noqa: E402
from dwconv.golden.layer import SeparableLayer                        # noqa: E402
from dwconv.golden.spec import LayerError                             # noqa: E402


def _mixed(bad=True):
    x = keras.Input((8, 8, 4))
    y = L.ZeroPadding2D(((0, 1), (0, 1)), name="pad")(x)
    y = L.DepthwiseConv2D(3, strides=2, use_bias=False, name="dw")(y)
    y = L.BatchNormalization(name="dw_bn")(y)
    y = L.ReLU(6.0, name="dw_relu")(y)
    y = L.Conv2D(8, 1, name="pw")(y)
    y = L.SeparableConv2D(8, 3, padding="same", name="sep")(y)
    y = L.Conv2D(8, 3, groups=8, padding="same", name="gconv")(y)
    if bad:
        y = L.Conv2D(8, 3, groups=4, padding="same", name="grouped")(y)
        y = L.DepthwiseConv2D(3, padding="same", activation="tanh", name="dw_tanh")(y)
    y = L.Reshape((16, 8), name="flat")(y)
    y = L.DepthwiseConv1D(3, padding="same", name="dw1")(y)
    y = L.SeparableConv1D(4, 3, name="sep1")(y)
    model = keras.Model(x, y)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
                           for w in layer.get_weights()])
    return model


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    _mixed().save(folder / "bad.keras")
    model = _mixed(bad=False)
    model.save(folder / "good.keras")
    return folder, model


def test_one_unsupported_layer_stops_the_export(mixed, capsys):
    folder, _ = mixed
    out = folder / "out_stopped"
    assert main(["export", str(folder / "bad.keras"), "--all", "--fuse", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 500 and not out.exists()
    assert "layer 'grouped' (Conv2D) of bad.keras: is a grouped convolution (4 groups of 8 " \
           "channels), not a depthwise one" in err
    assert "the model has 13 layers: 3 Conv2D, 2 DepthwiseConv2D, " in err
    assert "and 2 more of 2 other kinds; export --all --skip-unsupported" in err


def test_skip_unsupported_writes_the_rest_and_lists_it(mixed, capsys):
    folder, _ = mixed
    out = folder / "out_skipped"
    assert main(["export", str(folder / "bad.keras"), "--all", "--fuse",
                 "--skip-unsupported", "-o", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("bad.keras: found 7 depthwise-like layer(s) (2 DepthwiseConv2D, "
                        "1 SeparableConv2D, 2 Conv2D, 1 DepthwiseConv1D, 1 SeparableConv1D); "
                        "exported 5 (1 DepthwiseConv2D, 1 SeparableConv2D, 1 Conv2D, "
                        "1 DepthwiseConv1D, 1 SeparableConv1D)")
    assert lines[1].startswith("skipped grouped (Conv2D): is a grouped convolution")
    assert lines[2].startswith("skipped dw_tanh (DepthwiseConv2D): has activation 'tanh'")
    assert [i for i, _ in read_tree(out)] == ["dw", "sep", "gconv", "dw1", "sep1"]


def test_export_all_summary_and_kinds(mixed, capsys):
    folder, model = mixed
    out = folder / "out_good"
    assert main(["export", str(folder / "good.keras"), "--all", "--fuse", "-o", str(out)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == ("good.keras: found 5 depthwise-like layer(s) (1 DepthwiseConv2D, 1 "
                     "SeparableConv2D, 1 Conv2D, 1 DepthwiseConv1D, 1 SeparableConv1D); "
                     "exported 5 (1 DepthwiseConv2D, 1 SeparableConv2D, 1 Conv2D, 1 "
                     "DepthwiseConv1D, 1 SeparableConv1D)")
    kinds = {i: json.loads((sub / "layer.json").read_text())["kind"] for i, sub in read_tree(out)}
    assert kinds == {"dw": "DepthwiseConv2D", "sep": "SeparableConv2D", "gconv": "Conv2D",
                     "dw1": "DepthwiseConv1D", "sep1": "SeparableConv1D"}
    # the folded ZeroPadding: unpadded input, explicit pads, Keras' numbers from its input
    layer, _ = load_layer(out / "dw")
    assert layer.spec.input_shape == (8, 8, 4) and layer.spec.padding == ((0, 1), (0, 1))
    assert layer.fused == ("pad", "dw_bn", "dw_relu")
    sub = keras.Model(model.get_layer("pad").input, model.get_layer("dw_relu").output)
    x = np.random.default_rng(1).normal(0, 1, (2, 8, 8, 4))
    np.testing.assert_allclose(float_forward(layer, x),
                               np.asarray(sub(x.astype(np.float32), training=False)),
                               rtol=1e-4, atol=1e-4)


def test_pointwise_joins_the_pair(mixed, capsys):
    folder, model = mixed
    out = folder / "out_pointwise"
    assert main(["export", str(folder / "good.keras"), "--all", "--fuse", "--pointwise",
                 "-o", str(out)]) == 0
    capsys.readouterr()
    layer, formats = load_layer(out / "dw")
    assert isinstance(layer, SeparableLayer) and layer.kind == "DepthwiseConv2D+Conv2D"
    assert set(formats) >= {"pointwise", "mid"}
    sub = keras.Model(model.get_layer("pad").input, model.get_layer("pw").output)
    x = np.random.default_rng(2).normal(0, 1, (2, 8, 8, 4))
    np.testing.assert_allclose(float_forward(layer, x),
                               np.asarray(sub(x.astype(np.float32), training=False)),
                               rtol=1e-4, atol=1e-4)


def test_survey_api(mixed):
    folder, _ = mixed
    survey = survey_layers(folder / "bad.keras", fuse=True, skip_unsupported=True)
    assert [i for i, _ in survey.found] == ["dw", "sep", "gconv", "grouped", "dw_tanh", "dw1",
                                            "sep1"]
    assert [(i, k) for i, k, _ in survey.skipped] == [("grouped", "Conv2D"),
                                                      ("dw_tanh", "DepthwiseConv2D")]
    with pytest.raises(LayerError, match="layer 'grouped' \\(Conv2D\\)"):
        survey_layers(folder / "bad.keras")


def test_nothing_exportable_is_an_error(tmp_path, capsys):
    model = keras.Sequential([keras.Input((5, 5, 4)), L.Conv2D(4, 3, groups=2, name="g")])
    model.save(tmp_path / "m.keras")
    assert main(["export", str(tmp_path / "m.keras"), "--all", "--skip-unsupported", "-o",
                 str(tmp_path / "o")]) == 2
    assert "no layer of m.keras can be exported" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
