"""dwconv export, golden and vectors: what they write, and that it agrees with the library."""

import json
import subprocess
import sys

import numpy as np
import pytest

from dwconv.cli import main
from dwconv.models.export import export_layer, load_layer
from dwconv.golden.fixed_ref import fixed_forward, quantize_weights
from dwconv.golden.float_ref import float_forward
from dwconv.golden.formats import LayerFormats
from dwconv.golden.layer import Layer
from dwconv.golden.spec import LayerSpec
from dwconv.sim.beats import unpack_beats


def _layer(data_format="channels_last", multiplier=2, use_bias=True):
    spec = LayerSpec(input_shape=(5, 4, 4), kernel_size=3, padding="same", strides=(1, 2),
                     depth_multiplier=multiplier, use_bias=use_bias, activation="relu6",
                     data_format=data_format, name="dw")
    rng = np.random.default_rng(7)
    return Layer(spec, rng.normal(size=spec.kernel_shape).astype(np.float32),
                 rng.normal(size=spec.out_channels).astype(np.float32) if use_bias else None)


@pytest.fixture
def exported(tmp_path):
    layer = _layer()
    export_layer(tmp_path / "exp", layer, LayerFormats.from_strings(input="fixed<10,4,RND,SAT>"))
    return layer, tmp_path / "exp"


def test_export_round_trip(tmp_path):
    for layer in (_layer(), _layer("channels_first", 1, use_bias=False)):
        folder = tmp_path / layer.spec.data_format
        formats = LayerFormats.from_strings(weight="fixed<8,2,RND_CONV,SAT>")
        export_layer(folder, layer, formats)
        document = json.loads((folder / "layer.json").read_text())
        for key in ("layer_name", "first_input_shape", "padding", "stride", "kernel_size",
                    "depth_multiplier", "dilation_rate", "use_bias", "activation",
                    "data_format", "formats"):
            assert key in document
        assert document["first_input_shape"] == [5, 4, 4]
        assert document["formats"]["weight"] == "fixed<8,2,RND_CONV,SAT>"
        with np.load(folder / "weights.npz") as weights:
            assert weights["kernel"].dtype == np.float32
            assert weights["bias"].shape == (layer.spec.out_channels,)
        for source in (folder, folder / "layer.json"):
            again, stored = load_layer(source)
            assert again.spec == layer.spec
            np.testing.assert_array_equal(again.kernel, layer.kernel)
            np.testing.assert_array_equal(again.bias, layer.bias)
            assert stored == formats.to_dict()


def test_export_cli_from_folder_keeps_and_overrides_formats(exported, tmp_path):
    _, folder = exported
    assert main(["export", str(folder), "-o", str(tmp_path / "again"),
                 "--output-format", "fixed<12,4>"]) == 0
    formats = json.loads((tmp_path / "again" / "layer.json").read_text())["formats"]
    assert formats["input"] == "fixed<10,4,RND,SAT>" and formats["output"] == "fixed<12,4>"
    # exporting over an earlier export replaces it
    assert main(["export", str(folder), "-o", str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "layer.json").read_text())["formats"]["output"] \
        == "fixed<16,6>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "exp"]


@pytest.mark.parametrize("batched", [True, False])
def test_golden_fixed_and_float(exported, tmp_path, batched):
    layer, folder = exported
    x = np.random.default_rng(1).normal(0, 3, (2, 5, 4, 4))
    if not batched:
        x = x[0]
    np.save(tmp_path / "x.npy", x)
    assert main(["golden", str(folder), "-i", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "y.npy"), "--output-format", "fixed<8,3,RND,SAT>"]) == 0
    formats = LayerFormats.from_strings(input="fixed<10,4,RND,SAT>",
                                        output="fixed<8,3,RND,SAT>")
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, fixed_forward(layer, formats, x))
    assert main(["golden", str(folder), "-i", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "f.npy"), "--float"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), float_forward(layer, x))


def test_golden_channels_first(tmp_path):
    layer = _layer("channels_first")
    export_layer(tmp_path / "exp", layer)
    x = np.random.default_rng(2).normal(size=(1, 4, 5, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["golden", str(tmp_path / "exp"), "-i", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "y.npy")]) == 0
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (1, 8, 5, 2)
    np.testing.assert_array_equal(y, fixed_forward(layer, LayerFormats.from_strings(), x))


@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_vectors(exported, tmp_path, lanes):
    layer, folder = exported
    x = np.random.default_rng(3).normal(0, 3, (2, 5, 4, 4))
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "vec"
    assert main(["vectors", str(folder), "-i", str(tmp_path / "x.npy"), "-o", str(out),
                 "--lanes", str(lanes), "--output-format", "fixed<9,3,RND_CONV,SAT>"]) == 0
    formats = LayerFormats.from_strings(input="fixed<10,4,RND,SAT>",
                                        output="fixed<9,3,RND_CONV,SAT>")
    info = json.loads((out / "vectors.json").read_text())
    m = layer.spec.depth_multiplier
    assert info["lanes"] == lanes and info["frames"] == 2
    assert info["input"]["beats"] == 2 * 5 * 4 * 4 // lanes
    assert info["output"]["lanes"] == lanes * m
    assert info["output"]["beats"] == 2 * 5 * 2 * 4 // lanes
    assert info["formats"] == formats.to_dict()
    np.testing.assert_array_equal(np.load(out / "input.npy"), x)
    expected = np.load(out / "expected.npy")
    np.testing.assert_array_equal(expected, fixed_forward(layer, formats, x))
    raw = np.load(out / "vectors.npz")
    kernel_raw, bias_raw = quantize_weights(layer, formats)
    np.testing.assert_array_equal(raw["kernel_raw"], kernel_raw)
    np.testing.assert_array_equal(raw["bias_raw"], bias_raw)
    np.testing.assert_array_equal(formats.output.to_float(raw["output_raw"]), expected)

    # The hex files, read here independently of pack_beats: fixed digit count per line,
    # lane q of beat b in bits [q*W, (q+1)*W), beats in raster order by channel group.
    in_lines = (out / "input.hex").read_text().split()
    assert len(in_lines) == info["input"]["beats"]
    assert {len(line) for line in in_lines} == {-(-lanes * 10 // 4)}
    words = [int(line, 16) for line in in_lines]
    x_raw = raw["input_raw"]
    for beat in (0, 1, len(words) - 1):
        pixel, group = divmod(beat, 4 // lanes)
        n, rest = divmod(pixel, 5 * 4)
        r, c = divmod(rest, 4)
        for q in range(lanes):
            lane = (words[beat] >> (10 * q)) & 0x3FF
            lane -= 1 << 10 if lane >= 1 << 9 else 0
            assert lane == x_raw[n, r, c, group * lanes + q]
    out_words = [int(line, 16) for line in (out / "output.hex").read_text().split()]
    np.testing.assert_array_equal(
        unpack_beats(out_words, raw["output_raw"].shape, lanes * m, formats.output),
        raw["output_raw"])
    weights = [int(line, 16) for line in (out / "weights.hex").read_text().split()]
    assert len(weights) == info["weights"]["words"] == kernel_raw.size + bias_raw.size


def test_console_script(exported, tmp_path):
    """The installed entry point runs and reports like main()."""
    _, folder = exported
    result = subprocess.run([sys.executable, "-m", "dwconv.cli", "golden", str(folder), "-i",
                             str(tmp_path / "missing.npy"), "-o", str(tmp_path / "y.npy")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("dwconv: error: input array")
    assert "Traceback" not in result.stderr
