"""vectors.json carries everything a user's testbench needs: beats per row, per frame, all
frames, and every tb_vectors.v parameter; tb_vectors.v runs from those alone (Icarus)."""

import json
import shutil
import subprocess
from importlib import resources

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dwconv.cli import main
from dwconv.models.export import export_layer
from dwconv.golden.formats import LayerFormats
from dwconv.golden.layer import Layer
from dwconv.golden.spec import LayerSpec
from dwconv.sim.vectors import build_vectors

FORMATS = dict(input="fixed<8,3>", weight="fixed<8,2>", bias="fixed<12,4>",
               output="fixed<10,5,RND,SAT>")
FORMAT_ARGS = [arg for key, value in FORMATS.items() for arg in (f"--{key}-format", value)]


def _layer(spec, seed):
    rng = np.random.default_rng(seed)
    return Layer(spec, rng.normal(size=spec.kernel_shape).astype(np.float32),
                 rng.normal(size=spec.out_channels).astype(np.float32)
                 if spec.use_bias else None)


# Hand-computed: 5x6x4 same, P=2 (2 groups), M=2: 12 beats a row, 60 a frame, out the same;
# 7x8x2 3x3 stride 2 valid, P=1: in rows of 16, frames of 112; out 3x3: rows of 6, frames of
# 18; weights 9*2*1 + 2 bias words, 12 bits wide (the bias format's).
HAND = {
    "same_m2_p2": (dict(input_shape=(5, 6, 4), kernel_size=(3, 3), padding="same",
                        depth_multiplier=2), 2,
                   dict(IN_BITS=16, OUT_BITS=40, IN_BEATS=120, OUT_BEATS=120, IN_ROW_BEATS=12,
                        IN_FRAME_BEATS=60, OUT_ROW_BEATS=12, OUT_FRAME_BEATS=60,
                        WEIGHT_BITS=12, WEIGHT_WORDS=3 * 3 * 4 * 2 + 8)),
    "stride2_valid_p1": (dict(input_shape=(7, 8, 2), kernel_size=(3, 3), strides=2), 1,
                         dict(IN_BITS=8, OUT_BITS=10, IN_BEATS=224, OUT_BEATS=36,
                              IN_ROW_BEATS=16, IN_FRAME_BEATS=112, OUT_ROW_BEATS=6,
                              OUT_FRAME_BEATS=18, WEIGHT_BITS=12, WEIGHT_WORDS=20)),
}


@pytest.mark.parametrize("name", HAND)
def test_vectors_json_parameters_by_hand(name):
    config, lanes, expected = HAND[name]
    spec = LayerSpec(**config, name="dw")
    x = np.random.default_rng(0).normal(0, 2, (2, *spec.input_shape))
    content = build_vectors(_layer(spec, 1), LayerFormats.from_strings(**FORMATS), x, lanes)
    info = json.loads(content["vectors.json"])
    parameters = info["testbench"]["parameters"]
    assert {key: parameters[key] for key in expected} == expected
    assert info["input"]["beats_per_row"] == expected["IN_ROW_BEATS"]
    assert info["output"]["beats_per_row"] == expected["OUT_ROW_BEATS"]
    assert info["input"]["beats_per_frame"] == expected["IN_FRAME_BEATS"]
    assert info["frames"] == 2
    assert (parameters["SOURCE_PERIOD"], parameters["SINK_PERIOD"]) == (7, 5)


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_vectors_json_agrees_with_its_files(data):
    """Over random layers: the counts match the hex files' lines and the arrays' shapes."""
    channels = data.draw(st.sampled_from([1, 2, 3, 4, 6]))
    lanes = data.draw(st.sampled_from([p for p in range(1, 7) if channels % p == 0]))
    kh, kw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    spec = LayerSpec(input_shape=(data.draw(st.integers(kh, 6)), data.draw(st.integers(kw, 6)),
                                  channels),
                     kernel_size=(kh, kw), strides=data.draw(st.sampled_from([1, 2, 3, (2, 1)])),
                     dilation_rate=data.draw(st.sampled_from([1, (1, 2)]))
                     if kw <= 2 else 1,
                     padding=data.draw(st.sampled_from(["valid", "same"])),
                     depth_multiplier=data.draw(st.integers(1, 3)),
                     use_bias=data.draw(st.booleans()), name="dw")
    frames = data.draw(st.integers(1, 3))
    reuse = data.draw(st.integers(1, kh * kw))
    x = np.random.default_rng(0).normal(0, 2, (frames, *spec.input_shape))
    content = build_vectors(_layer(spec, 1), LayerFormats.from_strings(**FORMATS), x, lanes,
                            reuse=reuse)
    info = json.loads(content["vectors.json"])
    p = info["testbench"]["parameters"]
    raw = content["vectors.npz"]
    n, oh, ow, oc = raw["output_raw"].shape
    assert p["IN_BEATS"] == len(content["input.hex"].splitlines()) == info["input"]["beats"]
    assert p["OUT_BEATS"] == len(content["output.hex"].splitlines()) == info["output"]["beats"]
    assert p["WEIGHT_WORDS"] == len(content["weights.hex"].splitlines())
    assert p["IN_BEATS"] == frames * p["IN_FRAME_BEATS"]
    assert p["IN_FRAME_BEATS"] == spec.height * p["IN_ROW_BEATS"]
    assert p["OUT_BEATS"] == n * p["OUT_FRAME_BEATS"] == n * oh * p["OUT_ROW_BEATS"]
    assert p["OUT_ROW_BEATS"] * lanes * spec.depth_multiplier == ow * oc
    assert p["IN_BITS"] == info["input"]["beat_bits"]
    assert p["OUT_BITS"] == info["output"]["beat_bits"]
    assert p["MAX_CYCLES"] > p["IN_BEATS"] * reuse + p["OUT_BEATS"]
    assert info["reuse"] == reuse


