"""The benchmark's progress output (``bench._Log`` on ``dwconv.progress``): a line per step
and the notes when not on a terminal, nothing at all with ``quiet``."""

import io

from dwconv.campaigns.bench import _Log


def _run_phases(log):
    log("seed layer")
    with log.phase(2, "bench layers (seed)"):
        log("  seed_dw: Verilator")
        log.step("seed_dw")
        log.step("other")
    log("done")


def test_lines_when_not_on_a_terminal():
    stream = io.StringIO()
    _run_phases(_Log(stream))
    lines = [line.split("] ", 1)[-1] if line.startswith("dwconv: [") else line
             for line in stream.getvalue().splitlines()]
    assert lines == ["seed layer", "  seed_dw: Verilator",
                     "dwconv: bench layers (seed): [1/2] seed_dw",
                     "dwconv: bench layers (seed): [2/2] other", "done"]


def test_nothing_when_quiet():
    stream = io.StringIO()
    _run_phases(_Log(stream, quiet=True))
    assert stream.getvalue() == ""
