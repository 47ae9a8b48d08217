"""Runs our plain Verilog testbench (tb_vectors.v) on a vectors folder under Icarus.

Proof that the ``$readmemh`` files ``dwconv vectors`` writes drive a user's own testbench:
no cocotb, no Python in the loop, just iverilog and vvp.
"""

import json
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

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
    iverilog = shutil.which("iverilog")
    if iverilog is None:
        raise FileNotFoundError("iverilog (Icarus Verilog) is not installed")
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    top = testbench.removesuffix(".v")
    binary = work_dir / f"{top}.vvp"
    command = [iverilog, "-g2012", "-s", top, "-o", str(binary), *options]
    with resources.as_file(resources.files("dwconv.sim") / testbench) as testbench_path:
        compiled = subprocess.run([*command, str(testbench_path), *map(str, sources)],
                                  capture_output=True, text=True, check=False)
    log = compiled.stdout + compiled.stderr
    if compiled.returncode != 0:
        return VectorBenchResult(False, log)
    ran = subprocess.run([shutil.which("vvp") or "vvp", "-n", str(binary), *plusargs],
                         capture_output=True, text=True, cwd=work_dir, check=False)
    log += ran.stdout + ran.stderr
    verdicts = [line for line in ran.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    return VectorBenchResult(ran.returncode == 0 and verdicts[-1:] != [] and
                             verdicts[-1].startswith("PASS"), log)
