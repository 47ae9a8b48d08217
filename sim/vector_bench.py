"""Runs our plain Verilog testbench (tb_vectors.v) on a vectors folder under Icarus.

Proof that the ``$readmemh`` files ``dwconv vectors`` writes drive a user's own testbench:
no cocotb, no Python in the loop, just iverilog and vvp.
"""

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..flows.tools import find_tool, run_tool
from .vectors import VECTORS_JSON

__all__ = ["TESTBENCH", "VectorBenchResult", "testbench_parameters", "run_vector_testbench",
           "run_icarus"]

TESTBENCH = "tb_vectors.v"


@dataclass
class VectorBenchResult:
    """What the testbench printed.

    Members
    -------
    passed : bool
        It printed PASS.
    log : str
        Everything iverilog and vvp printed.
    """

    passed: bool
    log: str


def testbench_parameters(description, *, max_cycles=None):
    """tb_vectors parameters from a vectors.json ``description``."""
    inp, out = description["input"], description["output"]
    in_row = inp["shape"][2] * inp["shape"][3] // inp["lanes"]
    out_row = out["shape"][2] * out["shape"][3] // out["lanes"]
    if max_cycles is None:
        # the testbench pauses about one cycle in five: four times the beats is plenty
        max_cycles = 4 * (inp["beats"] + out["beats"]) + 10000
    return {
        "IN_BITS": inp["beat_bits"], "OUT_BITS": out["beat_bits"],
        "IN_BEATS": inp["beats"], "OUT_BEATS": out["beats"],
        "IN_ROW_BEATS": in_row, "IN_FRAME_BEATS": inp["beats_per_frame"],
        "OUT_ROW_BEATS": out_row, "OUT_FRAME_BEATS": out["beats_per_frame"],
        "WEIGHT_BITS": description["weights"]["width"],
        "WEIGHT_WORDS": description["weights"]["words"],
        "MAX_CYCLES": max_cycles,
    }


def run_vector_testbench(folder, verilog_file, work_dir, *, top="dwconv", weight_port=False,
                         expected_hex=None):
    """Compile tb_vectors.v with ``verilog_file`` and run it on the vectors in ``folder``.

    ``expected_hex`` replaces the folder's output.hex (to check that a wrong value fails).
    """
    folder = Path(folder).resolve()
    description = json.loads((folder / VECTORS_JSON).read_text())
    options = [f"-DDWCONV_TOP={top}", *(["-DWEIGHT_PORT"] if weight_port else [])]
    options += [f"-Ptb_vectors.{name}={value}"
                for name, value in testbench_parameters(description).items()]
    plusargs = [f"+input={folder / 'input.hex'}",
                f"+output={expected_hex or folder / 'output.hex'}",
                f"+weights={folder / 'weights.hex'}"]
    return run_icarus(TESTBENCH, options, [verilog_file], work_dir, plusargs)


def run_icarus(testbench, options, sources, work_dir, plusargs=()):
    """Compile our testbench ``testbench`` (a file in dwconv.sim, its module named after
    it) with ``sources`` and ``options`` (-D, -P), run it in ``work_dir``; it passed if the
    last line starting with PASS or FAIL says PASS."""
    advice = "install Icarus Verilog (e.g. apt-get install iverilog)"
    iverilog, vvp = find_tool("iverilog", advice), find_tool("vvp", advice)
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    top = testbench.removesuffix(".v")
    binary = work_dir / f"{top}.vvp"
    command = [iverilog, "-g2012", "-s", top, "-o", str(binary), *options]
    with resources.as_file(resources.files("dwconv.sim") / testbench) as testbench_path:
        compiled = run_tool([*command, testbench_path, *(Path(p).resolve() for p in sources)],
                            cwd=work_dir, capture=True, check=False)
    log = compiled.output
    if compiled.returncode != 0:
        return VectorBenchResult(False, log)
    ran = run_tool([vvp, "-n", binary, *plusargs], cwd=work_dir, capture=True, check=False)
    log += ran.output
    verdicts = [line for line in ran.output.splitlines() if line.startswith(("PASS", "FAIL"))]
    return VectorBenchResult(ran.returncode == 0 and verdicts[-1:] != [] and
                             verdicts[-1].startswith("PASS"), log)
