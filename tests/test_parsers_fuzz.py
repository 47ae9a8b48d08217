"""Fuzzing the parsers with hypothesis: format strings, layer.json, the Keras config reader.

Whatever they are given, they either succeed or raise one of the documented user errors
(FormatError, LayerError, ModelFileError: what the CLI turns into exit code 2); nothing
else escapes.  What they accept round-trips: a format set prints back to strings that parse
to it, a layer read from layer.json or a Keras file exports and reads back the same.
Examples are bounded so the file runs in a few seconds.
"""

import io
import json
import zipfile

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dwconv.cli import USER_ERRORS
from dwconv.models.export import export_layer, read_export
from dwconv.golden.fixed import QFormat
from dwconv.golden.formats import LayerFormats
from dwconv.models.keras_io import load_keras_layer
from dwconv.golden.layer import Layer
from dwconv.golden.spec import LayerSpec

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8)

#: Text near the format grammar: its pieces in any order, plus arbitrary text.
format_pieces = st.sampled_from(["fixed", "ufixed", "ap_", "<", ">", ",", " ", "-", "0",
                                 "1", "8", "16", "33", "RND", "SAT", "TRN", "AP_", "WRAP",
                                 "RND_CONV", "SAT_SYM", "x", "٣", "\n"])
format_texts = st.lists(format_pieces, max_size=10).map("".join) | st.text(max_size=20)


@FUZZ
@given(format_texts)
def test_format_strings(text):
    try:
        fmt = QFormat.parse(text)
    except USER_ERRORS:
        return
    # what parses prints back to a string that parses to the same format
    assert QFormat.parse(str(fmt)) == fmt


@FUZZ
@given(st.dictionaries(st.sampled_from(["input", "weight", "bias", "accum", "output"]),
                       format_texts | json_values, max_size=5))
def test_format_sets(strings):
    try:
        formats = LayerFormats.from_strings(**strings)
    except USER_ERRORS:
        return
    assert LayerFormats.from_strings(**formats.to_dict(separable=True)) == formats


SPEC = LayerSpec(input_shape=(4, 5, 2), kernel_size=3, padding="same", name="dw")
KERNEL, BIAS = np.full((3, 3, 2, 1), 0.5, np.float32), np.zeros(2, np.float32)


@pytest.fixture(scope="module")
def good_export(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export") / "dw"
    export_layer(folder, Layer(SPEC, KERNEL, BIAS))
    return json.loads((folder / "layer.json").read_text()), (folder / "weights.npz").read_bytes()


@FUZZ
@given(data=st.data())
def test_layer_json(good_export, tmp_path_factory, data):
    document, npz = good_export
    document = dict(document)
    if data.draw(st.booleans(), label="whole document random"):
        document = data.draw(json_values, label="document")
    else:   # a real document with some fields replaced, dropped or added
        for key in data.draw(st.lists(st.sampled_from(sorted(document) + ["extra"]),
                                      max_size=3), label="fields"):
            if data.draw(st.booleans(), label="drop"):
                document.pop(key, None)
            else:
                document[key] = data.draw(json_values, label=key)
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "layer.json").write_text(json.dumps(document))
    (folder / "weights.npz").write_bytes(npz)
    try:
        layer, formats = read_export(folder)
    except USER_ERRORS:
        return
    assert_round_trip(layer, formats, tmp_path_factory)


def assert_round_trip(layer, formats, tmp_path_factory):
    """``layer`` (with its formats dict, or None) exported and read back is the same."""
    stored = None if formats is None else LayerFormats.from_strings(**formats)
    folder = tmp_path_factory.mktemp("again") / "layer"
    export_layer(folder, layer, stored)
    again, again_formats = read_export(folder)
    assert again.spec == layer.spec
    np.testing.assert_array_equal(again.kernel, layer.kernel)
    np.testing.assert_array_equal(again.bias, layer.bias)
    if stored is not None:
        assert LayerFormats.from_strings(**again_formats) == stored


def _keras_file(path, config):
    weights = io.BytesIO()
    with h5py.File(weights, "w") as h5:
        h5["layers/depthwise_conv2d/vars/0"] = KERNEL
        h5["layers/depthwise_conv2d/vars/1"] = BIAS
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", "{}")
        archive.writestr("model.weights.h5", weights.getvalue())


GOOD_LAYER = {"class_name": "DepthwiseConv2D",
              "config": {"name": "dw", "kernel_size": [3, 3], "strides": [1, 1],
                         "padding": "same", "depth_multiplier": 1, "dilation_rate": [1, 1],
                         "activation": "linear", "use_bias": True,
                         "data_format": "channels_last"},
              "build_config": {"input_shape": [None, 4, 5, 2]}}


@FUZZ
@given(data=st.data())
def test_keras_config(tmp_path_factory, data):
    layer = json.loads(json.dumps(GOOD_LAYER))
    for key in data.draw(st.lists(st.sampled_from(sorted(layer["config"]) + ["extra"]),
                                  max_size=3), label="layer fields"):
        layer["config"][key] = data.draw(json_values, label=key)
    if data.draw(st.booleans(), label="break the build config"):
        layer["build_config"] = data.draw(json_values, label="build_config")
    model = {"class_name": data.draw(st.sampled_from(["Sequential", "Functional", "Model",
                                                      "Other"]), label="model class"),
             "config": {"name": "m", "layers": [layer]}}
    if data.draw(st.booleans(), label="break the model config"):
        model["config"] = data.draw(json_values, label="model config")
    path = tmp_path_factory.mktemp("keras") / "m.keras"
    _keras_file(path, model)
    try:
        loaded = load_keras_layer(path)
    except USER_ERRORS:
        return
    # the weights are the file's, whatever the configuration said
    np.testing.assert_array_equal(loaded.kernel, KERNEL)
    np.testing.assert_array_equal(loaded.bias, BIAS if loaded.spec.use_bias
                                  else np.zeros_like(BIAS))
    assert_round_trip(loaded, None, tmp_path_factory)
