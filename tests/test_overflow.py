"""Overflow accounting (golden.overflow): counts against independent integer arithmetic,
the one warning line, and the counts in the simulate report."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import dwconv
from dwconv.cli import main
from dwconv.models.export import export_layer
from dwconv.golden.fixed import QFormat
from dwconv.golden.layer import Layer
from dwconv.golden.overflow import full_name, overflow_warning
from dwconv.golden.spec import LayerSpec


def _layer(rng, activation="linear", data_format="channels_last", shape=(5, 4, 3)):
    spec = LayerSpec(shape, (3, 3), padding="same", depth_multiplier=2,
                     activation=activation, data_format=data_format)
    return Layer(spec, rng.normal(0, 1, spec.kernel_shape), rng.normal(0, 1, 6))


def _floor_count(values, fmt, rounding):
    """Independent count: scale, round (TRN floor / RND half up) with Python integers."""
    count = 0
    for v in np.asarray(values, dtype=np.float64).reshape(-1):
        scaled = v * 2.0 ** fmt.frac           # exact in float64 for these small formats
        raw = math.floor(scaled) if rounding == "TRN" else math.floor(scaled + 0.5)
        count += not fmt.raw_min <= raw <= fmt.raw_max
    return count


def test_input_counts_by_hand():
    # fixed<4,2>: raw -8..7, values -2.0 .. 1.75 in steps of 0.25
    spec = LayerSpec((1, 6, 1), (1, 1))
    layer = Layer(spec, np.ones((1, 1, 1, 1)), np.zeros(1))
    x = np.array([1.75, 1.8, 1.9, 2.0, -2.0, -2.1]).reshape(1, 1, 6, 1)
    trn = dwconv.Design(layer, {"input": "fixed<4,2>", "output": "fixed<16,6>"})
    # TRN: 1.8 -> 1.75, 1.9 -> 1.75, 2.0 over, -2.0 fits, -2.1 -> -2.25 over
    assert trn.overflows(x)["input"] == 2
    rnd = dwconv.Design(layer, {"input": "fixed<4,2,RND,SAT>", "output": "fixed<16,6>"})
    # RND: 1.9 -> 2.0 over, 2.0 over, -2.1 -> -2.0 fits
    assert rnd.overflows(x)["input"] == 2
    fewer = np.array([1.75, 1.8, 1.9, 1.0, 0.0, -1.0]).reshape(1, 1, 6, 1)
    assert rnd.overflows(fewer)["input"] == 1     # only 1.9
    # the output (kernel 1, no bias) sees the quantized input: nothing overflows fixed<16,6>
    assert trn.overflows(x)["output"] == 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), in_int=st.integers(1, 5), out_int=st.integers(0, 5),
       rounding=st.sampled_from(["TRN", "RND"]), activation=st.sampled_from(
           ["linear", "relu", "relu6"]), accum=st.booleans())
def test_counts_equal_independent_arithmetic(seed, in_int, out_int, rounding, activation,
                                             accum):
    rng = np.random.default_rng(seed)
    layer = _layer(rng, activation)
    x = rng.normal(0, 6, (2, *layer.spec.input_shape))
    formats = {"input": f"fixed<8,{in_int},{rounding},WRAP>", "weight": "fixed<8,2>",
               "bias": "fixed<8,3>", "output": f"fixed<8,{out_int},{rounding},SAT>"}
    if accum:
        formats["accum"] = f"fixed<12,{out_int + 2},{rounding},WRAP>"
    design = dwconv.Design(layer, formats)
    counts = design.overflows(x)
    assert counts["input"] == _floor_count(x, design.formats.input, rounding)

    # the exact values before each conversion, from golden runs with wide formats that
    # cannot overflow or round (accumulator frac: input 8-in_int + weight 6 >= bias 5)
    frac = 8 - in_int + 6
    wide = f"fixed<32,{32 - frac},TRN,SAT>"
    if accum:
        linear = Layer(LayerSpec(**{**_spec_args(layer.spec), "activation": "linear"}),
                       layer.kernel, layer.bias)
        exact = dwconv.Design(linear, {**formats, "accum": None, "output": wide}).predict(x)
        assert counts["accum"] == _floor_count(exact, design.formats.accum, rounding)
        # after the accumulator format (WRAP) and the activation
        before_output = dwconv.Design(layer, {**formats, "output": wide}).predict(x)
    else:
        assert counts["accum"] == 0
        before_output = dwconv.Design(layer, {**formats, "output": wide}).predict(x)
    assert counts["output"] == _floor_count(before_output, design.formats.output, rounding)


def _spec_args(spec):
    return {"input_shape": spec.input_shape, "kernel_size": spec.kernel_size,
            "strides": spec.strides, "dilation_rate": spec.dilation_rate,
            "padding": spec.padding, "depth_multiplier": spec.depth_multiplier,
            "use_bias": spec.use_bias, "activation": spec.activation,
            "data_format": spec.data_format, "name": spec.name}


def test_saturated_outputs_sit_at_the_bounds():
    rng = np.random.default_rng(3)
    layer = _layer(rng)
    x = rng.normal(0, 10, (1, *layer.spec.input_shape))
    design = dwconv.Design(layer, {"input": "fixed<10,6>", "output": "fixed<6,2,TRN,SAT>"})
    counts = design.overflows(x)
    y = design.predict(x)
    fmt = design.formats.output
    at_bounds = np.count_nonzero((y == fmt.to_float(fmt.raw_max)) |
                                 (y == fmt.to_float(fmt.raw_min)))
    assert 0 < counts["output"] <= at_bounds


def test_warning_line():
    formats = dwconv.Design(_layer(np.random.default_rng(0)),
                            {"input": "fixed<8,3>", "output": "ufixed<8,2,RND,SAT>"}).formats
    assert full_name(QFormat.parse("fixed<8,3>")) == "fixed<8,3,TRN,WRAP>"
    line = overflow_warning({"input": 57, "accum": 0, "output": 3}, formats)
    assert line.startswith("57 input value(s) overflow fixed<8,3,TRN,WRAP> and wrap; "
                           "3 output value(s) overflow ufixed<8,2,RND,SAT> and saturate; ")
    assert "--input-format / --output-format" in line and "\n" not in line
    assert overflow_warning({"input": 0, "accum": 0, "output": 0}, formats) is None


@pytest.fixture
def exported(tmp_path):
    rng = np.random.default_rng(7)
    layer = _layer(rng, data_format="channels_first")
    export_layer(tmp_path / "exp", layer)
    x = rng.normal(0, 10, (2, 3, 5, 4))
    np.save(tmp_path / "x.npy", x)
    return tmp_path, layer, x


def test_golden_warns_once(exported, capsys):
    tmp_path, layer, x = exported
    args = ["--input-format", "fixed<8,3>", "--output-format", "fixed<8,2>"]
    assert main(["golden", str(tmp_path / "exp"), "-i", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npy"), *args]) == 0
    err = capsys.readouterr().err.splitlines()
    counts = dwconv.Design(layer, {"input": "fixed<8,3>", "output": "fixed<8,2>"}
                           ).overflows(x)
    assert counts["input"] > 0 and counts["output"] > 0
    warnings = [line for line in err if "overflow fixed<8,3,TRN,WRAP>" in line]
    assert warnings == [f"dwconv: warning: {counts['input']} input value(s) overflow "
                        f"fixed<8,3,TRN,WRAP> and wrap; {counts['output']} output value(s) "
                        f"overflow fixed<8,2,TRN,WRAP> and wrap; give a wider --input-format "
                        f"/ --output-format (dwconv profile chooses formats from data) to "
                        f"keep them"]
    # the float model has no formats to overflow
    assert main(["golden", str(tmp_path / "exp"), "-i", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "yf.npy"), "--float", *args]) == 0
    assert "overflow" not in capsys.readouterr().err


def test_simulate_report_counts(exported, capsys):
    tmp_path, layer, x = exported
    args = ["--input-format", "fixed<8,3>", "--accum-format", "fixed<10,3>",
            "--output-format", "fixed<8,2>"]
    assert main(["simulate", str(tmp_path / "exp"), "-i", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npy"), "--report", str(tmp_path / "r.json"), "--quiet",
                 *args]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    expected = dwconv.Design(layer, {"input": "fixed<8,3>", "accum": "fixed<10,3>",
                                     "output": "fixed<8,2>"}).overflows(x)
    assert report["overflows"] == expected and expected["accum"] > 0
    assert report["mismatches"] == 0
    err = capsys.readouterr().err.splitlines()
    assert len([line for line in err if line.startswith("dwconv: warning:")]) == 1
