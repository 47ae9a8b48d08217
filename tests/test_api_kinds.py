"""``dwconv.Design`` on every layer kind: a separable block from a real Keras
SeparableConv2D, and int8 layers from the .tflite fixtures with the interpreter's stored
outputs.  Golden models, simulation, figures, vectors, Verilog, and the errors of knobs
that do not fit the kind."""

import dataclasses
import json
import pathlib
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import dwconv
from dwconv.golden.layer import Layer, SeparableLayer
from dwconv.golden.separable_ref import weights_raw as separable_weights_raw
from dwconv.golden.spec import LayerSpec
from dwconv.hw.engine import DepthwiseEngine
from dwconv.hw.int8 import Int8Engine
from dwconv.hw.separable import SeparableEngine
from dwconv.sim.beats import unpack_beats
from support.shared_build import native_build_root

DATA = pathlib.Path(__file__).parent / "data" / "tflite"
SEPARABLE_FORMATS = {"input": "fixed<8,3,RND,SAT>", "weight": "fixed<8,2,RND>",
                     "bias": "fixed<10,4>", "mid": "fixed<10,5,RND,SAT>",
                     "pointwise": "fixed<8,2,RND>", "output": "fixed<10,5,RND,SAT>"}
FIXTURES = sorted(p.stem for p in DATA.glob("*.tflite")
                  if p.stem not in ("dw3x3_dil2_same",))   # that one is refused on reading


def _fixture(name, rounding=None, **knobs):
    layer = dwconv.load(DATA / f"{name}.tflite", 0 if name == "dw_pw" else None)
    with np.load(DATA / f"{name}.npz") as data:
        stored = {key: data[key] for key in data.files}
    return dwconv.Design(layer, rounding=rounding, **knobs), stored


@pytest.fixture(scope="module")
def keras_separable(tmp_path_factory):
    """A Keras SeparableConv2D (5x6x4, M = 2, F = 6, relu) saved as .keras, and Keras'
    output on an input."""
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((5, 6, 4)), keras.layers.SeparableConv2D(
        6, 3, padding="same", depth_multiplier=2, activation="relu", name="sep")])
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    path = tmp_path_factory.mktemp("separable") / "sep.keras"
    model.save(path)
    x = rng.normal(0, 1.0, (2, 5, 6, 4)).astype(np.float32)
    y = np.asarray(keras.ops.convert_to_numpy(model(x)), np.float64)
    return path, x.astype(np.float64), y


# ---------------------------------------------------------------------------------------------
# separable

def test_separable_design_from_keras(keras_separable):
    path, x, keras_y = keras_separable
    layer = dwconv.load(path)
    assert isinstance(layer, SeparableLayer)
    design = dwconv.Design(layer, SEPARABLE_FORMATS, lanes=2)
    assert design.kind.name == "separable" and design.layer_kind == "SeparableConv2D"
    assert str(design.formats.mid) == "fixed<10,5,RND,SAT>"
    np.testing.assert_allclose(design.predict(x, float=True), keras_y, rtol=1e-5, atol=1e-5)
    fixed = design.predict(x)
    assert fixed.shape == keras_y.shape == (2, 5, 6, 6)
    # 8-bit formats stay near Keras, and every value lies on the output format's grid
    assert np.abs(fixed - keras_y).max() < 0.5
    np.testing.assert_array_equal(fixed * 32, np.round(fixed * 32))
    figures = design.figures()
    assert figures["filters"] == 6 and figures["out_lanes"] == design.out_lanes
    assert figures["ideal_cycles_per_frame"] == 5 * 6 * 2


