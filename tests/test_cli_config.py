"""Per-layer configuration: ``dwconv config``, ``--config`` on the commands, Config and
Design.from_config; bad entries name the layer and the key."""

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import dwconv
from dwconv.cli import main
from dwconv.config import Config
from dwconv.models.export import export_tree
from dwconv.golden.formats import DEFAULT_FORMATS, LayerFormats
from dwconv.golden.layer import Layer
from dwconv.golden.spec import LayerSpec


def _layer(name, shape, seed, data_format="channels_last"):
    rng = np.random.default_rng(seed)
    spec = LayerSpec(shape, (3, 3), padding="same", name=name, data_format=data_format)
    return Layer(spec, rng.normal(0, 0.5, spec.kernel_shape),
                 rng.normal(0, 0.5, spec.out_channels))


@pytest.fixture
def tree(tmp_path):
    a = _layer("dw_a", (5, 4, 4), 1)
    b = _layer("dw_b", (4, 4, 6), 2, "channels_first")
    export_tree(tmp_path / "tree", [("net/dw_a", a, {"input": "fixed<10,4>"}),
                                    ("net/dw_b", b, None)])
    return tmp_path, a, b


def _config(tmp_path, name="cfg.json"):
    return json.loads((tmp_path / name).read_text())


def test_config_writes_defaults_and_every_layer(tree, capsys):
    tmp_path, a, b = tree
    assert main(["config", str(tmp_path / "tree"), "--all", "-o",
                 str(tmp_path / "cfg.json")]) == 0
    assert "2 layer(s): net/dw_a, net/dw_b" in capsys.readouterr().out
    document = _config(tmp_path)
    assert set(document) == {"model", "fuse", "defaults", "layers"}
    defaults = document["defaults"]
    assert defaults["formats"] == LayerFormats.from_strings().to_dict(separable=True)
    assert set(defaults["formats"]) == set(DEFAULT_FORMATS)
    assert {k: defaults[k] for k in ("lanes", "reuse", "weights", "target")} == \
        {"lanes": 1, "reuse": 1, "weights": "const", "target": None}
    assert list(document["layers"]) == ["net/dw_a", "net/dw_b"]
    entry = document["layers"]["net/dw_a"]
    assert entry["formats"]["input"] == "fixed<10,4>"           # the stored format
    assert entry["formats"]["output"] == DEFAULT_FORMATS["output"]
    assert set(entry) == {"formats", "lanes", "reuse", "weights", "target"}


