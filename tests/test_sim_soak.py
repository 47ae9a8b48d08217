"""Soak: 1000 small frames back to back through Verilator (the compiled testbench, no Python
per cycle), random stalls on both sides, new random weights loaded through the weight port
every 100 frames; every frame bit-exact.  The build is kept in the shared test cache."""

import time

import numpy as np

from dwconv.golden.fixed_ref import quantize_weights
from dwconv.sim.native_sim import run_native
from support.engine_cases import make_case, random_layer
from support.shared_build import native_build_root

FRAMES = 1000
RELOAD_EVERY = 100
STALL = 0.2


def test_soak_1000_frames_with_reloads():
    case = make_case(shape=(4, 4, 2), kernel=(3, 3), padding="same", lanes=2,
                     formats="rnd_sat", weights="port", seed=42)
    spec, rng = case.layer.spec, np.random.default_rng(42)
    frames = case.frames(FRAMES, rng)
    # a new random layer (same shape) from each reload on, the first one included
    layers = [random_layer(spec, rng) for _ in range(FRAMES // RELOAD_EVERY)]
    loads = {k * RELOAD_EVERY: quantize_weights(layer, case.formats)
             for k, layer in enumerate(layers)}
    expected = np.concatenate([
        case.expected(frames[k * RELOAD_EVERY:(k + 1) * RELOAD_EVERY], layer)
        for k, layer in enumerate(layers)])

    start = time.monotonic()
    result = run_native(case.engine, frames, simulator="verilator", stall=STALL, seed=5,
                        loads=loads, build_dir=native_build_root())
    seconds = time.monotonic() - start

    assert result.frames == FRAMES and result.outputs.shape == expected.shape
    mismatched = np.flatnonzero((result.outputs != expected).reshape(FRAMES, -1).any(axis=1))
    assert mismatched.size == 0, f"{mismatched.size} frames differ, first {mismatched[:5]}"
    assert result.framing == []
    assert not result.error
    # the stalls really throttle the stream: it cannot beat one beat per cycle
    ideal = FRAMES * spec.height * spec.width * spec.channels // case.lanes
    assert result.cycles > ideal
    print(f"soak: {FRAMES} frames, {result.cycles} cycles (ideal {ideal}), {seconds:.1f} s")
