"""Model files built to exhaust memory are refused from their headers, quickly.

Each bomb is small on disk and would be gigabytes once read: a .keras whose config.json is
valid JSON followed by 3 GB of spaces (deflated), the same with a central directory that
lies about the size, a deflated 3 GB model.weights.h5, an HDF5 gzip-filtered dataset of a
huge declared shape, a dataset declaring far more than the file holds, npz members of the
same kinds, and an input .npy whose header declares 80 GB.  Each runs ``dwconv`` in a child
process under ``resource.setrlimit`` (2 GB of address space, 60 s of CPU): exit 2 with one
line naming the member, its size, the limit and the variable that raises it.
"""

import io
import json
import os
import struct
import subprocess
import sys
import time
import zipfile
import zlib

import h5py
import numpy as np
import pytest

from dwconv.cli import main
from dwconv.models import limits
from dwconv.models.export import export_layer, read_export
from dwconv.models.keras_io import ModelFileError, load_model_layer
from dwconv.golden.layer import Layer
from dwconv.golden.spec import LayerSpec

MEMORY_LIMIT = 2 << 30
CPU_SECONDS = 60
GB3 = 3 * 10 ** 9
SPEC = LayerSpec(input_shape=(4, 5, 2), kernel_size=3, padding="same", name="dw")
GOOD_WEIGHTS = [np.full((3, 3, 2, 1), 0.25, np.float32), np.zeros(2, np.float32)]


def _dw_config(channels=2, multiplier=1):
    return {"class_name": "DepthwiseConv2D",
            "config": {"name": "dw", "kernel_size": [3, 3], "strides": [1, 1],
                       "padding": "same", "depth_multiplier": multiplier,
                       "dilation_rate": [1, 1], "activation": "linear", "use_bias": True,
                       "data_format": "channels_last"},
            "build_config": {"input_shape": [None, 4, 5, channels]}}


def _config_bytes(channels=2, multiplier=1):
    return json.dumps({"class_name": "Sequential",
                       "config": {"name": "s", "layers": [_dw_config(channels, multiplier)]}
                       }).encode()


# ---------------------------------------------------------------------------------------------
# Writing bombs without ever holding their content: a zip written by hand, its deflate
# stream made of one compressed piece repeated (after a full flush the compressor starts
# afresh, so the same input gives the same bytes), the CRC computed piece by piece.

class _Member:
    def __init__(self, name, pieces, size, crc, method=zipfile.ZIP_DEFLATED,
                 declared_size=None):
        self.name, self.pieces, self.method = name.encode(), pieces, method
        self.size, self.crc = size, crc
        self.declared = size if declared_size is None else declared_size
        self.compressed = sum(len(piece) * times for piece, times in pieces)


def _stored(name, data):
    return _Member(name, [(data, 1)], len(data), zlib.crc32(data), method=zipfile.ZIP_STORED)


