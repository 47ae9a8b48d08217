"""Shared by the simulator runners: a lock on a cached build folder, log tails, cycle limits."""

import contextlib
import fcntl
from pathlib import Path

__all__ = ["locked", "log_tail", "cycle_budget"]


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


def log_tail(path, lines=30):
    """The last ``lines`` lines of a log file, for an error message."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def cycle_budget(beats, load_beats, stall, latency, frame_beats):
    """Cycles after which a run that has not finished counts as hung."""
    return int((beats + load_beats) * (1 + 8 * stall) / max(1e-3, (1 - stall) ** 2)
               + 20 * (latency + frame_beats) + 1000)