@pytest.mark.parametrize("sim", ["amaranth", "verilator"])
def test_separable_simulates_exactly(keras_separable, sim):
    if sim != "amaranth" and shutil.which("verilator") is None:
        pytest.skip("verilator is not installed")
    path, x, keras_y = keras_separable
    design = dwconv.Design(dwconv.load(path), SEPARABLE_FORMATS, lanes=2, reuse=2)
    result = design.simulate(x, sim=sim, stall=0.2, seed=4,
                             build_dir=native_build_root() if sim != "amaranth" else None)
    assert result.passed and result.mismatches == 0
    np.testing.assert_array_equal(result.outputs, design.predict(x))
    report = result.report
    assert report["kind"] == "separable" and report["filters"] == 6
    assert report["ideal_cycles"] == 2 * 5 * 6 * 2 * 2 and report["efficiency"] <= 1
    assert report["formats"]["mid"] == "fixed<10,5,RND,SAT>"
    assert set(report["overflows"]) == {"input", "mid", "accum", "output"}
    assert report["max_abs_error_vs_float"] == pytest.approx(
        np.abs(result.outputs - keras_y).max(), abs=1e-5)


def test_separable_conv1d_channels_first(tmp_path):
    """A SeparableConv1D in channels_first: arrays (N, C, L) in and out, port weights."""
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((3, 9)), keras.layers.SeparableConv1D(
        4, 3, strides=2, data_format="channels_first", name="sep1")])
    rng = np.random.default_rng(8)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    model.save(tmp_path / "sep1.keras")
    x = rng.normal(0, 1.0, (2, 3, 9))
    keras_y = np.asarray(keras.ops.convert_to_numpy(model(x.astype(np.float32))), np.float64)
    layer = dwconv.load(tmp_path / "sep1.keras")
    design = dwconv.Design(layer, SEPARABLE_FORMATS, lanes=3, weights="port")
    assert design.layer_kind == "SeparableConv1D"
    np.testing.assert_allclose(design.predict(x, float=True), keras_y, rtol=1e-5, atol=1e-5)
    result = design.simulate(x, stall=0.3, seed=6)
    assert result.passed and result.outputs.shape == keras_y.shape == (2, 4, 4)
    np.testing.assert_array_equal(result.outputs, design.predict(x))


def test_separable_overflow_counts_see_the_mid_format():
    spec = LayerSpec(input_shape=(3, 4, 2), kernel_size=(3, 3), padding="same",
                     use_bias=False)
    layer = SeparableLayer(Layer(spec, np.ones(spec.kernel_shape, np.float32)),
                           np.ones((2, 3), np.float32), np.zeros(3, np.float32))
    design = dwconv.Design(layer, {"input": "fixed<8,4>", "mid": "fixed<6,3,TRN,SAT>",
                                   "pointwise": "fixed<4,2>", "output": "fixed<16,8>"})
    x = np.full((1, 3, 4, 2), 1.0)
    # each depthwise sum is 4, 6 or 9 taps of 1: all above the mid format's 3.875
    counts = design.overflows(x)
    assert counts == {"input": 0, "mid": 24, "accum": 0, "output": 0}
    assert "24 mid value(s) overflow fixed<6,3,TRN,SAT> and saturate" in \
        design.overflow_warning(x)
    np.testing.assert_array_equal(design.predict(x), np.full((1, 3, 4, 3), 2 * 3.875))


def test_separable_vectors(tmp_path, keras_separable):
    path, x, _ = keras_separable
    design = dwconv.Design(dwconv.load(path), SEPARABLE_FORMATS, lanes=4, pointwise_lanes=2)
    content = design.vectors(x, tmp_path / "v")
    written = sorted(p.name for p in (tmp_path / "v").iterdir())
    assert written == sorted(["input.npy", *content])
    description = json.loads((tmp_path / "v" / "vectors.json").read_text())
    parameters = description["testbench"]["parameters"]
    assert parameters["OUT_BEATS"] == 2 * 5 * 6 * 3     # F/Q = 3 beats per pixel
    assert parameters["WEIGHT_WORDS"] == 3 * 3 * 8 + 8 * 6 + 6
    words = [int(line, 16) for line in (tmp_path / "v" / "output.hex").read_text().split()]
    raw = unpack_beats(words, (2, 5, 6, 6), 2, design.formats.output)
    np.testing.assert_array_equal(design.formats.output.to_float(raw), design.predict(x))
    with np.load(tmp_path / "v" / "vectors.npz") as npz:
        assert npz["pointwise_raw"].shape == (8, 6)
        np.testing.assert_array_equal(npz["output_raw"], raw)


