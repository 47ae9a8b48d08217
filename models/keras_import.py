"""Keras for the demo and the benchmark, on JAX, with its home inside their output folder.

Keras reads its backend (``KERAS_BACKEND``) and its home (``KERAS_HOME``, where it writes
``keras.json``) from the environment once, when it is first imported, and has no other way
to be given them.  ``import_keras`` sets them for that import alone (the user's own values
win) and takes them out of ``os.environ`` again afterwards (what Keras and JAX set there for
themselves on import is theirs).
"""

import contextlib
import importlib
import os
import sys
from pathlib import Path

__all__ = ["import_keras"]


@contextlib.contextmanager
def _defaults(**variables):
    """``variables`` in ``os.environ`` where they are not set, for the ``with`` block only."""
    added = [name for name in variables if name not in os.environ]
    os.environ.update({name: variables[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def import_keras(home):
    """The ``keras`` module; imported here the first time, on JAX, with ``home`` (a folder)
    as its home."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    with _defaults(KERAS_BACKEND="jax", KERAS_HOME=str(Path(home).resolve())):
        return importlib.import_module("keras")
