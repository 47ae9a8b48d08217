"""Bad input of every kind: exit code 2, one line on stderr, no output left behind."""

import io
import json
import zipfile

import h5py
import numpy as np
import pytest

from dwconv.cli import main
from dwconv.models.export import export_layer
from dwconv.golden.layer import Layer
from dwconv.golden.spec import LayerSpec


def _keras_zip(path, layers, weights):
    """A minimal .keras file written by hand: config.json + model.weights.h5."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        for key, arrays in weights.items():
            for i, array in enumerate(arrays):
                h5[f"layers/{key}/vars/{i}"] = array
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(
            {"class_name": "Sequential", "config": {"name": "s", "layers": layers}}))
        archive.writestr("model.weights.h5", buffer.getvalue())


def _dw(name):
    return {"class_name": "DepthwiseConv2D",
            "config": {"name": name, "kernel_size": [3, 3], "strides": [1, 1],
                       "padding": "valid", "depth_multiplier": 1, "dilation_rate": [1, 1],
                       "activation": "linear", "use_bias": True,
                       "data_format": "channels_last"},
            "build_config": {"input_shape": [None, 5, 5, 2]}}


@pytest.fixture
def world(tmp_path):
    """Inputs, good and bad, in ``in/``; outputs go to ``out/``, which must stay empty."""
    src = tmp_path / "in"
    src.mkdir()
    (tmp_path / "out").mkdir()
    spec = LayerSpec(input_shape=(5, 5, 2), kernel_size=3, name="dw")
    layer = Layer(spec, np.ones((3, 3, 2, 1), np.float32), np.zeros(2, np.float32))
    export_layer(src / "exp", layer)
    np.save(src / "x.npy", np.ones((1, 5, 5, 2)))
    np.save(src / "wrong.npy", np.ones((1, 5, 5, 3)))
    np.save(src / "nan.npy", np.full((5, 5, 2), np.nan))
    np.save(src / "inf.npy", np.full((5, 5, 2), -np.inf))
    np.save(src / "text.npy", np.array(["a", "b"]))
    np.savez(src / "arch.npz", x=np.ones((5, 5, 2)))
    (src / "notnpy.npy").write_text("hello")
    (src / "garbage.keras").write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    (src / "garbage.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    (src / "text.keras").write_text("not a model")
    _keras_zip(src / "nodw.keras", [{"class_name": "Dense", "config": {"name": "d"}}], {})
    weights = {"depthwise_conv2d": [np.ones((3, 3, 2, 1), np.float32), np.zeros(2, np.float32)],
               "depthwise_conv2d_1": [np.ones((3, 3, 2, 1), np.float32),
                                      np.zeros(2, np.float32)]}
    _keras_zip(src / "two.keras", [_dw("a"), _dw("b")], weights)
    tanh = json.loads((src / "exp" / "layer.json").read_text())
    tanh["activation"] = "tanh"
    (src / "tanh").mkdir()
    (src / "tanh" / "layer.json").write_text(json.dumps(tanh))
    (src / "tanh" / "weights.npz").write_bytes((src / "exp" / "weights.npz").read_bytes())
    (src / "badjson").mkdir()
    (src / "badjson" / "layer.json").write_text("{")
    (src / "noweights").mkdir()
    (src / "noweights" / "layer.json").write_text((src / "exp" / "layer.json").read_text())
    (src / "emptydir").mkdir()
    (tmp_path / "out" / "dir.npy").mkdir()
    (tmp_path / "out" / "mine").mkdir()
    (tmp_path / "out" / "mine" / "thesis.tex").write_text("precious")
    return tmp_path


GOLDEN = ["golden", "{in}/exp", "-i", "{in}/x.npy", "-o", "{out}/y.npy"]
VECTORS = ["vectors", "{in}/exp", "-i", "{in}/x.npy", "-o", "{out}/vec"]
EXPORT = ["export", "{in}/exp", "-o", "{out}/exp2"]


def _with(base, **changes):
    """``base`` with the value after an option replaced (or the LAYER when key is 'layer')."""
    args = list(base)
    for key, value in changes.items():
        if key == "layer":
            args[1] = value
        else:
            option = f"-{key}" if len(key) == 1 else f"--{key.replace('_', '-')}"
            args[args.index(option) + 1] = value
    return args


CASES = {
    "missing model": (_with(GOLDEN, layer="{in}/none.keras"), "does not exist"),
    "folder without layer.json": (_with(GOLDEN, layer="{in}/emptydir"), "layer.json"),
    "damaged .keras": (_with(GOLDEN, layer="{in}/garbage.keras"), "damaged"),
    "damaged .h5": (_with(GOLDEN, layer="{in}/garbage.h5"), "damaged"),
    "not a model": (_with(GOLDEN, layer="{in}/text.keras"), "neither"),
    "no depthwise layer": (_with(EXPORT, layer="{in}/nodw.keras"), "no DepthwiseConv2D"),
    "several, none chosen": (_with(EXPORT, layer="{in}/two.keras"), "--layer NAME"),
    "unknown --layer": (_with(EXPORT, layer="{in}/two.keras") + ["--layer", "c"],
                        "not in the model"),
    "--layer not in export": (GOLDEN + ["--layer", "other"], "not 'other'"),
    "unsupported activation": (_with(GOLDEN, layer="{in}/tanh"), "activation 'tanh'"),
    "damaged layer.json": (_with(GOLDEN, layer="{in}/badjson"), "not valid JSON"),
    "missing weights.npz": (_with(GOLDEN, layer="{in}/noweights"), "weights.npz"),
    "missing array": (_with(GOLDEN, i="{in}/none.npy"), "does not exist"),
    "array is text": (_with(GOLDEN, i="{in}/notnpy.npy"), "not a .npy array file"),
    "array of strings": (_with(GOLDEN, i="{in}/text.npy"), "not numbers"),
    "array is npz": (_with(GOLDEN, i="{in}/arch.npz"), ".npz"),
    "array shape": (_with(GOLDEN, i="{in}/wrong.npy"), "shape [1, 5, 5, 3]"),
    "NaN": (_with(GOLDEN, i="{in}/nan.npy"), "50 NaN or Inf value(s); give finite"),
    "Inf": (_with(VECTORS, i="{in}/inf.npy"), "NaN or Inf"),
    "bad format string": (GOLDEN + ["--input-format", "fixed<8;3>"], "--input-format"),
    "unknown rounding": (GOLDEN + ["--output-format", "fixed<8,3,RND_HALF>"], "rounding"),
    "integer bits over width": (GOLDEN + ["--weight-format", "fixed<8,9>"], "integer bits"),
    "too wide": (GOLDEN + ["--input-format", "fixed<40,8>"], "between 1 and 32"),
    "accumulator too wide": (GOLDEN + ["--input-format", "fixed<32,8>", "--weight-format",
                                       "fixed<32,8>"], "accumulator"),
    "lanes not dividing C": (VECTORS + ["--lanes", "3"], "use one of 1, 2"),
    "lanes zero": (VECTORS + ["--lanes", "0"], "--lanes"),
    "lanes not a number": (VECTORS + ["--lanes", "two"], "--lanes"),
    "missing -o": (GOLDEN[:-2], "-o/--output"),
    "unknown option": (GOLDEN + ["--bogus"], "--bogus"),
    "unknown command": (["frobnicate"], "frobnicate"),
    "no command": ([], "COMMAND"),
    "output not .npy": (_with(GOLDEN, o="{out}/y.txt"), ".npy"),
    "output folder missing": (_with(GOLDEN, o="{out}/no/such/y.npy"), "does not exist"),
    "output is a folder": (_with(GOLDEN, o="{out}/dir.npy"), "folder"),
    "vectors over a foreign folder": (_with(VECTORS, o="{out}/mine"), "not an earlier output"),
    "export over a foreign folder": (_with(EXPORT, o="{out}/mine"), "not an earlier output"),
}


def _listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input(world, case, capsys):
    args, fragment = CASES[case]
    args = [a.format(**{"in": world / "in", "out": world / "out"}) for a in args]
    before = _listing(world)
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("dwconv: error: ")
    assert "; " in lines[0], "the message says what to do after a '; '"
    assert fragment in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert _listing(world) == before, "an output file or temporary was left behind"


def test_good_input_works_in_the_same_world(world, capsys):
    """The matrix's baseline commands succeed, so each failure above is due to its change."""
    for args in (GOLDEN, VECTORS, EXPORT, _with(EXPORT, layer="{in}/two.keras") + ["--layer", "b"]):
        args = [a.format(**{"in": world / "in", "out": world / "out"}) for a in args]
        assert main(args) == 0, capsys.readouterr().err
    assert {"y.npy", "vec", "exp2", "mine"} <= {p.name for p in (world / "out").iterdir()}


def test_internal_error_is_one_line(world, capsys, monkeypatch):
    import dwconv.golden.fixed_ref as fixed_ref

    def broken(*args):
        raise RuntimeError("boom\nsecond line")
    monkeypatch.setattr(fixed_ref, "fixed_forward_raw", broken)
    args = [a.format(**{"in": world / "in", "out": world / "out"}) for a in GOLDEN]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dwconv: internal error: RuntimeError: boom")
    assert not (world / "out" / "y.npy").exists()
    monkeypatch.setenv("DWCONV_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(args)