def test_entries_override_defaults_and_options_override_both(tree, capsys):
    tmp_path, a, b = tree
    config = {"defaults": {"formats": {"input": "fixed<9,4>", "output": "fixed<12,5>"},
                           "lanes": 2},
              "layers": {"net/dw_b": {"formats": {"input": "fixed<11,4,RND,SAT>"},
                                      "lanes": 3, "reuse": 2}}}
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    x = np.random.default_rng(0).normal(0, 2, (2, 6, 4, 4))
    np.save(tmp_path / "x.npy", x)
    common = [str(tmp_path / "tree"), "--layer", "dw_b", "-i", str(tmp_path / "x.npy"),
              "--config", str(tmp_path / "cfg.json")]
    assert main(["simulate", *common, "-o", str(tmp_path / "y.npy"), "--report",
                 str(tmp_path / "r.json"), "--quiet"]) == 0
    report = _config(tmp_path, "r.json")
    assert (report["lanes"], report["reuse"]) == (3, 2)
    assert report["formats"]["input"] == "fixed<11,4,RND,SAT>"    # the entry's
    assert report["formats"]["output"] == "fixed<12,5>"           # the defaults'
    assert report["mismatches"] == 0
    expected = dwconv.Design(b, {"input": "fixed<11,4,RND,SAT>", "output": "fixed<12,5>"}
                             ).predict(x)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)
    # command-line options win
    assert main(["simulate", *common, "-o", str(tmp_path / "y2.npy"), "--report",
                 str(tmp_path / "r2.json"), "--lanes", "6", "--reuse", "1",
                 "--input-format", "fixed<8,3>", "--quiet"]) == 0
    report = _config(tmp_path, "r2.json")
    assert (report["lanes"], report["reuse"], report["formats"]["input"]) == \
        (6, 1, "fixed<8,3>")
    assert report["formats"]["output"] == "fixed<12,5>"
    # golden reads the same formats
    assert main(["golden", *common, "-o", str(tmp_path / "g.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "g.npy"), expected)


def test_export_all_and_verilog_tree_take_the_entries(tmp_path, tree, capsys):
    tmp_path, a, b = tree
    config = {"layers": {"net/dw_a": {"formats": {"output": "fixed<10,4,RND,SAT>"},
                                      "lanes": 2},
                         "net/dw_b": {"lanes": 3, "weights": "port"}}}
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    assert main(["verilog", str(tmp_path / "tree"), "--config", str(tmp_path / "cfg.json"),
                 "-o", str(tmp_path / "v")]) == 0
    out = capsys.readouterr().out
    assert "(net/dw_a), 2 lane(s) in" in out and "(net/dw_b), 3 lane(s) in" in out
    text_b = (tmp_path / "v" / "dwconv_net__dw_b.v").read_text()
    assert "w_axis_tdata" in text_b
    expected = dwconv.Design(b, lanes=3, weights="port").verilog(top="dwconv_net__dw_b")
    assert text_b == expected


def test_design_from_config_and_designs(tree):
    tmp_path, a, b = tree
    config = Config(defaults={"lanes": 2}, layers={"net/dw_b": {"lanes": 3}})
    layers = dwconv.load_all(tmp_path / "tree", config=config)
    designs = dwconv.designs(tmp_path / "tree", config=config)
    assert [d.lanes for d in designs.values()] == [2, 3]
    assert str(designs["net/dw_a"].formats.input) == "fixed<10,4>"   # stored, kept
    assert dwconv.Design.from_config(layers["net/dw_b"], config, lanes=1).lanes == 1
    assert dwconv.Design.from_config(layers["net/dw_b"], None).lanes == 1


@pytest.mark.parametrize("entry, key, message", [
    ({"lanes": 5}, "lanes", "does not divide the 4 channels"),
    ({"lanes": 0}, "lanes", "must be a whole number >= 1"),
    ({"lanes": "2"}, "lanes", "must be a whole number >= 1"),
    ({"reuse": 10}, "reuse", "is not from 1 to the 9 taps"),
    ({"weights": "rom"}, "weights", "must be one of const, port"),
    ({"target": "xc7"}, "target", "must be null or one of ecp5, ice40"),
    ({"formats": {"input": "fixed<8"}}, "formats.input", "bad format"),
    ({"formats": {"inputs": "fixed<8,3>"}}, "formats", "unknown role 'inputs'"),
    ({"formats": {"input": "fixed<32,16>", "weight": "fixed<32,16>"}}, "formats",
     "exact accumulator"),
    ({"lane": 2}, "lane", "unknown key"),
])
def test_bad_entry_names_layer_and_key(tree, capsys, entry, key, message):
    tmp_path, a, b = tree
    (tmp_path / "cfg.json").write_text(json.dumps({"layers": {"net/dw_a": entry}}))
    np.save(tmp_path / "x.npy", np.zeros((1, 5, 4, 4)))
    code = main(["golden", str(tmp_path / "tree"), "--layer", "dw_a", "-i",
                 str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "--config",
                 str(tmp_path / "cfg.json")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "layer 'net/dw_a'" in err and key in err and message in err
    assert not (tmp_path / "y.npy").exists()


@pytest.mark.parametrize("document, message", [
    ({"layers": {"net/dw_c": {}}}, "layer 'net/dw_c' is not a depthwise layer"),
    ({"layers": [], "defaults": {}}, "'layers' must map layer ids"),
    ({"default": {}}, "unknown key 'default'"),
    ({"defaults": {"lanes": -1}}, "defaults: key 'lanes'"),
    ({"fuse": "yes"}, "'fuse' must be true or false"),
    ([], "must hold a JSON object"),
])
def test_bad_config_files(tree, capsys, document, message):
    tmp_path, a, b = tree
    (tmp_path / "cfg.json").write_text(json.dumps(document))
    code = main(["verilog", str(tmp_path / "tree"), "--config", str(tmp_path / "cfg.json"),
                 "-o", str(tmp_path / "v")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "v").exists()


def test_missing_and_broken_config_files(tree, capsys):
    tmp_path, a, b = tree
    (tmp_path / "broken.json").write_text("{")
    for name, message in (("none.json", "does not exist; make one with dwconv config"),
                          ("broken.json", "is not valid JSON")):
        code = main(["verilog", str(tmp_path / "tree"), "--config", str(tmp_path / name),
                     "-o", str(tmp_path / "v")])
        assert code == 2 and message in capsys.readouterr().err


def test_a_config_file_over_the_limit_is_refused_unread(tree, capsys, monkeypatch):
    tmp_path, a, b = tree
    (tmp_path / "big.json").write_text('{"layers": {}}' + " " * 4096)
    monkeypatch.setenv("DWCONV_MAX_CONFIG_BYTES", "1000")
    code = main(["verilog", str(tmp_path / "tree"), "--config", str(tmp_path / "big.json"),
                 "-o", str(tmp_path / "v")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "over the limit of 1,000 bytes" in err and "DWCONV_MAX_CONFIG_BYTES" in err
    assert not (tmp_path / "v").exists()


@settings(max_examples=40, deadline=None)
@given(lanes=st.integers(0, 8), reuse=st.integers(0, 11),
       weights=st.sampled_from(["const", "port", "ram"]),
       target=st.sampled_from([None, "ecp5", "ice40", "gowin"]),
       in_int=st.integers(-1, 10), use_defaults=st.booleans())
def test_from_config_takes_valid_entries_and_names_bad_keys(lanes, reuse, weights, target,
                                                          in_int, use_defaults):
    layer = _layer("dw", (4, 4, 4), 0)
    entry = {"lanes": lanes, "reuse": reuse, "weights": weights, "target": target,
             "formats": {"input": f"fixed<8,{in_int}>"}}
    valid = {"lanes": lanes in (1, 2, 4), "reuse": 1 <= reuse <= 9,
             "weights": weights != "ram", "target": target != "gowin",
             "formats.input": 0 <= in_int <= 8}
    document = {"defaults": entry, "layers": {}} if use_defaults else \
        {"layers": {"dw": entry}}
    try:
        config = Config.from_dict(document, source="c.json")
        design = dwconv.Design.from_config(layer, config)
    except dwconv.ConfigError as error:
        bad = [key for key, ok in valid.items() if not ok]
        assert bad, f"valid entry refused: {error}"
        assert str(error).startswith("c.json: ")
        assert any(f"key {key!r}" in str(error) or f"key '{key}'" in str(error)
                   for key in bad), str(error)
        return
    assert all(valid.values())
    assert (design.lanes, design.reuse, design.weights, design.target) == \
        (lanes, reuse, weights, target)
    assert str(design.formats.input) == f"fixed<8,{in_int}>"


def test_config_from_keras_with_fuse_is_used_with_fuse(tmp_path, capsys):
    import keras

    inputs = keras.Input((6, 6, 4))
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(4)
    model.get_layer("bn").set_weights([rng.uniform(0.5, 2, 4).astype(np.float32)
                                       for _ in range(4)])
    model.save(tmp_path / "m.keras")
    assert main(["config", str(tmp_path / "m.keras"), "--all", "--fuse", "-o",
                 str(tmp_path / "cfg.json")]) == 0
    assert _config(tmp_path)["fuse"] is True
    x = rng.normal(0, 1, (1, 6, 6, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    # the configuration's fuse: the BatchNormalization is folded in without --fuse
    assert main(["golden", str(tmp_path / "m.keras"), "-i", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npy"), "--float", "--config",
                 str(tmp_path / "cfg.json")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), np.asarray(model(x)),
                               rtol=1e-4, atol=1e-4)


def test_export_all_takes_the_entries(tmp_path, capsys):
    import keras

    inputs = keras.Input((6, 6, 4))
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw_1")(inputs)
    x = keras.layers.DepthwiseConv2D(3, name="dw_2")(x)
    keras.Model(inputs, x).save(tmp_path / "m.keras")
    assert main(["config", str(tmp_path / "m.keras"), "--all", "-o",
                 str(tmp_path / "cfg.json")]) == 0
    document = _config(tmp_path)
    document["defaults"]["formats"]["input"] = "fixed<12,5>"
    document["layers"]["dw_2"]["formats"]["output"] = "fixed<9,4,RND,SAT>"
    del document["layers"]["dw_1"]["formats"]["input"]      # the defaults' then
    document["layers"]["dw_2"]["formats"]["input"] = "fixed<10,4>"
    (tmp_path / "cfg.json").write_text(json.dumps(document))
    assert main(["export", str(tmp_path / "m.keras"), "--all", "--config",
                 str(tmp_path / "cfg.json"), "-o", str(tmp_path / "tree")]) == 0
    layers = dwconv.load_all(tmp_path / "tree")
    assert layers["dw_1"].formats["input"] == "fixed<12,5>"
    assert layers["dw_2"].formats["input"] == "fixed<10,4>"
    assert layers["dw_2"].formats["output"] == "fixed<9,4,RND,SAT>"
    assert layers["dw_1"].formats["output"] == DEFAULT_FORMATS["output"]
    # an entry for a layer the model does not have: nothing written
    document["layers"]["dw_3"] = {}
    (tmp_path / "cfg.json").write_text(json.dumps(document))
    assert main(["export", str(tmp_path / "m.keras"), "--all", "--config",
                 str(tmp_path / "cfg.json"), "-o", str(tmp_path / "tree2")]) == 2
    assert "layer 'dw_3' is not a depthwise layer" in capsys.readouterr().err
    assert not (tmp_path / "tree2").exists()


def test_an_option_that_does_not_fit_is_not_blamed_on_the_config(tree, capsys):
    tmp_path, a, b = tree
    (tmp_path / "cfg.json").write_text(json.dumps({"layers": {"net/dw_a": {"lanes": 2}}}))
    np.save(tmp_path / "x.npy", np.zeros((1, 5, 4, 4)))
    wide = ["--input-format", "fixed<32,16>", "--weight-format", "fixed<32,16>"]
    code = main(["golden", str(tmp_path / "tree"), "--layer", "dw_a", "-i",
                 str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "--config",
                 str(tmp_path / "cfg.json"), *wide])
    err = capsys.readouterr().err
    assert code == 2 and "exact accumulator" in err and "cfg.json" not in err