def test_separable_knobs(keras_separable):
    path, _, _ = keras_separable
    design = dwconv.Design(dwconv.load(path), SEPARABLE_FORMATS, lanes=4, reuse=3,
                           pointwise_lanes=3, pointwise_reuse=4)
    engine = design.engine()
    assert (engine.out_lanes, engine.pointwise_reuse, engine.reuse) == (3, 4, 3)
    assert design.out_lanes == 3 and design.figures()["pointwise_reuse"] == 4
    with pytest.raises(dwconv.DesignError, match="pointwise_lanes 4 does not divide the 6 "):
        dataclasses.replace(design, pointwise_lanes=4)
    with pytest.raises(dwconv.DesignError, match="pointwise_reuse 9 is not from 1 to the 8"):
        dataclasses.replace(design, pointwise_reuse=9)
    with pytest.raises(dwconv.DesignError, match="rounding is for int8 TFLite layers only"):
        dataclasses.replace(design, rounding="fp32")
    # with_formats keeps the separable roles it does not change
    assert str(design.with_formats(output="fixed<12,6>").formats.mid) == "fixed<10,5,RND,SAT>"


# ---------------------------------------------------------------------------------------------
# int8

@pytest.mark.parametrize("name", FIXTURES)
def test_int8_golden_equals_the_interpreter(name):
    design, stored = _fixture(name)
    y = design.predict(stored["x"])
    assert y.dtype == np.int8
    np.testing.assert_array_equal(y, stored["auto"])        # LiteRT's default interpreter
    reference, _ = _fixture(name, rounding="double")
    np.testing.assert_array_equal(reference.predict(stored["x"]), stored["ref"])
    one = design.predict(stored["x"][0])                     # one image, no batch axis
    np.testing.assert_array_equal(one, stored["auto"][0])


def test_int8_float_arrays_are_quantized_and_dequantized():
    design, stored = _fixture("dw3x3_relu6")
    layer = design.layer
    # floats on the input grid quantize back to the interpreter's int8 input exactly
    x = (stored["x"].astype(np.float64) - layer.input_zero_point) * layer.input_scale
    y = design.predict(x)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(
        y, (stored["auto"].astype(np.float64) - layer.output_zero_point) * layer.output_scale)
    with pytest.raises(dwconv.DesignError, match="has no float model"):
        design.predict(x, float=True)
    assert design.overflows(x) == {"input": 0, "accum": 0, "output": 0}
    assert design.overflow_warning(x) is None


@pytest.mark.parametrize("name, lanes, reuse, rounding", [
    ("dw3x3_m2", 3, 1, "fp32"), ("dw3x3_valid_s2", 2, 3, "double"),
    ("dw3x3_m3_s2", 1, 1, "single")])
def test_int8_simulates_exactly_in_amaranth(name, lanes, reuse, rounding):
    design, stored = _fixture(name, rounding, lanes=lanes, reuse=reuse)
    x = stored["x"][:2]
    result = design.simulate(x, stall=0.2, seed=1)
    assert result.passed and result.outputs.dtype == np.int8
    np.testing.assert_array_equal(result.outputs, design.predict(x))
    if rounding in ("fp32", "double"):
        np.testing.assert_array_equal(result.outputs,
                                      stored["auto" if rounding == "fp32" else "ref"][:2])
    report = result.report
    assert report["kind"] == "int8" and report["rounding"] == rounding
    assert "max_abs_error_vs_float" not in report      # a .tflite layer has no float model
    assert report["overflows"] == {"input": 0, "accum": 0, "output": 0}
    assert report["ideal_cycles"] == design.ideal_cycles(2)


def test_int8_simulates_exactly_in_verilator():
    if shutil.which("verilator") is None:
        pytest.skip("verilator is not installed")
    design, stored = _fixture("dw3x3_relu", lanes=4)
    result = design.simulate(stored["x"], sim="verilator", stall=0.3, seed=2,
                             build_dir=native_build_root())
    assert result.passed
    np.testing.assert_array_equal(result.outputs, stored["auto"])


