"""Reuse R (folding): the whole engine with ceil(kh*kw/R) multipliers per output, bit-exact,
one input beat every R cycles."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dwconv.cli import main
from dwconv.models.export import export_layer
from dwconv.golden.fixed_ref import fixed_forward, quantize_weights
from dwconv.golden.formats import LayerFormats
from dwconv.golden.spec import LayerSpec
from dwconv.hw.engine import DepthwiseEngine
from dwconv.sim.amaranth_sim import run_amaranth
from dwconv.sim.cocotb_sim import run_cocotb
from dwconv.flows.lint import lint_verilog
from dwconv.sim.vectors import write_vectors
from dwconv.flows.verilog import engine_verilog

from support.engine_cases import make_case, random_layer


def folded(case, reuse):
    """The case with its engine rebuilt for reuse R (same layer, formats, lanes, weights)."""
    engine = DepthwiseEngine(case.layer.spec, case.formats, case.lanes, case.kernel_raw,
                             case.bias_raw, weights=case.engine.weights, reuse=reuse)
    return dataclasses.replace(case, engine=engine)


SWEEP = [
    # (case, R): kernels, strides, dilation, padding, multiplier, bias, activations, lanes,
    # every format set, R from 2 to kh*kw (uneven splits leave a multiplier idle a phase)
    (dict(shape=(5, 6, 2), kernel=(3, 3), padding="same"), 2),
    (dict(shape=(6, 7, 2), kernel=(3, 5), formats="trn_wrap", lanes=1), 4),
    (dict(shape=(5, 5, 1), kernel=(2, 2), activation="relu6", formats="conv_sym"), 4),
    (dict(shape=(7, 6, 2), kernel=(3, 3), strides=2, dilation=2, padding="same",
          formats="accum"), 3),
    (dict(shape=(5, 5, 4), kernel=(3, 2), multiplier=2, lanes=2, padding="same",
          use_bias=False, activation="relu"), 5),
    (dict(shape=(4, 5, 6), kernel=(3, 3), lanes=3, strides=(1, 2), padding="valid"), 9),
    (dict(shape=(4, 4, 2), kernel=(1, 1), multiplier=3), 1),
    (dict(shape=(6, 6, 2), kernel=(2, 3), dilation=(2, 1), lanes=2, padding="same",
          weights="port", formats="rnd_sat"), 2),
]


def _id(params, reuse):
    return "-".join(f"{k}={v}" for k, v in params.items()).replace(" ", "") + f"-R={reuse}"


@pytest.mark.parametrize("params,reuse", SWEEP, ids=[_id(*c) for c in SWEEP])
def test_sweep_bit_exact(params, reuse):
    case = folded(make_case(**params, seed=len(_id(params, reuse))), reuse)
    frames = case.frames(3, np.random.default_rng(1))
    result = run_amaranth(case.engine, frames, stall=0.25, seed=2)
    np.testing.assert_array_equal(result.outputs, case.expected(frames))
    assert result.framing == []
    assert not result.error
    kh, kw = case.layer.spec.kernel_size
    assert case.engine.multipliers == -(-kh * kw // reuse) * case.engine.out_lanes


def test_loaded_weights_swap_between_back_to_back_frames():
    # The bank of new weights becomes active right after the last window of a frame fires,
    # and that window's R phases must still read the old one.  With wide rows the frame's
    # tail (its bottom padding) is still to fire when the load is over and the next frame
    # streams in, so that last window fires just before the swap.
    case = folded(make_case(shape=(4, 12, 4), kernel=(3, 3), padding="same", lanes=2,
                            weights="port"), 3)
    rng = np.random.default_rng(4)
    other = random_layer(case.layer.spec, rng)
    loads = {1: quantize_weights(other, case.formats), 2: (case.kernel_raw, case.bias_raw)}
    frames = case.frames(3, rng)
    expected = np.concatenate([case.expected(frames[:1]), case.expected(frames[1:2], other),
                               case.expected(frames[2:])])
    for stall in (0.0, 0.2):
        result = run_amaranth(case.engine, frames, stall=stall, seed=5, loads=loads)
        np.testing.assert_array_equal(result.outputs, expected)
        assert not result.error


def test_cycles_are_r_times_those_of_the_unfolded_engine():
    """Back to back, no stalls: each more frame costs exactly R times the beats."""
    base = make_case(shape=(6, 6, 2), kernel=(3, 3), padding="same", lanes=1)
    frames = base.frames(3, np.random.default_rng(3))
    beats = 6 * 6 * 2
    cycles = {}
    for reuse in (1, 3):
        case = folded(base, reuse)
        for count in (2, 3):
            result = run_amaranth(case.engine, frames[:count])
            np.testing.assert_array_equal(result.outputs, case.expected(frames[:count]))
            cycles[reuse, count] = result.cycles
    assert cycles[1, 3] - cycles[1, 2] == beats
    assert cycles[3, 3] - cycles[3, 2] == 3 * beats
    # whole runs: R times the input beats, plus a tail (the last rows' flush shifts, also
    # one per R cycles, and the pipeline) shorter than R times the unfolded engine's
    assert 3 * 3 * beats <= cycles[3, 3] <= 3 * cycles[1, 3]
    print(f"3 frames 6x6x2, 3x3 same, P=1: R=1 {cycles[1, 3]} cycles, R=3 {cycles[3, 3]} "
          f"cycles, ratio {cycles[3, 3] / cycles[1, 3]:.3f}")


def test_reuse_out_of_range_is_refused():
    case = make_case(shape=(4, 4, 1), kernel=(2, 2))
    for reuse in (0, 5):
        with pytest.raises(ValueError, match="reuse must be a whole number from 1 to 4"):
            folded(case, reuse)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_configurations(data):
    kh, kw = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    dh, dw = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    padding = data.draw(st.sampled_from(["same", "valid"]))
    min_h = (kh - 1) * dh + 1 if padding == "valid" else 1
    min_w = (kw - 1) * dw + 1 if padding == "valid" else 1
    h = data.draw(st.integers(min_h, max(min_h, 6)))
    w = data.draw(st.integers(min_w, max(min_w, 6)))
    channels = data.draw(st.sampled_from([1, 2, 4]))
    lanes = data.draw(st.sampled_from([p for p in (1, 2, 4) if channels % p == 0]))
    case = make_case(
        shape=(h, w, channels), kernel=(kh, kw),
        strides=(data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))),
        dilation=(dh, dw), padding=padding, multiplier=data.draw(st.integers(1, 2)),
        lanes=lanes, activation=data.draw(st.sampled_from(["linear", "relu", "relu6"])),
        use_bias=data.draw(st.booleans()),
        formats=data.draw(st.sampled_from(["trn_wrap", "rnd_sat", "conv_sym", "accum"])),
        weights=data.draw(st.sampled_from(["const", "port"])),
        seed=data.draw(st.integers(0, 1000)))
    case = folded(case, data.draw(st.integers(1, kh * kw)))
    frames = case.frames(2, np.random.default_rng(7))
    result = run_amaranth(case.engine, frames, stall=data.draw(st.sampled_from([0.0, 0.3])),
                          seed=8)
    np.testing.assert_array_equal(result.outputs, case.expected(frames))
    assert result.framing == []


def test_cli_simulate_reports_reuse_and_refuses_too_much(tmp_path, capsys):
    spec = LayerSpec(input_shape=(5, 4, 2), kernel_size=(2, 3), padding="same", name="dw")
    layer = random_layer(spec, np.random.default_rng(11))
    formats = LayerFormats.from_strings(input="fixed<8,3,RND,SAT>", weight="fixed<8,2>")
    export_layer(tmp_path / "exp", layer, formats)
    x = np.random.default_rng(12).normal(size=(2, 5, 4, 2))
    np.save(tmp_path / "x.npy", x)
    common = [str(tmp_path / "exp"), "-i", str(tmp_path / "x.npy")]
    assert main(["simulate", *common, "-o", str(tmp_path / "y.npy"), "--lanes", "2",
                 "--reuse", "4", "--report", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["reuse"] == 4 and report["mismatches"] == 0
    assert report["ideal_cycles"] == 2 * 5 * 4 * 4          # frames*H*W*C/P*R
    assert report["multipliers"] == 2 * 2                    # ceil(6/4) per lane
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"),
                                  fixed_forward(layer, formats, x))
    capsys.readouterr()
    for bad in ("7", "0", "two"):
        out = tmp_path / f"bad{bad}.npy"
        assert main(["simulate", *common, "-o", str(out), "--reuse", bad]) == 2
        assert not out.exists()
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "--reuse" in error
    assert main(["verilog", str(tmp_path / "exp"), "--reuse", "7", "-o",
                 str(tmp_path / "e.v")]) == 2
    assert "from 1 to 6" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus is not installed")
def test_verilog_matches_golden_and_amaranth_cycles(tmp_path):
    # The folded MAC's operand multiplexers in Verilog (Icarus once refused a yosys parallel
    # multiplexer there), loaded weights, and the same cycles as in Amaranth.  Icarus builds
    # in seconds; `dwconv simulate --sim verilator --reuse R` runs the same Verilog.
    case = folded(make_case(shape=(5, 6, 4), kernel=(3, 3), padding="same", lanes=2,
                            weights="port", formats="accum", seed=9), 4)
    rng = np.random.default_rng(10)
    other = random_layer(case.layer.spec, rng)
    frames = case.frames(2, rng)
    loads = {1: quantize_weights(other, case.formats)}
    expected = np.concatenate([case.expected(frames[:1]), case.expected(frames[1:], other)])
    rtl = run_cocotb(case.engine, frames, simulator="icarus", loads=loads,
                     build_dir=tmp_path)
    model = run_amaranth(case.engine, frames, loads=loads)
    np.testing.assert_array_equal(rtl.outputs, expected)
    assert rtl.framing == [] and not rtl.error
    assert (rtl.cycles, rtl.latency_cycles) == (model.cycles, model.latency_cycles)


@pytest.mark.parametrize("weights", ["const", "port"])
def test_folded_verilog_is_lint_clean(weights):
    case = folded(make_case(shape=(5, 6, 4), kernel=(3, 3), padding="same", lanes=2,
                            multiplier=2, weights=weights), 4)
    assert lint_verilog(engine_verilog(case.engine)) == []


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus is not installed")
@pytest.mark.parametrize("target,weights", [("ice40", "port"), ("ecp5", "const")])
def test_dsp_netlist_matches_golden(target, weights, tmp_path):
    # the folded MACs as the target's DSP blocks (SB_MAC16, MULT18X18D with their
    # registers), through yosys, simulated with the cells' models
    from dwconv.flows.postsynth import run_postsynth_vectors

    spec = LayerSpec(input_shape=(4, 4, 2), kernel_size=(3, 3), padding="same",
                     activation="relu", name="dw")
    layer = random_layer(spec, np.random.default_rng(1), scale=0.5)
    formats = LayerFormats.from_strings(input="fixed<8,3>", weight="fixed<8,2>",
                                        bias="fixed<8,3>", output="fixed<8,4,RND,SAT>")
    x = np.random.default_rng(2).normal(0, 2, (2, 4, 4, 2))
    write_vectors(tmp_path / "vec", layer, formats, x, 2, reuse=3)
    # a port engine is built with other weights: only the loaded weights.hex can pass
    built = layer if weights == "const" else random_layer(spec, np.random.default_rng(7))
    kernel_raw, bias_raw = quantize_weights(built, formats)
    engine = DepthwiseEngine(spec, formats, 2, kernel_raw, bias_raw, weights=weights,
                             reuse=3, target=target)
    result = run_postsynth_vectors(engine, target, tmp_path / "vec", tmp_path / "run")
    assert result.passed, result.log[-3000:]
    assert "PASS: 32 output beats match" in result.log
    dsp = {"ice40": "SB_MAC16", "ecp5": "MULT18X18D"}[target]
    assert (tmp_path / "run" / "netlist.v").read_text().count(f"{dsp} ") == 2 * 3
