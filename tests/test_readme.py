"""Every ``dwconv`` command shown in the README runs, so the manual cannot drift.

The commands are taken from the README's shell blocks, in order, and run in one temporary
folder that holds what they start from: ``model.keras`` (the seed layer, as ``make demo``
builds it) and ``x.npy`` (two random input frames).  A command whose line ends in a
``# run by make ...`` comment takes minutes (synthesis, bitstreams, the full demo); it is
parsed with the real argument parser here and run by the make target it names.  Icarus is
optional: without it the ``--sim icarus`` commands are only parsed, and the test reports a
skip after running the others.
"""

import pathlib
import re
import shlex
import shutil

import numpy as np
import pytest

from dwconv import cli
from dwconv.sim.demo import seed_keras_model
from shared_build import cache_home

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SHELL_BLOCK = re.compile(r"^```(?:sh|shell|bash|console)\n(.*?)^```", re.S | re.M)
SLOW_MARKER = re.compile(r"#\s*run by (make \w+)")


def readme_commands():
    """(argv, marker or None) of each ``dwconv`` line in the README's shell blocks."""
    commands = []
    for block in SHELL_BLOCK.findall(README.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if not line.startswith("dwconv "):
                continue
            marker = SLOW_MARKER.search(line)
            argv = shlex.split(line, comments=True)
            commands.append((argv[1:], marker.group(1) if marker else None))
    return commands


def test_readme_has_commands():
    commands = readme_commands()
    shown = {argv[0] for argv, _ in commands}
    assert set(cli.COMMANDS) <= shown, f"commands missing from the README: " \
                                       f"{sorted(set(cli.COMMANDS) - shown)}"


def test_readme_commands_run(tmp_path, monkeypatch, capsys):
    import keras

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home()))
    seed_keras_model(keras).save("model.keras")
    np.save("x.npy", np.random.default_rng(5).normal(0, 1, (2, 16, 12, 6)).astype(np.float32))
    no_icarus = shutil.which("iverilog") is None
    skipped = []
    for argv, marker in readme_commands():
        needs_icarus = any(arg.endswith("icarus") for arg in argv)
        if marker or (needs_icarus and no_icarus):
            args = cli.build_parser().parse_args(argv)
            assert args.run is cli.COMMANDS[argv[0]].run, argv
            if not marker:
                skipped.append(shlex.join(argv))
            continue
        code = cli.main(argv)
        output = capsys.readouterr()
        assert code == 0, f"dwconv {shlex.join(argv)} exited {code}: {output.err}"
    if skipped:
        pytest.skip(f"Icarus Verilog (iverilog) is not installed: not run: {'; '.join(skipped)}")


PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_readme_python_runs(tmp_path, monkeypatch):
    """The README's Python blocks, in order, in one namespace, on the same files as the
    commands: the API section's assertions (0 mismatches, the core equal to predict) hold."""
    import keras

    monkeypatch.chdir(tmp_path)
    seed_keras_model(keras).save("model.keras")
    np.save("x.npy", np.random.default_rng(5).normal(0, 1, (2, 16, 12, 6)).astype(np.float32))
    blocks = PYTHON_BLOCK.findall(README.read_text())
    assert len(blocks) >= 2
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["r"].mismatches == 0
