"""LayerSpec's new forms: 1D kinds (one row) and explicit pads; bad ones are one-line errors."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dwconv.models.export import export_layer, read_export
from dwconv.golden.float_ref import float_forward
from dwconv.golden.layer import Layer
from dwconv.golden.spec import LayerError, LayerSpec


def test_1d_spec_is_one_row():
    spec = LayerSpec((10, 3), 3, strides=2, dilation_rate=[2], padding="same",
                     depth_multiplier=2, kind="DepthwiseConv1D")
    assert spec.input_shape == (1, 10, 3) and spec.kernel_size == (1, 3)
    assert spec.strides == (1, 2) and spec.dilation_rate == (1, 2)
    assert spec.output_shape == (1, 5, 6) and spec.pads == (0, 0, 1, 2)
    document = spec.to_dict()
    assert document["first_input_shape"] == [10, 3] and document["kernel_size"] == [3]
    assert document["stride"] == [2] and document["output_shape"] == [5, 6]
    layer = Layer(spec, np.ones((3, 3, 2)), np.zeros(6))    # Keras' (k, C, M)
    assert layer.kernel.shape == (1, 3, 3, 2) and layer.keras_kernel.shape == (3, 3, 2)


def test_explicit_pads():
    spec = LayerSpec((4, 5, 1), (3, 2), padding=[[0, 3], [2, 0]], strides=(2, 1))
    assert spec.padding == ((0, 3), (2, 0)) and spec.pads == (0, 3, 2, 0)
    assert spec.output_shape == (3, 6, 1)
    assert spec.to_dict()["padding"] == [[0, 3], [2, 0]]
    same = LayerSpec((5, 5, 1), 3, padding="same", strides=2)
    assert same.with_pads(((0, 1), (2, 0))) == LayerSpec(
        (4, 3, 1), 3, padding=[[1, 2], [3, 1]], strides=2)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 3), st.integers(1, 3),
       st.lists(st.integers(0, 4), min_size=4, max_size=4), st.integers(0, 2**16))
def test_explicit_pads_equal_padding_the_input(h, w, k, s, pads, seed):
    """Explicit pads compute the same as zeros put around the input by hand."""
    top, bottom, left, right = pads
    if k > h + top + bottom or k > w + left + right:
        with pytest.raises(LayerError, match="spans"):
            LayerSpec((h, w, 2), k, strides=s, padding=[[top, bottom], [left, right]])
        return
    rng = np.random.default_rng(seed)
    spec = LayerSpec((h, w, 2), k, strides=s, padding=[[top, bottom], [left, right]])
    padded = LayerSpec((h + top + bottom, w + left + right, 2), k, strides=s)
    kernel, bias = rng.normal(size=spec.kernel_shape), rng.normal(size=2)
    x = rng.normal(size=(2, h, w, 2))
    expected = float_forward(Layer(padded, kernel, bias),
                             np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0))))
    np.testing.assert_array_equal(float_forward(Layer(spec, kernel, bias), x), expected)


@pytest.mark.parametrize("options, message", [
    (dict(padding=[[1, 2]]), r"explicit padding must be \[\[top, bottom\], \[left, right\]\]"),
    (dict(padding=[[1, -1], [0, 0]]), "whole numbers >= 0"),
    (dict(padding=[[1, 1.5], [0, 0]]), "whole numbers >= 0"),
    (dict(padding="causal"), "padding must be one of valid, same or explicit pads"),
    (dict(kind="DepthwiseConv3D"), "kind must be one of"),
    (dict(kind="DepthwiseConv1D", input_shape=(5, 2), kernel_size=(3, 3)),
     "kernel_size of a 1D layer"),
    (dict(kind="DepthwiseConv1D", input_shape=(2, 4, 4)), r"input_shape of a 1D layer"),
    (dict(kind="DepthwiseConv1D", input_shape=(5, 2), padding=[[1, 1], [1, 1]]),
     r"\[\[left, right\]\]"),
])
def test_bad_forms(options, message):
    given = dict(input_shape=(5, 5, 2), kernel_size=3)
    given.update(options)
    with pytest.raises(LayerError, match=message):
        LayerSpec(**given)


@pytest.mark.parametrize("field, value, message", [
    ("padding", [[0, 1], [0]], "explicit padding"),
    ("kind", ["x"], "kind must be a layer class name"),
    ("kind", "Conv3D", "kind must be one of"),
    ("first_input_shape", [4, 4, 2], "input_shape of a 1D layer"),
])
def test_bad_layer_json_is_one_line(tmp_path, capsys, field, value, message):
    from dwconv.cli import main
    spec = LayerSpec((6, 2), 3, padding=[[1, 0]], kind="DepthwiseConv1D")
    export_layer(tmp_path / "e", Layer(spec, np.ones((3, 2, 1)), np.zeros(2)))
    assert read_export(tmp_path / "e")[0].spec == spec
    path = tmp_path / "e" / "layer.json"
    document = json.loads(path.read_text())
    document[field] = value
    path.write_text(json.dumps(document))
    np.save(tmp_path / "x.npy", np.zeros((6, 2)))
    assert main(["golden", str(tmp_path / "e"), "-i", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and not (tmp_path / "y.npy").exists()


def test_golden_cli_on_a_1d_export(tmp_path, capsys):
    """dwconv golden keeps the 1D layout: (N, L, C) in, (N, L_out, C*M) out."""
    from dwconv.cli import main
    spec = LayerSpec((7, 2), 3, strides=2, padding=[[2, 1]], depth_multiplier=2,
                     kind="DepthwiseConv1D")
    layer = Layer(spec, np.random.default_rng(0).normal(size=(3, 2, 2)), np.zeros(4))
    export_layer(tmp_path / "e", layer)
    x = np.random.default_rng(1).normal(size=(3, 7, 2))
    np.save(tmp_path / "x.npy", x)
    for extra in ([], ["--float"]):
        assert main(["golden", str(tmp_path / "e"), "-i", str(tmp_path / "x.npy"), "-o",
                     str(tmp_path / "y.npy")] + extra) == 0
        y = np.load(tmp_path / "y.npy")
        assert y.shape == (3, 4, 4)
    np.testing.assert_allclose(y, float_forward(layer, x))
    capsys.readouterr()


def test_simulate_cli_on_a_1d_export(tmp_path, capsys):
    """dwconv simulate on a 1D layer with explicit pads: 1D arrays, 0 mismatches."""
    from dwconv.cli import main
    spec = LayerSpec((9, 2), 3, padding=[[2, 0]], data_format="channels_first",
                     kind="Conv1D")
    layer = Layer(spec, np.random.default_rng(2).normal(size=(3, 2, 1)),
                  np.random.default_rng(3).normal(size=2))
    export_layer(tmp_path / "e", layer)
    np.save(tmp_path / "x.npy", np.random.default_rng(4).normal(size=(2, 2, 9)))
    assert main(["simulate", str(tmp_path / "e"), "-i", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npy"), "--report", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["mismatches"] == 0 and report["ideal_cycles"] == 2 * 9 * 2 // report["lanes"]
    assert np.load(tmp_path / "y.npy").shape == (2, 2, 9)
    capsys.readouterr()
