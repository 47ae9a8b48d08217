"""Every ``dwconv`` command and Python block in README.md and docs/*.md runs, so the manual
cannot drift.

Each page's shell blocks are taken in order and their ``dwconv`` lines run in one temporary
folder per page, which holds what they start from: ``model.keras`` (the seed layer, as
``make demo`` builds it) and ``x.npy`` (two random input frames), ``separable.keras`` (a
small SeparableConv2D) and ``xs.npy``, ``model.tflite`` (an int8 fixture) and
``x_int8.npy``.  A command whose line ends in a ``# run by make ...`` comment takes minutes
(synthesis, bitstreams, the full demo); it is parsed with the real argument parser here
and run by the make target it names.  Icarus is optional: without it the ``--sim icarus``
commands are only parsed, and the test reports a skip after running the others.  A page's
Python blocks run in order in one namespace, in such a folder.  The seed layer's Verilator
build is the one the demo and bench tests use (``shared_build``), so it is made once.
"""

import argparse
import json
import pathlib
import re
import shlex
import shutil

import numpy as np
import pytest

from dwconv import cli
from dwconv.demo import seed_keras_model
from support.shared_build import cache_home

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
COMMAND_REFERENCE = ROOT / "docs" / "commands.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCK = re.compile(r"^```(?:sh|shell|bash|console)\n(.*?)^```", re.S | re.M)
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SLOW_MARKER = re.compile(r"#\s*run by (make \w+)")
README_MAX_LINES = 300

#: Figures a page states from the reports its own commands write: (report, field) pairs whose
#: value must appear in the page's text.
STATED = {"docs/architecture.md": [("fold.json", "cycles"), ("full.json", "cycles"),
                                   ("fold.json", "ideal_cycles")]}


def page_commands(page):
    """(argv, marker or None) of each ``dwconv`` line in the page's shell blocks."""
    commands = []
    for block in SHELL_BLOCK.findall(page.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if not line.startswith("dwconv "):
                continue
            marker = SLOW_MARKER.search(line)
            argv = shlex.split(line, comments=True)
            commands.append((argv[1:], marker.group(1) if marker else None))
    return commands


def _name(page):
    return str(page.relative_to(ROOT))



@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder with the files the pages' commands and blocks start from."""
    import keras

    folder = tmp_path_factory.mktemp("docs-inputs")
    rng = np.random.default_rng(5)
    seed_keras_model(keras).save(folder / "model.keras")
    np.save(folder / "x.npy", rng.normal(0, 1, (2, 16, 12, 6)).astype(np.float32))
    separable = keras.Sequential([
        keras.Input((8, 8, 4)),
        keras.layers.SeparableConv2D(6, 3, padding="same", name="sep")])
    separable.set_weights([w * 0.5 for w in map(np.asarray, separable.get_weights())])
    separable.save(folder / "separable.keras")
    np.save(folder / "xs.npy", rng.uniform(-2, 2, (2, 8, 8, 4)).astype(np.float32))
    fixture = ROOT / "tests" / "data" / "tflite" / "dw3x3_same"
    shutil.copy(fixture.with_suffix(".tflite"), folder / "model.tflite")
    np.save(folder / "x_int8.npy", np.load(fixture.with_suffix(".npz"))["x"][:1])
    return folder


def _workdir(inputs, tmp_path, monkeypatch):
    for path in inputs.iterdir():
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home()))


@pytest.mark.parametrize("page", [p for p in PAGES if page_commands(p)], ids=_name)
def test_page_commands_run(page, inputs, tmp_path, monkeypatch, capsys):
    _workdir(inputs, tmp_path, monkeypatch)
    no_icarus = shutil.which("iverilog") is None
    skipped = []
    for argv, marker in page_commands(page):
        needs_icarus = any(arg.endswith("icarus") for arg in argv)
        if marker or (needs_icarus and no_icarus):
            args = cli.build_parser().parse_args(argv)
            assert args.run is cli.COMMANDS[argv[0]].run, argv
            if not marker:
                skipped.append(shlex.join(argv))
            continue
        code = cli.main(argv)
        output = capsys.readouterr()
        assert code == 0, f"{_name(page)}: dwconv {shlex.join(argv)} exited {code}: {output.err}"
    for report, field in STATED.get(_name(page), []):
        value = json.loads(pathlib.Path(report).read_text())[field]
        assert re.search(rf"\b{value}\b", page.read_text()), \
            f"{_name(page)} does not state {report}'s {field}, {value}"
    if skipped:
        pytest.skip(f"Icarus Verilog (iverilog) is not installed: not run: {'; '.join(skipped)}")


