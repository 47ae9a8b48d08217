"""The shipped Verilog at native speed (tb_stream.v under Verilator and Icarus, no cocotb):
bit-exact with stalls, back-to-back frames and weight loads; cycles as the Amaranth model;
beat files; a missing simulator is a user error."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dwconv.models.export import export_layer
from dwconv.golden.fixed_ref import quantize_weights
from dwconv.golden.formats import LayerFormats
from dwconv.sim.amaranth_sim import run_amaranth
from dwconv.sim.beats import pack_beats
from dwconv.sim.native_sim import decode_beats, encode_beats, run_native, run_native_timed
from support.engine_cases import make_case, random_layer
from support.shared_build import native_build_root
from test_sim_cocotb import CONFIGS

ICARUS = pytest.mark.skipif(shutil.which("iverilog") is None,
                            reason="Icarus Verilog (iverilog) is not installed")
SIMULATORS = ["verilator", pytest.param("icarus", marks=ICARUS)]


@pytest.fixture(scope="module")
def build_root():
    """The shared test build cache: a design is built once per simulator, and kept."""
    return native_build_root()


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", CONFIGS)
def test_frames_with_stalls_match_golden(name, simulator, build_root):
    case = make_case(**CONFIGS[name], seed=3)
    frames = case.frames(3, np.random.default_rng(7))
    result = run_native(case.engine, frames, simulator=simulator, stall=0.3, seed=11,
                        build_dir=build_root)
    np.testing.assert_array_equal(result.outputs, case.expected(frames))
    assert result.framing == []
    assert not result.error
    # the stalls throttle the stream: more cycles than one beat per cycle allows
    assert result.cycles > 3 * case.engine.spec.height * case.engine.spec.width * \
        case.engine.spec.channels // case.lanes


def test_cycles_count_like_the_amaranth_simulator(build_root):
    """Without stalls both compiled simulators take exactly the Amaranth model's cycles;
    with stalls they run the same testbench from the same seed, so they agree too."""
    case = make_case(**CONFIGS["same_m2_lanes2"], seed=3)
    frames = case.frames(2, np.random.default_rng(8))
    model = run_amaranth(case.engine, frames)
    simulators = ["verilator"] + (["icarus"] if shutil.which("iverilog") else [])
    stalled = set()
    for simulator in simulators:
        rtl = run_native(case.engine, frames, simulator=simulator, build_dir=build_root)
        np.testing.assert_array_equal(rtl.outputs, case.expected(frames))
        assert (rtl.cycles, rtl.latency_cycles) == (model.cycles, model.latency_cycles)
        slow = run_native(case.engine, frames, simulator=simulator, stall=0.3, seed=11,
                          build_dir=build_root)
        stalled.add((slow.cycles, slow.latency_cycles))
    assert len(stalled) == 1


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_weight_loads_between_frames(simulator, build_root):
    """weights="port": frame 0 on the built-in weights, a load before frame 1 and another
    before frame 3, with stalls on the input, the output and the weight port."""
    case = make_case(shape=(5, 5, 4), kernel=(3, 3), padding="same", lanes=2,
                     formats="rnd_sat", weights="port", seed=5)
    spec = case.layer.spec
    first, second = (random_layer(spec, np.random.default_rng(s)) for s in (99, 98))
    frames = case.frames(4, np.random.default_rng(9))
    loads = {1: quantize_weights(first, case.formats), 3: quantize_weights(second, case.formats)}
    result = run_native(case.engine, frames, simulator=simulator, stall=0.25, seed=4,
                        loads=loads, build_dir=build_root)
    np.testing.assert_array_equal(result.outputs[:1], case.expected(frames[:1]))
    np.testing.assert_array_equal(result.outputs[1:3], case.expected(frames[1:3], first))
    np.testing.assert_array_equal(result.outputs[3:], case.expected(frames[3:], second))
    assert result.framing == []
    assert not result.error


def test_same_design_builds_once(build_root):
    """A second run of the same design reuses the cached build: 0 build seconds."""
    case = make_case(**CONFIGS["valid_stride2_relu6"], seed=3)
    frames = case.frames(1, np.random.default_rng(1))
    _, first = run_native_timed(case.engine, frames, simulator="verilator",
                                build_dir=build_root)
    stamp = (Path(first.build_folder) / "built").stat().st_mtime_ns
    result, timing = run_native_timed(case.engine, frames, simulator="verilator",
                                      build_dir=build_root)
    np.testing.assert_array_equal(result.outputs, case.expected(frames))
    assert timing.build_seconds == 0.0 and timing.sim_seconds > 0
    assert timing.build_folder == first.build_folder
    assert (Path(timing.build_folder) / "built").stat().st_mtime_ns == stamp


def test_cycle_limit_stops_a_run_that_cannot_finish(build_root):
    """The testbench gives up at its cycle limit instead of hanging."""
    case = make_case(**CONFIGS["valid_stride2_relu6"], seed=3)
    frames = case.frames(2, np.random.default_rng(1))
    with pytest.raises(RuntimeError, match="output beats within 40 cycles"):
        run_native_timed(case.engine, frames, simulator="verilator", build_dir=build_root,
                         max_cycles=40)


@pytest.mark.parametrize("lanes, width, signed", [(3, 6, True), (8, 10, True), (2, 8, False),
                                                  (5, 13, False), (1, 1, False)])
def test_beat_files_pack_like_pack_beats(lanes, width, signed):
    """Hex and binary beat files hold pack_beats' words, and read back to the raw values."""
    kind = "fixed" if signed else "ufixed"
    fmt = LayerFormats.from_strings(output=f"{kind}<{width},1>").output
    raw = np.random.default_rng(width).integers(fmt.raw_min, fmt.raw_max + 1,
                                                (2, 3, 4, 2 * lanes))
    words = pack_beats(raw, lanes, width)
    digits, chunks = -(-lanes * width // 4), -(-lanes * width // 32)
    text = encode_beats(raw, lanes, width)
    binary = encode_beats(raw, lanes, width, binary=True)
    assert text.decode() == "".join(f"{word:0{digits}x}\n" for word in words)
    assert binary == b"".join(word.to_bytes(4 * chunks, "little") for word in words)
    for data, is_binary in ((text, False), (binary, True)):
        back = decode_beats(data, lanes, fmt, binary=is_binary)
        np.testing.assert_array_equal(back.reshape(raw.shape), raw)


def test_undefined_output_beats_are_an_error():
    fmt = LayerFormats.from_strings(output="fixed<8,1>").output
    with pytest.raises(RuntimeError, match="undefined"):
        decode_beats(b"1x\n", 1, fmt)


# ---------------------------------------------------------------------------------------------
# A missing simulator or compiler: exit 2, one line saying what to install, no output file

@pytest.fixture(scope="module")
def small_layer(tmp_path_factory):
    from dwconv.golden.layer import Layer
    from dwconv.golden.spec import LayerSpec

    folder = tmp_path_factory.mktemp("layer")
    spec = LayerSpec(input_shape=(4, 4, 2), kernel_size=3, padding="same", name="dw")
    export_layer(folder / "exp", Layer(spec, np.ones((3, 3, 2, 1), np.float32),
                                       np.zeros(2, np.float32)))
    np.save(folder / "x.npy", np.ones((1, 4, 4, 2)))
    return folder


def _path_without(tmp_path, hidden):
    """A PATH folder with links to every program on PATH except those named ``hidden``."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory) or os.path.realpath(directory) == \
                os.path.realpath(os.path.dirname(sys.executable)):
            continue
        for name in os.listdir(directory):
            target = os.path.join(directory, name)
            if name not in hidden and not (folder / name).exists() and os.access(target,
                                                                                  os.X_OK):
                (folder / name).symlink_to(target)
    return str(folder)


def _simulate(small_layer, tmp_path, sim, env):
    out = tmp_path / "y.npy"
    report = tmp_path / "r.json"
    done = subprocess.run(
        [sys.executable, "-m", "dwconv.cli", "simulate", str(small_layer / "exp"), "-i",
         str(small_layer / "x.npy"), "-o", str(out), "--report", str(report), "--sim", sim],
        capture_output=True, text=True, env=env, check=False)
    return done, [out, report]


@pytest.mark.parametrize("sim, hidden, expected", [
    ("icarus", ("iverilog", "vvp"), "apt-get install iverilog"),
    ("cocotb-icarus", ("iverilog", "vvp"), "apt-get install iverilog"),
])
def test_missing_icarus_is_a_user_error(small_layer, tmp_path, sim, hidden, expected):
    env = dict(os.environ, PATH=_path_without(tmp_path, hidden))
    done, outputs = _simulate(small_layer, tmp_path, sim, env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Icarus Verilog" in lines[0] and expected in lines[0]
    assert "--sim verilator" in lines[0]
    assert not any(path.exists() for path in outputs)


def test_missing_cxx_compiler_is_a_user_error(small_layer, tmp_path):
    env = dict(os.environ, CXX="no-such-c++-compiler")
    done, outputs = _simulate(small_layer, tmp_path, "verilator", env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-c++-compiler" in lines[0]
    assert "apt-get install g++" in lines[0] and "--sim icarus" in lines[0]
    assert not any(path.exists() for path in outputs)


def test_missing_verilator_is_a_user_error(small_layer, tmp_path, monkeypatch, capsys):
    """Verilator comes with the venv, so it is hidden from the tool search itself."""
    from dwconv import cli
    from dwconv.flows import tools

    monkeypatch.setattr(tools, "search_path", lambda: _path_without(tmp_path, ("verilator",)))
    out = tmp_path / "y.npy"
    code = cli.main(["simulate", str(small_layer / "exp"), "-i", str(small_layer / "x.npy"),
                     "-o", str(out), "--sim", "verilator"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "Verilator" in err[0] and "--sim amaranth" in err[0]
    assert not out.exists()
