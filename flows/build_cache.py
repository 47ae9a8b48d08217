"""Shared by the simulator runners: where builds are cached and under which key, a lock on a
build folder, and the cycle budget after which a run counts as hung."""

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path

__all__ = ["cache_root", "cache_key", "locked", "cycle_budget"]


def cache_root(kind):
    """The folder where builds of ``kind`` ("native", "cocotb", "postsynth") are cached:
    ``$XDG_CACHE_HOME/dwconv/<kind>`` (``~/.cache`` without it)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dwconv" / kind


def cache_key(*parts, length=20):
    """A short hash of ``parts`` (texts): what makes a build, so that a build made from other
    sources, options, tool versions or compiler flags is never reused."""
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:length]


@contextlib.contextmanager
def locked(folder):
    """Hold an exclusive lock on ``folder`` (parallel test workers may build the same design)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cycle_budget(beats, load_beats, stall, latency, frame_beats):
    """Cycles after which a run that has not finished counts as hung.

    ``beats`` input cycles (beats times the reuse factor) and ``load_beats`` weight beats,
    stretched for a source and a sink that each pause with probability ``stall``, plus
    generous room for the pipeline (``latency``) and a frame (``frame_beats`` cycles)."""
    return int((beats + load_beats) * (1 + 8 * stall) / max(1e-3, (1 - stall) ** 2)
               + 20 * (latency + frame_beats) + 1000)
