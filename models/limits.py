"""Bounded reading of model files: sizes checked from headers before any data is read.

Model files come from model hubs, so a file must not be able to make the reader use memory
or time out of proportion to what it describes.  Every read of a model file goes through
here, and two limits hold:

``DWCONV_MAX_MODEL_BYTES`` (default 1 GiB)
    The most bytes any one array or archive member may hold once read: a ``.keras`` zip's
    ``model.weights.h5``, each HDF5 dataset (shape x item size, from its header), each
    member of an exported folder's ``weights.npz`` and an input ``.npy`` array (from their
    ``.npy`` headers); and a whole ``.tflite`` file (a flatbuffer is read whole), from its
    size on disk.
``DWCONV_MAX_CONFIG_BYTES`` (default 64 MiB)
    The most bytes of a configuration: a ``.keras`` zip's ``config.json``, an export's
    ``layer.json`` and ``layers.json``.  Real ones are kilobytes to a few megabytes.

A zip member is checked twice: its uncompressed size as the central directory declares it,
and while it is read, in pieces, stopping one byte past the limit (a header can lie).  An
HDF5 dataset's size comes from its dataspace and type before it is read (a gzip-filtered
dataset or one of chunks never written can declare far more than the file holds); where the
layer's configuration says how many values an array must hold (a depthwise kernel kh*kw*C*M,
its bias C*M), any other count is refused, also before reading.  An HDF5 attribute cannot be
filtered, so it holds no more than the file's own bytes.

Larger is a one-line error naming the file and member, its size, the limit and the
variable that raises it (``ModelFileError`` by default; callers can pass their own error
type).
"""

import os
import zipfile

import numpy as np

__all__ = ["MODEL_BYTES", "CONFIG_BYTES", "DEFAULT_MODEL_BYTES", "DEFAULT_CONFIG_BYTES",
           "limit", "read_zip_member", "read_dataset", "check_npz", "check_npy",
           "read_config_file", "read_model_file"]

MODEL_BYTES, CONFIG_BYTES = "DWCONV_MAX_MODEL_BYTES", "DWCONV_MAX_CONFIG_BYTES"
DEFAULT_MODEL_BYTES, DEFAULT_CONFIG_BYTES = 1 << 30, 64 << 20
_DEFAULTS = {MODEL_BYTES: DEFAULT_MODEL_BYTES, CONFIG_BYTES: DEFAULT_CONFIG_BYTES}
_CHUNK = 1 << 20
#: numeric kinds an array of a model may hold: bool, signed, unsigned, float
_NUMERIC = "biuf"


def _model_error():
    from .keras_io import ModelFileError     # keras_io reads through this module
    return ModelFileError


def limit(variable=MODEL_BYTES, error=None):
    """The limit in bytes that ``variable`` sets (its default when unset)."""
    text = os.environ.get(variable)
    if text is None or not text.strip():
        return _DEFAULTS[variable]
    try:
        value = int(text.strip().replace("_", ""))
    except ValueError:
        value = -1
    if value < 1:
        raise (error or _model_error())(
            f"{variable}={text!r} is not a number of bytes; set it to a positive integer "
            f"(default {_DEFAULTS[variable]})")
    return value


def _size(count):
    for unit, scale in (("GB", 10 ** 9), ("MB", 10 ** 6), ("kB", 10 ** 3)):
        if count >= scale:
            return f"{count:,} bytes ({count / scale:.3g} {unit})"
    return f"{count:,} bytes"


def _too_large(what, size, variable, error, *, at_least=False):
    bound = limit(variable, error)
    return (error or _model_error())(
        f"{what} holds {'more than ' if at_least else ''}{_size(size)}, over the limit of "
        f"{_size(bound)}; if the file is trusted, raise the limit with the environment "
        f"variable {variable}=BYTES")


def read_zip_member(archive, name, where, *, variable=MODEL_BYTES, error=None):
    """The bytes of member ``name`` of the open ``zipfile.ZipFile`` ``archive``.

    Refused when its declared uncompressed size is over the limit, or when reading it
    yields more than the limit whatever the header says (read in pieces, never past the
    limit by more than a byte)."""
    bound = limit(variable, error)
    info = archive.getinfo(name)
    what = f"{where}: member {name}"
    if info.file_size > bound:
        raise _too_large(what, info.file_size, variable, error)
    pieces, total = [], 0
    with archive.open(info) as member:
        while True:
            piece = member.read(min(_CHUNK, bound + 1 - total))
            if not piece:
                break
            pieces.append(piece)
            total += len(piece)
            if total > bound:
                raise _too_large(what, bound, variable, error, at_least=True)
    return b"".join(pieces)