def _deflated_repeat(name, prefix, fill, times, **options):
    """``prefix`` then ``fill`` ``times`` times, deflated; never built in memory."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH)
    body = compressor.compress(fill) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(fill) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert again == body            # the repetition is exact
    tail = compressor.flush(zlib.Z_FINISH)
    crc = zlib.crc32(prefix)
    for _ in range(times):
        crc = zlib.crc32(fill, crc)
    return _Member(name, [(head, 1), (body, times), (tail, 1)],
                   len(prefix) + len(fill) * times, crc, **options)


def _write_zip(path, members):
    """A zip of ``members`` (no ZIP64: every size under 4 GiB)."""
    offsets = []
    with open(path, "wb") as out:
        for member in members:
            offsets.append(out.tell())
            out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, member.method, 0, 0x21,
                                  member.crc, member.compressed, member.declared,
                                  len(member.name), 0) + member.name)
            for piece, times in member.pieces:
                for _ in range(times):
                    out.write(piece)
        start = out.tell()
        for member, offset in zip(members, offsets):
            out.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, member.method,
                                  0, 0x21, member.crc, member.compressed, member.declared,
                                  len(member.name), 0, 0, 0, 0, 0, offset) + member.name)
        size = out.tell() - start
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), size,
                              start, 0))


def _weights_h5(arrays=GOOD_WEIGHTS):
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        for i, array in enumerate(arrays):
            h5[f"layers/depthwise_conv2d/vars/{i}"] = array
    return buffer.getvalue()


def _huge_dataset_h5(h5, name, shape, *, gzip_chunks):
    """A float32 dataset of ``shape`` (chunks of 16M values along the last axis): with
    ``gzip_chunks`` every chunk is written, gzip-compressed zeros (one compressed chunk
    written over and over); without, no chunk is written at all (the fill value)."""
    chunk = (*shape[:-1], max(1, (16 << 20) // int(np.prod(shape[:-1]))))
    dataset = h5.create_dataset(name, shape=shape, dtype=np.float32, chunks=chunk,
                                compression="gzip" if gzip_chunks else None)
    if gzip_chunks:
        compressed = zlib.compress(bytes(int(np.prod(chunk)) * 4), 9)
        for start in range(0, shape[-1], chunk[-1]):
            dataset.id.write_direct_chunk((0,) * (len(shape) - 1) + (start,), compressed)
    return dataset


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bombs")
    made = {}
    config = _config_bytes()
    spaces = b" " * (1 << 20)
    times = -(-GB3 // len(spaces))

    # 1. config.json: valid JSON, then 3 GB of spaces (the 3 MB file)
    bomb = _deflated_repeat("config.json", config, spaces, times)
    _write_zip(root / "config_bomb.keras", [
        bomb, _stored("metadata.json", b"{}"), _stored("model.weights.h5", _weights_h5())])
    made["config.json deflate"] = (["export", str(root / "config_bomb.keras")],
                                   ["member config.json", limits.CONFIG_BYTES])
    # 2. the same, its central directory declaring 1 kB: the read stops where it said
    bomb.declared = 1000
    _write_zip(root / "config_lies.keras", [
        bomb, _stored("metadata.json", b"{}"), _stored("model.weights.h5", _weights_h5())])
    made["config.json declared small"] = (["export", str(root / "config_lies.keras")],
                                          ["damaged"])
    # 3. model.weights.h5: 3 GB of zeros deflated
    _write_zip(root / "weights_bomb.keras", [
        _stored("config.json", config), _stored("metadata.json", b"{}"),
        _deflated_repeat("model.weights.h5", b"\x89HDF\r\n\x1a\n", bytes(1 << 20), times)])
    made["model.weights.h5 deflate"] = (["export", str(root / "weights_bomb.keras")],
                                        ["member model.weights.h5", limits.MODEL_BYTES])

    # 4. legacy .h5, a gzip-filtered kernel of 4.8 GB for a layer whose configuration
    #    agrees (C=32768, M=4096), so only the size limit stands in the way
    big_config = _config_bytes(channels=32768, multiplier=4096)
    with h5py.File(root / "gzip_bomb.h5", "w") as h5:
        h5.attrs["model_config"] = big_config.decode()
        group = h5.create_group("model_weights/dw/dw")
        _huge_dataset_h5(group, "kernel", (3, 3, 32768, 4096), gzip_chunks=True)
        group["bias"] = np.zeros(8, np.float32)
        h5["model_weights/dw"].attrs["weight_names"] = [b"dw/kernel", b"dw/bias"]
    made["HDF5 gzip dataset"] = (["export", str(root / "gzip_bomb.h5")],
                                 ["dataset /model_weights/dw/dw/kernel", limits.MODEL_BYTES])
    # 5. .keras whose kernel declares 14 GB and stores nothing (no chunk written)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        _huge_dataset_h5(h5, "layers/depthwise_conv2d/vars/0", (3, 3, 20000, 20000),
                         gzip_chunks=False)
        h5["layers/depthwise_conv2d/vars/1"] = np.zeros(2, np.float32)
    _write_zip(root / "sparse_bomb.keras", [
        _stored("config.json", config), _stored("metadata.json", b"{}"),
        _stored("model.weights.h5", buffer.getvalue())])
    made["HDF5 declared shape"] = (["export", str(root / "sparse_bomb.keras")],
                                   ["vars/0", "(3, 3, 20000, 20000)", limits.MODEL_BYTES])

    # 6. an export folder whose weights.npz member kernel.npy inflates to 3.6 GB
    export_layer(root / "npz_bomb", Layer(SPEC, *GOOD_WEIGHTS))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (3, 3, 10000, 10000)})
    bias = io.BytesIO()
    np.save(bias, np.zeros(2, np.float32))
    _write_zip(root / "npz_bomb" / "weights.npz", [
        _deflated_repeat("kernel.npy", header.getvalue(), bytes(1 << 20), 3400),
        _stored("bias.npy", bias.getvalue())])
    made["npz deflate"] = (["golden", str(root / "npz_bomb"), "-i", "{x}", "-o", "{y}"],
                           ["member kernel.npy", limits.MODEL_BYTES])
    # 7. weights.npz whose kernel.npy header declares 3.6 GB and holds 100 bytes
    export_layer(root / "npz_header", Layer(SPEC, *GOOD_WEIGHTS))
    with zipfile.ZipFile(root / "npz_header" / "weights.npz", "w") as archive:
        archive.writestr("kernel.npy", header.getvalue() + bytes(100))
        archive.writestr("bias.npy", bias.getvalue())
    made["npz declared shape"] = (["golden", str(root / "npz_header"), "-i", "{x}",
                                   "-o", "{y}"],
                                  ["member kernel.npy", "(3, 3, 10000, 10000)",
                                   limits.MODEL_BYTES])
    # 8. an input .npy whose header declares 80 GB
    export_layer(root / "good", Layer(SPEC, *GOOD_WEIGHTS))
    with open(root / "x_bomb.npy", "wb") as file:
        np.lib.format.write_array_header_1_0(file, {"descr": "<f8", "fortran_order": False,
                                                    "shape": (10 ** 4, 10 ** 3, 10 ** 3)})
        file.write(bytes(64))
    made["npy input declared shape"] = (["golden", str(root / "good"), "-i",
                                         str(root / "x_bomb.npy"), "-o", "{y}"],
                                        ["x_bomb.npy", limits.MODEL_BYTES])
    np.save(root / "x.npy", np.ones((1, 4, 5, 2)))
    return root, made


#: The child limits itself before it imports anything (a preexec_fn would make subprocess
#: fork the test process, which JAX, loaded by other tests, warns about).
_CHILD = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))
resource.setrlimit(resource.RLIMIT_CPU, ({CPU_SECONDS}, {CPU_SECONDS}))
from dwconv.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run_limited(args, cwd, env=None):
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True,
                         text=True, cwd=cwd, timeout=CPU_SECONDS * 3,
                         env=dict(os.environ, **(env or {})))
    return run, time.perf_counter() - started


BOMBS = ["config.json deflate", "config.json declared small", "model.weights.h5 deflate",
         "HDF5 gzip dataset", "HDF5 declared shape", "npz deflate", "npz declared shape",
         "npy input declared shape"]


@pytest.mark.parametrize("name", BOMBS)
def test_bomb_is_refused_quickly_under_a_memory_limit(bombs, name, tmp_path):
    root, made = bombs
    args, fragments = made[name]
    args = [a.format(x=root / "x.npy", y=tmp_path / "y.npy") for a in args]
    if args[0] == "export":
        args += ["-o", str(tmp_path / "out")]
    run, seconds = _run_limited(args, tmp_path)
    lines = run.stderr.splitlines()
    assert run.returncode == 2, (run.returncode, run.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("dwconv: error: "), run.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    print(f"{name}: {seconds:.1f} s: {lines[0]}")
    assert "Traceback" not in run.stderr and "MemoryError" not in run.stderr
    assert seconds < 30, seconds
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "left output behind"


def test_bomb_files_are_small(bombs):
    """They are bombs: a few MB on disk for GBs declared."""
    root, _ = bombs
    for path in root.glob("**/*"):
        if path.is_file():
            assert path.stat().st_size < 8 << 20, path


def test_deflate_bomb_content_is_what_it_says(bombs):
    """The config bomb is a real one: zipfile agrees on its size, and its first bytes are
    the configuration (so only the limit stops it)."""
    root, _ = bombs
    with zipfile.ZipFile(root / "config_bomb.keras") as archive:
        info = archive.getinfo("config.json")
        assert info.file_size > GB3
        with archive.open(info) as member:
            start = member.read(len(_config_bytes()) + 10)
    assert start == _config_bytes() + b" " * 10


def test_raising_the_limit_lets_a_large_member_through(tmp_path, monkeypatch):
    """The variable named in the message works: a 3 MB config.json passes at 4 MB, not at
    1 MB."""
    config = _config_bytes() + b" " * (3 << 20)
    _write_zip(tmp_path / "m.keras", [
        _deflated_repeat("config.json", config, b"", 0),
        _stored("metadata.json", b"{}"), _stored("model.weights.h5", _weights_h5())])
    monkeypatch.setenv(limits.CONFIG_BYTES, str(1 << 20))
    with pytest.raises(ModelFileError, match=f"{limits.CONFIG_BYTES}=BYTES"):
        load_model_layer(tmp_path / "m.keras")
    monkeypatch.setenv(limits.CONFIG_BYTES, str(4 << 20))
    layer, _ = load_model_layer(tmp_path / "m.keras")
    np.testing.assert_array_equal(layer.kernel, GOOD_WEIGHTS[0])


def test_bad_limit_value_is_a_clear_error(tmp_path, monkeypatch, capsys):
    export_layer(tmp_path / "good", Layer(SPEC, *GOOD_WEIGHTS))
    np.save(tmp_path / "x.npy", np.ones((1, 4, 5, 2)))
    monkeypatch.setenv(limits.MODEL_BYTES, "lots")
    assert main(["golden", str(tmp_path / "good"), "-i", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "y.npy")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"{limits.MODEL_BYTES}='lots' is not a number of bytes" in err[0]


def test_dataset_count_must_match_the_configuration(tmp_path):
    """Under the limit but not what the layer implies: refused before reading."""
    wrong = [np.zeros((3, 3, 2, 500), np.float32), np.zeros(2, np.float32)]
    _write_zip(tmp_path / "m.keras", [
        _stored("config.json", _config_bytes()), _stored("metadata.json", b"{}"),
        _stored("model.weights.h5", _weights_h5(wrong))])
    with pytest.raises(ModelFileError, match=r"\(3, 3, 2, 500\) \(9,000 values\) where the "
                                             r"layer's configuration implies 18 values"):
        load_model_layer(tmp_path / "m.keras")
    bias = [GOOD_WEIGHTS[0], np.zeros(7, np.float32)]
    _write_zip(tmp_path / "b.keras", [
        _stored("config.json", _config_bytes()), _stored("metadata.json", b"{}"),
        _stored("model.weights.h5", _weights_h5(bias))])
    with pytest.raises(ModelFileError, match="implies 2 values"):
        load_model_layer(tmp_path / "b.keras")


def test_npz_member_of_wrong_count_or_type(tmp_path):
    export_layer(tmp_path / "e", Layer(SPEC, *GOOD_WEIGHTS))
    np.savez(tmp_path / "e" / "weights.npz", kernel=np.zeros((3, 3, 2, 2), np.float32),
             bias=np.zeros(2, np.float32))
    with pytest.raises(ModelFileError, match="member kernel.npy .* implies 18 values"):
        read_export(tmp_path / "e")
    np.savez(tmp_path / "e" / "weights.npz", kernel=np.array(["a"] * 18).reshape(3, 3, 2, 1),
             bias=np.zeros(2, np.float32))
    with pytest.raises(ModelFileError, match="member kernel.npy holds <U1 values, not numbers"):
        read_export(tmp_path / "e")


def test_streaming_read_stops_at_the_limit(monkeypatch):
    """A member whose header says little but whose stream yields more stops one byte past
    the limit (zipfile also truncates at the declared size; this does not rely on it)."""
    class Stream(io.BytesIO):
        reads = 0

        def read(self, n=-1):
            Stream.reads += 1
            return b"x" * n

    class Archive:
        def getinfo(self, name):
            return zipfile.ZipInfo(name)         # file_size 0

        def open(self, info):
            return Stream()

    monkeypatch.setenv(limits.MODEL_BYTES, str(3 << 20))
    with pytest.raises(ModelFileError, match=r"member w holds more than 3,145,728 bytes"):
        limits.read_zip_member(Archive(), "w", "f.keras")
    assert Stream.reads == 4                     # 1 MiB pieces, the last one byte


def test_truncated_npy_input_is_refused_before_loading(tmp_path, capsys):
    export_layer(tmp_path / "good", Layer(SPEC, *GOOD_WEIGHTS))
    with open(tmp_path / "x.npy", "wb") as file:
        np.lib.format.write_array_header_1_0(file, {"descr": "<f8", "fortran_order": False,
                                                    "shape": (1000, 4, 5, 2)})
        file.write(bytes(800))
    assert main(["golden", str(tmp_path / "good"), "-i", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "y.npy")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "is truncated" in err[0] and "holds 800 bytes" in err[0], err


def test_only_the_chosen_layers_weights_are_read(tmp_path):
    """A second depthwise layer whose kernel declares 14 GB does not stop reading the first:
    weights are read for the chosen layer only (and picking the bomb is refused)."""
    second = _dw_config()
    second["config"]["name"] = "dw2"
    config = json.dumps({"class_name": "Sequential", "config": {
        "name": "s", "layers": [_dw_config(), second]}}).encode()
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        for i, array in enumerate(GOOD_WEIGHTS):
            h5[f"layers/depthwise_conv2d/vars/{i}"] = array
        _huge_dataset_h5(h5, "layers/depthwise_conv2d_1/vars/0", (3, 3, 20000, 20000),
                         gzip_chunks=False)
        h5["layers/depthwise_conv2d_1/vars/1"] = np.zeros(2, np.float32)
    _write_zip(tmp_path / "two.keras", [
        _stored("config.json", config), _stored("metadata.json", b"{}"),
        _stored("model.weights.h5", buffer.getvalue())])
    run, _ = _run_limited(["export", str(tmp_path / "two.keras"), "--layer", "dw",
                           "-o", str(tmp_path / "dw")], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    layer, _ = read_export(tmp_path / "dw")
    np.testing.assert_array_equal(layer.kernel, GOOD_WEIGHTS[0])
    run, _ = _run_limited(["export", str(tmp_path / "two.keras"), "--layer", "dw2",
                           "-o", str(tmp_path / "dw2")], tmp_path)
    assert run.returncode == 2 and "(3, 3, 20000, 20000)" in run.stderr, run.stderr[-3000:]
    assert not (tmp_path / "dw2").exists()


def test_layer_json_over_the_config_limit(tmp_path, monkeypatch, capsys):
    export_layer(tmp_path / "e", Layer(SPEC, *GOOD_WEIGHTS))
    path = tmp_path / "e" / "layer.json"
    path.write_text(path.read_text() + " " * 5000)
    monkeypatch.setenv(limits.CONFIG_BYTES, "4096")
    with pytest.raises(ModelFileError, match=r"layer.json holds [\d,]+ bytes .* over the limit "
                                             r"of 4,096 bytes.*DWCONV_MAX_CONFIG_BYTES=BYTES"):
        read_export(tmp_path / "e")
    monkeypatch.setenv(limits.CONFIG_BYTES, "65536")
    layer, _ = read_export(tmp_path / "e")
    np.testing.assert_array_equal(layer.kernel, GOOD_WEIGHTS[0])


def test_the_childs_memory_limit_is_real(tmp_path):
    """What the bombs run under: 3 GB cannot be had there."""
    limits_only = _CHILD.split("from dwconv")[0]
    run = subprocess.run([sys.executable, "-c", limits_only + "bytearray(3 << 30)\n"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert run.returncode != 0 and "MemoryError" in run.stderr, run.stderr