def test_int8_verilog_of_one_channel_group_lints():
    """P = C: one channel group per pixel (the requantizer's group count has one value)."""
    from dwconv.flows.lint import lint_verilog
    if shutil.which("verilator") is None:
        pytest.skip("verilator is not installed")
    design, _ = _fixture("dw3x3_m2", lanes=3)
    assert lint_verilog(design.verilog()) == []


def test_int8_vectors(tmp_path):
    design, stored = _fixture("dw3x3_m2", lanes=3)
    design.vectors(stored["x"], tmp_path / "v")
    expected = np.load(tmp_path / "v" / "expected.npy")
    assert expected.dtype == np.int8
    np.testing.assert_array_equal(expected, stored["auto"])
    np.testing.assert_array_equal(np.load(tmp_path / "v" / "input.npy"), stored["x"])
    words = [int(line, 16) for line in (tmp_path / "v" / "output.hex").read_text().split()]
    raw = unpack_beats(words, stored["auto"].shape, 6, design.formats.output)
    np.testing.assert_array_equal(raw, stored["auto"])
    description = json.loads((tmp_path / "v" / "vectors.json").read_text())
    assert description["kind"] == "int8" and description["rounding"] == "fp32"


def test_int8_knob_errors():
    design, _ = _fixture("dw3x3_same")
    assert design.rounding == "fp32"
    with pytest.raises(dwconv.FormatError, match="takes no formats"):
        dwconv.Design(design.layer, {"input": "fixed<8,3>"})
    with pytest.raises(dwconv.DesignError, match="rounding must be one of fp32, double, single"):
        dwconv.Design(design.layer, rounding="nearest")
    with pytest.raises(dwconv.DesignError, match="for separable blocks only"):
        dwconv.Design(design.layer, pointwise_lanes=2)
    with pytest.raises(dwconv.DesignError, match="use figures"):
        design.plan()
    # a replaced knob keeps the model's formats
    assert dataclasses.replace(design, lanes=4).formats == design.formats


def test_int8_load_all_and_designs():
    path = DATA / "dw3x3_same.tflite"
    layers = dwconv.load_all(path)
    (layer_id, layer), = layers.items()
    assert layer_id == layer.layer_id == layer.name and layer.formats is None
    (design,) = dwconv.designs(path, lanes=4).values()
    assert design.lanes == 4 and design.kind.name == "int8" and design.rounding == "fp32"


def test_depthwise_layer_refuses_rounding():
    spec = LayerSpec(input_shape=(4, 4, 2), kernel_size=(3, 3))
    layer = Layer(spec, np.ones(spec.kernel_shape, np.float32), np.zeros(2, np.float32))
    with pytest.raises(dwconv.DesignError, match="rounding is for int8 TFLite layers only"):
        dwconv.Design(layer, rounding="double")
    with pytest.raises(dwconv.DesignError, match="for separable blocks only"):
        dwconv.Design(layer, pointwise_reuse=1)
    with pytest.raises(dwconv.DesignError, match="a depthwise Layer, a SeparableLayer or an "
                                                 "int8 TFLite layer"):
        dwconv.Design(object())


def test_depthwise_core_is_the_engines():
    from dwconv.hw.core import DepthwiseCore
    spec = LayerSpec(input_shape=(4, 4, 2), kernel_size=(3, 3))
    layer = Layer(spec, np.ones(spec.kernel_shape, np.float32), np.zeros(2, np.float32))
    design = dwconv.Design(layer, lanes=2)
    core = design.core()
    assert isinstance(core, DepthwiseCore) and core.plan.lanes == 2
    core._MustUse__silence = True


# ---------------------------------------------------------------------------------------------
# figures of every kind against the engines built by hand