def _check_array(what, shape, dtype, expected, variable, error, fix="re-save the model"):
    """Refuse an array's header (shape, dtype) before its data is read."""
    make = error or _model_error()
    if shape is None:
        raise make(f"{what} holds no data (an empty dataspace); {fix}")
    if dtype.kind not in _NUMERIC or dtype.hasobject:
        raise make(f"{what} holds {dtype} values, not numbers; {fix}")
    count = int(np.prod(shape, dtype=object))
    size = count * dtype.itemsize
    if size > limit(variable, error):
        raise _too_large(f"{what} (shape {tuple(shape)}, {dtype})", size, variable, error)
    if expected is not None and count != expected:
        raise make(f"{what} has shape {tuple(shape)} ({count:,} values) where the layer's "
                   f"configuration implies {expected:,} values; the file is damaged or "
                   f"inconsistent, {fix}")
    return count


def read_dataset(dataset, where, *, expected=None, variable=MODEL_BYTES, error=None):
    """The array of the h5py ``dataset``, after its declared shape and type are checked
    against the limit and, when given, against the ``expected`` number of values."""
    import h5py
    make = error or _model_error()
    what = f"{where}: dataset {getattr(dataset, 'name', '?')}"
    if not isinstance(dataset, h5py.Dataset):
        raise make(f"{what} is not an array (an HDF5 group); re-save the model")
    _check_array(what, dataset.shape, dataset.dtype, expected, variable, error)
    return np.asarray(dataset[()])


def _npy_header(file):
    version = np.lib.format.read_magic(file)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(file)
    if version in ((2, 0), (3, 0)):
        return np.lib.format.read_array_header_2_0(file)
    raise ValueError(f"unknown .npy format version {version}")


def check_npz(path, expected=None, *, variable=MODEL_BYTES, error=None):
    """Check every member of the ``.npz`` archive at ``path`` before ``np.load`` reads it:
    declared sizes within the limit, each member's ``.npy`` header a numeric array no
    larger than the limit, and the number of values ``expected`` maps its name to (without
    the ``.npy`` suffix) where given.  A missing file or one that is not a zip is left to
    ``np.load`` to report."""
    make = error or _model_error()
    bound = limit(variable, error)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError):
        return                  # missing or not a zip: np.load says what is wrong
    with archive:
        for info in archive.infolist():
            what = f"{path}: member {info.filename}"
            if info.file_size > bound:
                raise _too_large(what, info.file_size, variable, error)
            name = info.filename.removesuffix(".npy")
            try:
                with archive.open(info) as member:
                    shape, _, dtype = _npy_header(member)
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as problem:
                raise make(f"{what} is not a readable .npy array ({problem}); export the "
                           f"layer again") from None
            _check_array(what, shape, dtype, (expected or {}).get(name), variable, error,
                         fix="export the layer again")


def check_npy(path, *, variable=MODEL_BYTES, error=None):
    """(shape, dtype) from the ``.npy`` header at ``path``, refused before loading when the
    array would be over the limit or is not numeric, or when the file is shorter than the
    header says (``np.load`` would allocate the whole array first)."""
    make = error or _model_error()
    with open(path, "rb") as file:
        try:
            shape, _, dtype = _npy_header(file)
        except (ValueError, EOFError) as problem:
            raise make(f"{path} has a damaged .npy header ({problem}); save the array "
                       f"again with numpy.save") from None
        data_start = file.tell()
    count = _check_array(str(path), shape, dtype, None, variable, error,
                         fix="give an array of numbers saved with numpy.save")
    held = os.path.getsize(path) - data_start
    if held < count * dtype.itemsize:
        raise make(f"{path} declares shape {tuple(shape)} ({_size(count * dtype.itemsize)}) "
                   f"but holds {_size(held)}; the file is truncated, save it again")
    return shape, dtype


def read_config_file(path, *, variable=CONFIG_BYTES, error=None):
    """The text of the configuration file at ``path`` (layer.json, layers.json), refused
    when the file is larger than the limit.  Missing files raise FileNotFoundError."""
    bound = limit(variable, error)
    size = os.path.getsize(path)
    if size > bound:
        raise _too_large(str(path), size, variable, error)
    with open(path, "rb") as file:
        data = file.read(bound + 1)          # a file that grew since: still bounded
    if len(data) > bound:
        raise _too_large(str(path), bound, variable, error, at_least=True)
    return data.decode()


def read_model_file(path, *, variable=MODEL_BYTES, error=None):
    """The bytes of the model file at ``path`` (a ``.tflite`` flatbuffer), refused from its
    size on disk when it is larger than the limit, and read no further than one byte past
    it (a file that grows meanwhile).  OSErrors (a missing file, a folder) are the
    caller's to report."""
    bound = limit(variable, error)
    size = os.path.getsize(path)
    if size > bound:
        raise _too_large(str(path), size, variable, error)
    with open(path, "rb") as file:
        data = file.read(bound + 1)
    if len(data) > bound:
        raise _too_large(str(path), bound, variable, error, at_least=True)
    return data
