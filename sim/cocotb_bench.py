"""cocotb testbench for the generated Verilog: third-party AXI-Stream source and sink.

Run by ``run_cocotb`` through cocotb's runner, never imported by it: the plan (beats, stalls,
weight loads) comes from the JSON file named by ``DWCONV_PLAN`` and the outcome goes to the
file the plan names, so nothing passes through globals between pytest and the simulator.

cocotbext-axi's ``AxiStreamSource`` ends each frame with ``tlast``, so one of its frames is
one image row, with ``tuser`` set on the first beat of an image's first row.  With
``byte_lanes=1`` a whole beat is one "byte", so any width works and each frame's ``tdata``
is a list of beats.
"""

import json
import os
import random
import warnings
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import Event, FallingEdge, RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

RESET_CYCLES = 4

# cocotbext-axi 0.1.28 still calls APIs that cocotb 2 deprecates (setimmediatevalue, edge
# triggers on signals; not our code); the runs inherit PYTHONWARNINGS=error from the tests,
# which would turn those into failures.  Only warnings raised from cocotbext are let through.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.")


def _pauses(stall, seed):
    """Endless per-cycle pause decisions: pause with probability ``stall``."""
    rng = random.Random(seed)
    while True:
        yield rng.random() < stall


async def _watch(dut, plan, seen, done):
    """Record every handshake on both streams, one clock cycle at a time.

    Sampled at the falling edge, where everything the next rising edge acts on has settled
    (cocotbext-axi drives its signals only at rising edges), so a handshake seen here is the
    one that edge completes; cycles are counted per edge as ``run_amaranth`` counts them.
    """
    cycle, taken_in = 0, 0
    # until every input beat is in too: a frame's last outputs can come before its last inputs
    while (len(seen["beats"]) < plan["expected_beats"] or taken_in < plan["input_beats"]) \
            and cycle < plan["max_cycles"]:
        await FallingEdge(dut.clk)
        if dut.s_axis_tvalid.value and dut.s_axis_tready.value:
            if seen["first_in"] is None:
                seen["first_in"] = cycle
            seen["last_in"] = cycle
            taken_in += 1
        if dut.m_axis_tvalid.value and dut.m_axis_tready.value:
            if seen["first_out"] is None:
                seen["first_out"] = cycle
            seen["last_out"] = cycle
            seen["beats"].append(int(dut.m_axis_tdata.value))
            seen["flags"].append((int(dut.m_axis_tuser.value), int(dut.m_axis_tlast.value)))
        cycle += 1
    seen["cycles_run"] = cycle
    done.set()


def _sink_beats(sink):
    """Beats and (tuser, tlast) flags of the frames the sink completed (ended by tlast)."""
    beats, flags = [], []
    while not sink.empty():
        frame = sink.recv_nowait(compact=False)
        beats += [int(beat) for beat in frame.tdata]
        flags += [(int(user), 0) for user in frame.tuser]
        flags[-1] = (flags[-1][0], 1)
    return beats, flags


@cocotb.test()
async def stream_frames(dut):
    """Stream the planned frames (and weight loads) and record what comes out."""
    plan = json.loads(Path(os.environ["DWCONV_PLAN"]).read_text())
    stall, seed = plan["stall"], plan["seed"]

    dut.rst.value = 1
    Clock(dut.clk, 10, unit="ns").start()
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst,
                             byte_lanes=1)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst,
                         byte_lanes=1)
    if stall > 0:
        source.set_pause_generator(_pauses(stall, seed))
        sink.set_pause_generator(_pauses(stall, seed + 1))
    weights = None
    if hasattr(dut, "w_axis_tvalid"):
        dut.w_axis_tvalid.value = 0   # an idle weight port, not a floating one
    if plan["loads"]:
        weights = AxiStreamSource(AxiStreamBus.from_prefix(dut, "w_axis"), dut.clk, dut.rst,
                                  byte_lanes=1)
        if stall > 0:
            weights.set_pause_generator(_pauses(stall, seed + 2))
    for _ in range(RESET_CYCLES):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)

    seen = {"beats": [], "flags": [], "first_in": None, "last_in": None, "first_out": None,
            "last_out": None}
    done = Event()
    cocotb.start_soon(_watch(dut, plan, seen, done))

    for index, rows in enumerate(plan["frames"]):
        load = plan["loads"].get(str(index))
        if load is not None:
            # a load applies to the next frame that starts after it completes: let the
            # previous frame's beats all go in first, then load, then start this frame
            await source.wait()
            await weights.send(AxiStreamFrame(tdata=load))
            await weights.wait()
        for number, row in enumerate(rows):
            tuser = [1] + [0] * (len(row) - 1) if number == 0 else 0
            await source.send(AxiStreamFrame(tdata=row, tuser=tuser))
    await done.wait()
    # the sink takes the last beat at the rising edge after the watcher saw it
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)

    sink_beats, sink_flags = _sink_beats(sink)
    # the sink only hands over frames ended by tlast: beats after the last tlast are the
    # watcher's alone; everything the sink did hand over must agree with the watcher
    if sink_beats != seen["beats"][:len(sink_beats)] or \
            sink_flags != seen["flags"][:len(sink_flags)]:
        raise AssertionError("the AXI-Stream sink and the handshake watcher disagree")
    result = {
        "beats": sink_beats + seen["beats"][len(sink_beats):],
        "flags": sink_flags + seen["flags"][len(sink_flags):],
        "first_in": seen["first_in"], "last_in": seen["last_in"],
        "first_out": seen["first_out"],
        "last_out": seen["last_out"], "cycles_run": seen["cycles_run"],
        "error": int(dut.error.value),
    }
    Path(plan["result"]).write_text(json.dumps(result))
