"""All-or-nothing output: a file or folder appears complete, or not at all.

Everything is written next to its destination under a hidden temporary name and renamed
into place at the end (a rename within one folder is atomic), so an error midway leaves no
partial output behind.
"""

import contextlib
import os
import pathlib
import shutil
import tempfile

__all__ = ["atomic_file", "atomic_folder", "OutputError"]


class OutputError(ValueError):
    """An output path that cannot be written."""


def _parent(path):
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {parent} does not exist; create it "
                          f"first")
    return parent


@contextlib.contextmanager
def atomic_file(path):
    """Yield a binary file object; on success it becomes ``path`` (replacing it)."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; give a file name")
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=_parent(path))
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror}; choose a writable "
                          f"folder") from None
    try:
        with os.fdopen(fd, "wb") as file:
            # mkstemp makes the file private (0600); an output gets what open() would give
            os.fchmod(file.fileno(), 0o666 & ~_umask())
            yield file
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


@contextlib.contextmanager
def atomic_folder(path, marker):
    """Yield an empty temporary folder; on success it becomes ``path``.

    An existing ``path`` is replaced only if it is empty or holds ``marker`` (a file this
    program writes), so that a mistyped path never deletes someone's folder.
    """
    path = pathlib.Path(path)
    if path.exists():
        if not path.is_dir():
            raise OutputError(f"cannot write folder {path}: a file has that name; choose "
                              f"another output folder")
        if any(path.iterdir()) and not (path / marker).is_file():
            raise OutputError(f"{path} exists and is not an earlier output (no {marker}); "
                              f"choose a new output folder")
    try:
        temp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp",
                                             dir=_parent(path)))
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror}; choose a writable "
                          f"folder") from None
    try:
        yield temp
        temp.chmod(0o777 & ~_umask())
        if path.exists():
            # Swap the old folder out first: rename cannot replace a non-empty folder.
            old = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old",
                                                dir=path.parent))
            os.replace(path, old / "x")
            os.replace(temp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temp, path)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
