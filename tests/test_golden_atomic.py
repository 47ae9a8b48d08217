"""All-or-nothing outputs get ordinary permissions: what open() gives a file (0666 & ~umask,
0644 under umask 022) and mkdir a folder, never mkstemp's private 0600."""

import contextlib
import os
import stat

import numpy as np
import pytest

from dwconv.cli import main
from dwconv.models.atomic import atomic_file, atomic_folder
from dwconv.models.export import export_layer
from dwconv.golden.formats import LayerFormats
from dwconv.golden.layer import Layer
from dwconv.golden.spec import LayerSpec


@contextlib.contextmanager
def _umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_file_mode_follows_umask(tmp_path, mask, expected):
    with _umask(mask):
        with atomic_file(tmp_path / "out.bin") as file:
            file.write(b"x")
        # what a plain open() makes under the same umask
        (tmp_path / "plain.bin").write_bytes(b"x")
    assert _mode(tmp_path / "out.bin") == expected == _mode(tmp_path / "plain.bin")


def test_replaced_file_gets_ordinary_mode(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    target.chmod(0o600)
    with _umask(0o022):
        with atomic_file(target) as file:
            file.write(b"new")
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o644


def test_folder_and_its_files(tmp_path):
    with _umask(0o022):
        with atomic_folder(tmp_path / "dir", "marker") as temp:
            (temp / "marker").write_text("x")
    assert _mode(tmp_path / "dir") == 0o755
    assert _mode(tmp_path / "dir" / "marker") == 0o644


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "out.bin") as file:
        file.write(b"half")
        raise RuntimeError("midway")
    assert list(tmp_path.iterdir()) == []


def test_cli_outputs_are_0644(tmp_path):
    """`golden -o Y.npy` and `--report`-style single files written by the command line."""
    spec = LayerSpec(input_shape=(4, 4, 2), kernel_size=(3, 3), name="dw")
    rng = np.random.default_rng(0)
    layer = Layer(spec, rng.normal(size=spec.kernel_shape).astype(np.float32),
                  rng.normal(size=spec.out_channels).astype(np.float32))
    with _umask(0o022):
        export_layer(tmp_path / "layer", layer, LayerFormats.from_strings())
        np.save(tmp_path / "x.npy", rng.normal(size=(1, 4, 4, 2)))
        assert main(["golden", str(tmp_path / "layer"), "-i", str(tmp_path / "x.npy"),
                     "-o", str(tmp_path / "y.npy")]) == 0
    assert _mode(tmp_path / "y.npy") == 0o644
    assert _mode(tmp_path / "layer") == 0o755
    assert _mode(tmp_path / "layer" / "weights.npz") == 0o644