def _run_from_json(vec, verilog, work, *, weight_port=False):
    """iverilog + vvp with nothing but what vectors.json says (no dwconv helper)."""
    info = json.loads((vec / "vectors.json").read_text())
    bench = info["testbench"]
    options = [f"-Ptb_vectors.{name}={value}" for name, value in bench["parameters"].items()]
    if weight_port:
        options.append(f"-D{bench['weight_port_define']}")
    with resources.as_file(resources.files("dwconv.sim") / bench["file"]) as testbench:
        subprocess.run(["iverilog", "-g2012", "-s", "tb_vectors", "-o", str(work / "tb.vvp"),
                        *options, str(testbench), str(verilog)], check=True)
    plusargs = [f"+{key}={vec / name}" for key, name in bench["plusargs"].items()]
    run = subprocess.run(["vvp", "-n", str(work / "tb.vvp"), *plusargs], capture_output=True,
                         text=True, check=True)
    return run.stdout


@pytest.mark.skipif(shutil.which("iverilog") is None,
                    reason="Icarus Verilog (iverilog) is not installed")
@pytest.mark.parametrize("weights, reuse", [("const", 1), ("port", 3)])
def test_tb_vectors_runs_from_vectors_json_alone(tmp_path, weights, reuse):
    spec = LayerSpec(input_shape=(5, 6, 4), kernel_size=(3, 3), padding="same",
                     depth_multiplier=2, activation="relu6", name="dw")
    export_layer(tmp_path / "layer", _layer(spec, 1), LayerFormats.from_strings())
    np.save(tmp_path / "x.npy", np.random.default_rng(2).normal(0, 3, (2, 5, 6, 4)))
    args = [str(tmp_path / "layer"), *FORMAT_ARGS, "--lanes", "2", "--reuse", str(reuse)]
    assert main(["vectors", *args, "-i", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "vec")]) == 0
    # a weight-port engine is built from other weights: only the load makes it this layer
    export_layer(tmp_path / "other", _layer(spec, 5), LayerFormats.from_strings())
    source = tmp_path / ("other" if weights == "port" else "layer")
    assert main(["verilog", str(source), *args[1:], "--weights", weights,
                 "-o", str(tmp_path / "dwconv.v")]) == 0
    out = _run_from_json(tmp_path / "vec", tmp_path / "dwconv.v", tmp_path,
                         weight_port=weights == "port")
    assert "PASS: 120 output beats match (120 input beats" in out, out
    # and it can fail: one corrupted expected beat
    hex_file = tmp_path / "vec" / "output.hex"
    lines = hex_file.read_text().splitlines()
    lines[70] = format(int(lines[70], 16) ^ 1, f"0{len(lines[70])}x")
    hex_file.write_text("\n".join(lines) + "\n")
    out = _run_from_json(tmp_path / "vec", tmp_path / "dwconv.v", tmp_path,
                         weight_port=weights == "port")
    assert "FAIL: 1 of 120 output beats differ" in out, out
