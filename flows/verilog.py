"""Verilog output: the engine as one self-contained module with AXI4-Stream ports."""

import re

from amaranth.back import rtlil

from ..hw.engine import DepthwiseEngine
from .lint import WAIVERS
from .yosys import run_yosys

__all__ = ["build_engine", "engine_verilog", "lint_pragmas", "module_name",
           "without_array_aliases", "DEFAULT_TOP", "TARGET_WAIVERS"]

DEFAULT_TOP = "dwconv"


def module_name(prefix, layer):
    """``<prefix>_<layer>`` as a Verilog identifier: one top per layer of a network.

    Characters a Verilog name cannot hold (``.``, ``-``, ...) become ``_``.
    """
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{prefix}_{layer}")


def build_engine(layer, formats, lanes, kernel_raw, bias_raw, *, weights="const", reuse=1):
    """The engine for a golden ``Layer`` and its quantized weights."""
    return DepthwiseEngine(layer.spec, formats, lanes, kernel_raw, bias_raw, weights=weights,
                           reuse=reuse)


def _kind_of(engine):
    """The layer kind an engine computes, when its caller does not say."""
    if hasattr(engine, "rounding"):
        return f"int8 DEPTHWISE_CONV_2D ({engine.rounding} rounding)"
    if hasattr(engine, "filters"):
        return "separable block"
    return "DepthwiseConv2D"


def _header(engine, top, kind=None):
    spec, formats = engine.spec, engine.formats
    geometry = getattr(engine, "depthwise_spec", spec)     # a separable block's depthwise part
    kh, kw = geometry.kernel_size
    multipliers = getattr(engine, "multipliers", None)
    if multipliers is None:                                # an int8 engine's inner engine's
        multipliers = engine.engine.multipliers
    separable = hasattr(engine, "filters")
    roles = formats.to_dict(separable) if separable else formats.to_dict()
    extra = []
    if separable:
        extra.append(f"  pointwise stage: {engine.filters} filters, Q={engine.out_lanes} per "
                     f"output beat, Rp={engine.pointwise_reuse}, activation "
                     f"{engine.activation}")
    if hasattr(engine, "rounding"):
        extra.append(f"  int8 in and out, requantization rounding {engine.rounding}")
    lines = [
        f"dwconv engine {top}: {kind or _kind_of(engine)} {spec.name!r}",
        f"  input {geometry.height}x{geometry.width}x{geometry.channels} -> output "
        f"{spec.out_height}x{spec.out_width}x{spec.out_channels}, kernel {kh}x{kw}, "
        f"strides {geometry.strides}, dilation {geometry.dilation_rate}, padding "
        f"{geometry.padding} (pads t/b/l/r {geometry.pads}), depth_multiplier "
        f"{geometry.depth_multiplier}, bias {geometry.use_bias}, activation "
        f"{geometry.activation}",
        *extra,
        f"  formats: {', '.join(f'{k} {v}' for k, v in roles.items())}",
        f"  lanes P={engine.lanes} in, {engine.out_lanes} out; weights {engine.weights}; "
        f"latency {engine.latency} cycles from window to output",
        f"  reuse R={engine.reuse}: one input beat every {engine.reuse} cycle(s), "
        f"{multipliers} multipliers",
        "  ports: clk, rst (active-high, synchronous); s_axis_* in, m_axis_* out "
        "(AXI4-Stream video: tuser = start of frame, tlast = end of line)"
        + ("; w_axis_* weight loads" if engine.weights == "port" else "")
        + "; error (sticky)",
        "  lane 0 in the least significant bits; one beat = one pixel's channel group.",
    ]
    return "".join(f"// {line}\n" for line in lines)


def without_array_aliases(rtlil_text):
    """``rtlil_text`` without the wires Amaranth adds as aliases of array elements, named
    ``kernel[0]``, ``kernel[0][1]``...: yosys' ABC names the bits of a wire ``kernel`` the
    same way, and yosys 0.70 fails an internal assertion on the collision in some netlists
    (``synth.PREPARE`` hides them where yosys synthesizes our RTLIL; this keeps them out of
    the Verilog users synthesize).  Their attributes and connections go with them."""
    kept, attributes = [], []
    for line in rtlil_text.splitlines():
        words = line.split()
        if words[:1] == ["attribute"]:
            attributes.append(line)
            continue
        alias = ((words[:1] == ["wire"] and words[-1].endswith("]"))
                 or (words[:1] == ["connect"] and words[1].endswith("]")))
        if not alias:
            kept += attributes + [line]
        attributes = []
    return "\n".join(kept + attributes) + "\n"


#: Waived too when the engine instantiates a target's DSP cells: it leaves the cell outputs
#: it does not use (cascade, second product) unconnected.
TARGET_WAIVERS = {"PINMISSING": "DSP block outputs the engine does not use are left open"}


def lint_pragmas(engine, text):
    """``text`` between Verilator lint pragmas that waive ``lint.WAIVERS`` (and
    ``TARGET_WAIVERS`` when ``engine`` instantiates DSP blocks).

    ``lint_save``/``lint_restore`` keep the waivers to this file's modules, so a user's
    ``verilator --lint-only`` (default warnings or ``-Wall``) and cocotb's Verilator build
    accept the file without flags while the user's own files stay fully checked."""
    waivers = dict(WAIVERS, **(TARGET_WAIVERS if getattr(engine, "target", None) else {}))
    lines = ["/* verilator lint_save */"]
    lines += [f"/* verilator lint_off {name} */" for name in waivers]
    return "\n".join(lines) + "\n" + text + "/* verilator lint_restore */\n"


def engine_verilog(engine, *, top=DEFAULT_TOP, kind=None):
    """Verilog text of ``engine`` with top module ``top``.

    Like ``amaranth.back.verilog.convert`` but with the decision trees lowered to
    multiplexers (``proc`` without ``-nomux``): the combinational logic becomes continuous
    assignments, so it holds defined values from time 0 in every simulator.  Kept as
    ``always @*`` blocks, it relies on declaration initializers raising an event at time 0,
    which SystemVerilog semantics (e.g. ``iverilog -g2012``) do not do.  The aliases
    Amaranth adds for array elements are left out (``without_array_aliases``).  Verilator
    lint pragmas (``lint_pragmas``) enclose the modules.  ``kind`` names the layer's kind in
    the header comment (default: from the engine).
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", top):
        raise ValueError(f"top module name {top!r} is not a Verilog identifier")
    rtlil_text = rtlil.convert(engine, name=top, emit_src=False)
    script = "\n".join([f"read_rtlil <<rtlil\n{without_array_aliases(rtlil_text)}\nrtlil",
                        "proc -norom", "memory_collect", "write_verilog -norename"])
    return _header(engine, top, kind) + lint_pragmas(engine, run_yosys(script))
