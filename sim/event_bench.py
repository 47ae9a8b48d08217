"""cocotb testbench that plays an arbitrary list of input events, malformed ones included.

Run by ``play_events`` through cocotb's runner, never imported by it.  Unlike
``cocotb_bench`` (cocotbext-axi, which always frames its beats well), this drives the
ports itself, beat by beat, with whatever tuser/tlast the plan says, gaps with valid low,
and one-cycle resets.  Inputs change just after a rising edge; handshakes are sampled at
the falling edge, when what the next rising edge acts on has settled.
"""

import json
import os
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

RESET_CYCLES = 4


@cocotb.test()
async def play_events(dut):
    """Play the planned events; record output beats per stretch between resets."""
    plan = json.loads(Path(os.environ["DWCONV_PLAN"]).read_text())
    events, rng = plan["events"], random.Random(plan["seed"])
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.s_axis_tvalid.value = 0
    dut.m_axis_tready.value = 0
    for _ in range(RESET_CYCLES):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    segments, index, waited, gap_done, tail = [[]], 0, 0, 0, 0
    accepted = True
    for _ in range(plan["max_cycles"]):
        await RisingEdge(dut.clk)
        event = events[index] if index < len(events) else None
        kind = event[0] if event else "end"
        dut.rst.value = int(kind == "reset")
        dut.s_axis_tvalid.value = int(kind == "beat")
        if kind == "beat":
            dut.s_axis_tdata.value = event[1]
            dut.s_axis_tuser.value = event[2]
            dut.s_axis_tlast.value = event[3]
        ready = rng.random() >= plan["stall"]
        dut.m_axis_tready.value = int(ready)

        await FallingEdge(dut.clk)
        if kind != "reset" and ready and dut.m_axis_tvalid.value:
            segments[-1].append([int(dut.m_axis_tdata.value), int(dut.m_axis_tuser.value),
                                 int(dut.m_axis_tlast.value)])
        if kind == "beat":
            if dut.s_axis_tready.value:
                index, waited = index + 1, 0
            else:
                waited += 1
                if waited > plan["wait_bound"]:
                    accepted = False
                    break
        elif kind == "gap":
            gap_done += 1
            if gap_done == event[1]:
                index, gap_done = index + 1, 0
        elif kind == "reset":
            index += 1
            segments.append([])
        else:
            tail += 1
            if tail == plan["tail_cycles"]:
                break
    result = {"segments": segments, "error": int(dut.error.value), "accepted": accepted,
              "finished": index == len(events)}
    Path(plan["result"]).write_text(json.dumps(result))
