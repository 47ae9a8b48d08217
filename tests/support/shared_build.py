"""A simulator build cache shared by the demo, bench and docs tests.

Those tests simulate the same design (the seed layer with its fixed weights, the demo's
formats and lanes), so the Verilator build is made once, kept under the repository's
gitignored build/ folder between runs, and guarded by run_cocotb's lock against parallel
workers.  Commands run as subprocesses find it through ``XDG_CACHE_HOME``.
"""

import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]


def cache_home():
    """The XDG_CACHE_HOME to give ``dwconv`` subprocesses."""
    return REPO / "build" / "test-cache"


def cocotb_build_root():
    """The same folder as ``run_cocotb``'s default root under ``cache_home()``."""
    return cache_home() / "dwconv" / "cocotb"


def native_build_root():
    """The same folder as ``run_native``'s default root under ``cache_home()``."""
    return cache_home() / "dwconv" / "native"
