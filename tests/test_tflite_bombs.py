""".tflite files built to exhaust memory or time are refused from their headers, quickly.

Each bomb is a small model (or a sparse file) whose header declares what it cannot hold: a
file larger than the model-size limit, a kernel whose shape implies gigabytes in a buffer of
bytes, an input shape whose size overflows 64 bits, a tensor pointing at a buffer that does
not exist, a buffer whose data runs past the end of the file, an operator list longer than
the file.  Each runs ``dwconv export`` in a child process under ``resource.setrlimit`` (2 GB
of address space, 60 s of CPU): exit 2 with one line saying what is wrong, nothing written.
"""

import os
import pathlib
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import tflite

from dwconv.models import limits
from dwconv.models.keras_io import ModelFileError
from dwconv.models.tflite_io import load_tflite_layer

DATA = pathlib.Path(__file__).parent / "data" / "tflite"
sys.path.insert(0, str(DATA))
import builder  # noqa: E402

sys.path.remove(str(DATA))

MEMORY_LIMIT = 2 << 30
CPU_SECONDS = 60
INT32_MAX = (1 << 31) - 1

_CHILD = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))
resource.setrlimit(resource.RLIMIT_CPU, ({CPU_SECONDS}, {CPU_SECONDS}))
from dwconv.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _graph(**overrides):
    rng = np.random.default_rng(1)
    kernel = rng.integers(-127, 128, (3, 3, 4, 1)).astype(np.int8)
    args = dict(kernel=kernel, bias=np.zeros(4, np.int32),
                weight_scales=np.full(4, 0.01, np.float32), input_shape=(5, 5, 4),
                in_scale=0.02, in_zp=0, out_scale=0.05, out_zp=0)
    args.update(overrides)
    return builder.depthwise_graph(**args)


def _root(blob):
    model = tflite.Model.GetRootAsModel(blob, 0)
    return model, model.Subgraphs(0)


def _kernel_tensor(graph):
    """The flatbuffer index of the depthwise op's weights tensor."""
    return int(graph.Operators(0).InputsAsNumpy()[1])


def _patch_u32(blob, position, value):
    blob = bytearray(blob)
    struct.pack_into("<I", blob, position, value)
    return bytes(blob)


def _bomb_huge_kernel_shape():
    g = _graph()
    g.tensors[1].shape = (1, 3, 3, INT32_MAX)      # 19 GB declared, 36 bytes stored
    return builder.write(g), ["holds 36 bytes, not the 19,327,352,823 values", "[1, 3, 3,"]


def _bomb_input_shape_overflows_int64():
    g = _graph()
    # 2**64 values and more, the output to match: int64 products wrap to a small number
    g.tensors[0].shape = g.tensors[-1].shape = (1, INT32_MAX, INT32_MAX, 4)
    return builder.write(g), ["its input shape", "more than the 268,435,456 supported"]


def _bomb_buffer_index_outside():
    blob = builder.write(_graph())
    _, graph = _root(blob)
    tensor = graph.Tensors(_kernel_tensor(graph))
    field = tensor._tab.Offset(8)                       # Tensor.buffer
    return _patch_u32(blob, tensor._tab.Pos + field, 1_000_000), \
        ["refers to buffer 1000000, but the file has"]


def _bomb_buffer_past_the_end():
    blob = builder.write(_graph())
    model, graph = _root(blob)
    buffer = model.Buffers(graph.Tensors(_kernel_tensor(graph)).Buffer())
    start = buffer._tab.Vector(buffer._tab.Offset(4))   # Buffer.data; its length before it
    return _patch_u32(blob, start - 4, 3_000_000_000), \
        ["declares 3,000,000,000 bytes", "past the end of the file"]


def _bomb_operator_count():
    blob = builder.write(_graph())
    _, graph = _root(blob)
    start = graph._tab.Vector(graph._tab.Offset(10))    # SubGraph.operators
    return _patch_u32(blob, start - 4, INT32_MAX), ["declares 2,147,483,647 operators"]


BOMBS = {"kernel shape": _bomb_huge_kernel_shape,
         "input shape": _bomb_input_shape_overflows_int64,
         "buffer index": _bomb_buffer_index_outside,
         "buffer data": _bomb_buffer_past_the_end,
         "operator count": _bomb_operator_count}


def _run_limited(args, cwd, env=None):
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True,
                         text=True, cwd=cwd, timeout=CPU_SECONDS * 3,
                         env=dict(os.environ, **(env or {})))
    return run, time.perf_counter() - started


def _refused(path, tmp_path, fragments, env=None):
    out = tmp_path / "out"
    run, seconds = _run_limited(["export", str(path), "-o", str(out)], tmp_path, env)
    lines = run.stderr.splitlines()
    assert run.returncode == 2, (run.returncode, run.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("dwconv: error: "), run.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in run.stderr and "MemoryError" not in run.stderr
    assert seconds < 30, seconds
    assert not out.exists(), "left output behind"
    return lines[0]


@pytest.mark.parametrize("name", BOMBS)
def test_bomb_is_refused_under_a_memory_limit(name, tmp_path):
    blob, fragments = BOMBS[name]()
    path = tmp_path / "m.tflite"
    path.write_bytes(blob)
    assert len(blob) < 4096
    print(f"{name}: {_refused(path, tmp_path, fragments)}")


def test_file_over_the_limit_is_refused_before_it_is_read(tmp_path):
    """A 3 GB file (sparse: a small model, then a hole) is refused from its size."""
    path = tmp_path / "big.tflite"
    path.write_bytes(builder.write(_graph()))
    os.truncate(path, 3 * 10 ** 9)
    line = _refused(path, tmp_path, ["big.tflite holds 3,000,000,000 bytes",
                                     "over the limit of 1,073,741,824 bytes",
                                     f"{limits.MODEL_BYTES}=BYTES"])
    print(line)


def test_raising_the_limit_lets_the_file_through(tmp_path, monkeypatch):
    path = DATA / "dw3x3_same.tflite"
    size = path.stat().st_size
    monkeypatch.setenv(limits.MODEL_BYTES, str(size - 1))
    with pytest.raises(ModelFileError, match=f"holds {size:,} bytes .*over the limit of "
                                             f"{size - 1:,} bytes .*{limits.MODEL_BYTES}"):
        load_tflite_layer(path)
    monkeypatch.setenv(limits.MODEL_BYTES, str(size))
    assert load_tflite_layer(path).spec.input_shape == (8, 8, 8)


def test_negative_and_zero_dimensions_are_refused(tmp_path):
    for shape in ((1, 3, 3, -4), (1, 0, 3, 4)):
        g = _graph()
        g.tensors[1].shape = shape
        path = tmp_path / "m.tflite"
        path.write_bytes(builder.write(g))
        with pytest.raises(ModelFileError, match=r"only static shapes of positive sizes"):
            load_tflite_layer(path)


def test_the_childs_memory_limit_is_real(tmp_path):
    """What the bombs run under: 3 GB cannot be had there (reading the sparse file whole
    would fail)."""
    limits_only = _CHILD.split("from dwconv")[0]
    run = subprocess.run([sys.executable, "-c", limits_only + "bytearray(3 << 30)\n"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert run.returncode != 0 and "MemoryError" in run.stderr, run.stderr