@pytest.mark.parametrize("page", [p for p in PAGES if PYTHON_BLOCK.findall(p.read_text())],
                         ids=_name)
def test_page_python_runs(page, inputs, tmp_path, monkeypatch):
    """A page's Python blocks, in order, in one namespace, on the same files as the
    commands; their own assertions (0 mismatches, the core equal to predict, ...) hold."""
    _workdir(inputs, tmp_path, monkeypatch)
    namespace = {}
    for block in PYTHON_BLOCK.findall(page.read_text()):
        exec(compile(block, str(page), "exec"), namespace)


def test_readme_python_blocks_assert():
    """The README's API and core blocks check their results themselves."""
    blocks = PYTHON_BLOCK.findall(README.read_text())
    assert len(blocks) >= 2
    assert "r.mismatches == 0" in blocks[0] and "np.array_equal(np.array(out)" in blocks[1]


def test_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"


#: Sections that quote `make bench`: every measured number in them must be one BENCH.md gives.
BENCH_QUOTES = [("README.md", "Results at a glance"), ("docs/simulation.md", "Speeds"),
                ("docs/synthesis.md", "Results at a glance"), ("docs/peers.md", "Cycles per frame")]


@pytest.mark.parametrize("page, heading", BENCH_QUOTES, ids=lambda v: v)
def test_quoted_figures_come_from_the_bench(page, heading):
    section = (ROOT / page).read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    bench = (ROOT / "BENCH.md").read_text()
    numbers = re.findall(r"\d[\d,]*\.\d+|\d{1,3}(?:,\d{3})+", section)
    assert len(numbers) >= 3, numbers
    quoted = lambda n: re.search(rf"(?<![\d.,]){re.escape(n)}(?!\d|\.\d|e[-+]?\d)", bench)
    missing = [n for n in numbers if not quoted(n)]
    assert not missing, f"{page} quotes figures that are not in BENCH.md: {missing}"


def test_every_command_is_shown():
    reference = {argv[0] for argv, _ in page_commands(COMMAND_REFERENCE)}
    assert set(cli.COMMANDS) <= reference, \
        f"commands without an example in docs/commands.md: {sorted(set(cli.COMMANDS) - reference)}"
    readme = README.read_text()
    missing = [name for name in cli.COMMANDS if f"`dwconv {name}`" not in readme]
    assert not missing, f"commands missing from the README's table: {missing}"


def _options(name):
    """The long options of a command, as its ``--help`` lists them."""
    parser = argparse.ArgumentParser()
    cli.COMMANDS[name].add_arguments(parser)
    listed = re.findall(r"^ {2}(?:-\w[^,\n]*, )?(--[a-z][\w-]*)", parser.format_help(), re.M)
    return set(listed) - {"--help"}


def test_every_option_is_in_the_command_reference():
    parts = re.split(r"^## (.*)$", COMMAND_REFERENCE.read_text(), flags=re.M)
    sections = dict(zip(parts[1::2], parts[2::2]))
    shared = parts[0] + sections.get("Arguments every command shares", "")
    missing = [f"{name} {option}" for name in cli.COMMANDS for option in sorted(_options(name))
               if not re.search(rf"`{option}(?![\w-])", sections.get(name, "") + shared)]
    assert not missing, f"options not in docs/commands.md: {missing}"


LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(page):
    """GitHub's heading anchors of a markdown page."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.*)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_links_resolve(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"\w+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(target)
    assert not broken, f"{_name(page)}: broken links {broken}"