@st.composite
def kinds_and_knobs(draw):
    kind = draw(st.sampled_from(["depthwise", "separable", "int8"]))
    weights = "const" if kind == "int8" else draw(st.sampled_from(["const", "port"]))
    if kind == "int8":
        name = draw(st.sampled_from(["dw3x3_m2", "dw3x3_same", "dw3x2_s21_same"]))
        layer = dwconv.load(DATA / f"{name}.tflite")
    else:
        c = draw(st.sampled_from([2, 4, 6]))
        m = draw(st.integers(1, 2))
        kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        spec = LayerSpec(input_shape=(draw(st.integers(3, 6)), draw(st.integers(3, 6)), c),
                         kernel_size=(kh, kw), depth_multiplier=m, padding="same",
                         use_bias=kind == "depthwise")
        rng = np.random.default_rng(draw(st.integers(0, 99)))
        layer = Layer(spec, rng.normal(size=spec.kernel_shape).astype(np.float32),
                      rng.normal(size=c * m).astype(np.float32) if spec.use_bias else None)
        if kind == "separable":
            filters = draw(st.integers(1, 5))
            layer = SeparableLayer(layer, rng.normal(size=(c * m, filters)).astype(np.float32),
                                   rng.normal(size=filters).astype(np.float32))
    spec = layer.spec
    lanes = draw(st.sampled_from([p for p in range(1, spec.channels + 1)
                                  if spec.channels % p == 0]))
    reuse = draw(st.integers(1, spec.taps))
    rounding = draw(st.sampled_from(["fp32", "double", "single"])) if kind == "int8" else None
    pointwise = {}
    if kind == "separable":
        f = layer.filters
        pointwise = dict(
            pointwise_lanes=draw(st.none() | st.sampled_from(
                [q for q in range(1, f + 1) if f % q == 0])),
            pointwise_reuse=draw(st.none() | st.integers(1, lanes * spec.depth_multiplier)))
    return layer, dict(lanes=lanes, reuse=reuse, weights=weights, rounding=rounding,
                       **pointwise)


def _by_hand(design):
    """The engine built from the golden weights directly, as the tests of hw/ build it."""
    layer, knobs = design.layer, dict(reuse=design.reuse)
    if isinstance(layer, SeparableLayer):
        kernel, dw_bias, pw, bias = separable_weights_raw(layer, design.formats)
        return SeparableEngine(layer.spec, design.formats, design.lanes, kernel, dw_bias, pw,
                               bias, activation=layer.activation, use_bias=layer.use_bias,
                               weights=design.weights, out_lanes=design.pointwise_lanes,
                               pointwise_reuse=design.pointwise_reuse, **knobs)
    if isinstance(layer, Layer):
        from dwconv.golden.fixed_ref import quantize_weights
        return DepthwiseEngine(layer.spec, design.formats, design.lanes,
                               *quantize_weights(layer, design.formats),
                               weights=design.weights, **knobs)
    engine = Int8Engine.from_layer(layer, design.lanes, design.rounding, **knobs)
    for part in vars(engine).values():          # read for its figures, never elaborated
        if hasattr(part, "_MustUse__silence"):
            part._MustUse__silence = True
    return engine


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds_and_knobs())
def test_figures_equal_the_built_engines(drawn):
    layer, knobs = drawn
    design = dwconv.Design(layer, **knobs)
    engine = _by_hand(design)
    inner = getattr(engine, "engine", engine)       # an int8 engine's depthwise engine
    assert design.latency == engine.latency
    assert design.multipliers == getattr(engine, "multipliers", inner.multipliers)
    assert design.line_buffer_words == getattr(engine, "line_buffer_words",
                                               inner.line_buffer_words)
    assert design.out_lanes == engine.out_lanes
    spec = layer.spec
    assert design.ideal_cycles(3) == 3 * spec.height * spec.width * spec.channels \
        // knobs["lanes"] * knobs["reuse"]
    if isinstance(engine, SeparableEngine):
        assert design.ideal_cycles(3) == engine.ideal_cycles(3)
        if knobs["pointwise_lanes"] is not None:
            assert design.out_lanes == knobs["pointwise_lanes"]
        assert design.figures()["pointwise_reuse"] == engine.pointwise_reuse
    assert len(engine.s_axis_tdata) == knobs["lanes"] * design.formats.input.width
    assert len(engine.m_axis_tdata) == design.out_lanes * design.formats.output.width
