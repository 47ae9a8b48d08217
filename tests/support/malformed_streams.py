"""Malformed input streams for the engine, and the checks its answer must pass.

A stream is a list of events: ``Beat(data, user, last)``, ``Gap(cycles)`` (valid low) and
``Reset()`` (one cycle of ``rst``).  Each case is built from well-formed frames and one
defect, and says which frames the engine must take (their outputs keep the frame shape)
and which of those are well formed (their outputs must be bit-exact).  The engine's
answer is described in hw/framer.py: a broken frame is completed with zero beats, beats
outside a frame are dropped, the next start of frame is taken normally.
"""

from dataclasses import dataclass, field

import numpy as np

from dwconv.sim.beats import pack_beats, unpack_beats

__all__ = ["Beat", "Gap", "Reset", "MalformedCase", "CASES", "build_case", "check_answer"]


@dataclass(frozen=True)
class Beat:
    data: int
    user: bool
    last: bool


@dataclass(frozen=True)
class Gap:
    cycles: int


@dataclass(frozen=True)
class Reset:
    pass


@dataclass
class MalformedCase:
    """One malformed stream and what must come out of it.

    Members
    -------
    events : list of Beat, Gap, Reset
    segments : list of list of (int or None)
        Per stretch between resets, the frames the engine must take, in order: an index
        into ``frames`` for a well-formed frame (bit-exact), ``None`` for a broken one
        (shape only).
    truncated : bool
        The stream ends the first segment with a reset, so its output may stop early (it
        must still be a prefix of well-formed frames).
    error : bool
        The sticky error flag at the end.
    """

    events: list
    segments: list
    truncated: bool = False
    error: bool = True
    frames: np.ndarray = field(default=None)


def _frame_beats(engine, frame):
    """The beats of one well-formed frame."""
    spec = engine.spec
    row = spec.width * engine.groups
    words = pack_beats(frame[None], engine.lanes, engine.formats.input.width)
    return [Beat(w, k == 0, (k + 1) % row == 0) for k, w in enumerate(words)]


def _tlast_early(beats, row):
    k = row // 2 if row > 1 else 0
    beats[k] = Beat(beats[k].data, beats[k].user, True)
    if row == 1:   # every beat ends a row: make the second beat lack its tlast instead
        beats[1] = Beat(beats[1].data, beats[1].user, False)
    return beats


def _tlast_late(beats, row):
    beats[row - 1] = Beat(beats[row - 1].data, beats[row - 1].user, False)
    return beats


def build_case(name, engine, rng):
    """The events and expectations of case ``name`` (a key of ``CASES``) for ``engine``."""
    spec = engine.spec
    fmt = engine.formats.input
    frames = rng.integers(fmt.raw_min, fmt.raw_max + 1, size=(3, *spec.input_shape))
    good = [_frame_beats(engine, f) for f in frames]
    row = spec.width * engine.groups
    half = len(good[1]) // 2
    case = CASES[name](good, row, half, rng, engine)
    case.frames = frames
    return case


def _garbage(rng, engine, count):
    width = engine.lanes * engine.formats.input.width
    return [Beat(int(rng.integers(0, 1 << width)), False, bool(rng.integers(0, 2)))
            for _ in range(count)]


CASES = {
    # tlast in the middle of a row: the rest of the frame is filled, the source's remaining
    # beats (no tuser) are dropped, the next frame is clean
    "tlast_early": lambda good, row, half, rng, e: MalformedCase(
        good[0] + _tlast_early(list(good[1]), row) + good[2], [[0, None, 2]]),
    # no tlast at the end of the first row
    "tlast_late": lambda good, row, half, rng, e: MalformedCase(
        good[0] + _tlast_late(list(good[1]), row) + good[2], [[0, None, 2]]),
    # the frame's last beat lacks tlast: the frame is complete, only flagged
    "tlast_missing_at_end": lambda good, row, half, rng, e: MalformedCase(
        good[0] + good[1][:-1] + [Beat(good[1][-1].data, False, False)] + good[2],
        [[0, None, 2]]),
    # a frame without tuser on its first beat: all of it is dropped
    "missing_start_of_frame": lambda good, row, half, rng, e: MalformedCase(
        good[0] + [Beat(good[1][0].data, False, good[1][0].last)] + good[1][1:] + good[2],
        [[0, 2]]),
    # the next frame starts halfway through: the cut frame is filled, the new one is clean
    "start_of_frame_mid_frame": lambda good, row, half, rng, e: MalformedCase(
        good[0] + good[1][:half] + good[2], [[0, None, 2]]),
    # beats without tuser between two frames (and a gap)
    "garbage_between_frames": lambda good, row, half, rng, e: MalformedCase(
        good[0] + _garbage(rng, e, 5) + [Gap(3)] + _garbage(rng, e, 2) + good[2],
        [[0, 2]]),
    # reset halfway through a frame (after a pause in which the first frame drains):
    # whatever came out before is a prefix of framed output, and after the reset a clean
    # frame is bit-exact; a reset is no framing error
    "reset_mid_frame": lambda good, row, half, rng, e: MalformedCase(
        good[0] + [Gap(e.latency + 4 * row + 8)] + good[1][:half] + [Reset()] + good[2],
        [[0, None], [2]],
        truncated=True, error=False),
}


def check_answer(case, engine, outputs, expected, error, accepted):
    """Check what the engine answered to ``case``.

    ``outputs`` is a list, per segment (stretch between resets), of the (data, user, last)
    output beats taken; ``expected`` the golden raw outputs (3, oh, ow, C*M) of
    ``case.frames``; ``accepted`` whether every beat offered was taken (no hang).
    """
    spec = engine.spec
    out_row = spec.out_width * engine.groups
    out_frame = spec.out_height * out_row
    lanes = engine.out_lanes
    assert accepted, "the engine stopped taking input beats (hang)"
    assert bool(error) == case.error, f"error flag {error}, expected {case.error}"
    assert len(outputs) == len(case.segments)
    for s, (taken, frames) in enumerate(zip(outputs, case.segments)):
        partial = case.truncated and s == 0
        if partial:
            assert len(taken) <= len(frames) * out_frame, "more output beats than frames"
        else:
            assert len(taken) == len(frames) * out_frame, (
                f"segment {s}: {len(taken)} output beats, expected {len(frames)} frames of "
                f"{out_frame}")
        for n, (_, user, last) in enumerate(taken):
            k = n % out_frame
            assert bool(user) == (k == 0), f"segment {s} beat {n}: tuser {user}"
            assert bool(last) == ((k + 1) % out_row == 0), f"segment {s} beat {n}: tlast {last}"
        for f, index in enumerate(frames):
            beats = taken[f * out_frame:(f + 1) * out_frame]
            if index is None or len(beats) < out_frame:
                continue
            got = unpack_beats([d for d, _, _ in beats], spec.output_shape, lanes,
                               engine.formats.output)
            np.testing.assert_array_equal(got, expected[index],
                                          err_msg=f"segment {s} frame {f} (input {index})")

