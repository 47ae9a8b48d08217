"""Runs an engine's stream-native core (``engine.core()``: ports ``i``, ``o``, ``w``) in
Amaranth's simulator: frames back to back, random stalls, weight loads.

``amaranth_sim.run_amaranth`` with ``core=True``: the same beats as on the AXI4-Stream top,
for any engine with a ``core()``, also one whose output beats per pixel differ from its
input's (a separable block's F/Q, ``engine.out_groups``).
"""

from .amaranth_sim import output_framing, run_amaranth

__all__ = ["run_core", "output_framing"]


def run_core(engine, frames_raw, *, stall=0.0, seed=0, loads=None):
    """Drive a fresh ``engine.core()`` with ``frames_raw`` (N, H, W, C raw ints).

    ``stall`` is the probability, each cycle, that the source holds valid low and,
    independently, that the sink holds ready low.  ``loads`` maps a frame index to
    ``(kernel_raw, bias_raw)`` (a separable block's: ``(engine.load_values(...), ())``),
    sent through ``w`` after the previous frame's beats and before that frame's first.
    Returns a ``StreamResult``; cycles as ``amaranth_sim.run_cycles`` counts them.
    """
    if loads and getattr(engine, "weights", "const") != "port":
        raise ValueError("weight loads need an engine built with weights='port'")
    return run_amaranth(engine, frames_raw, stall=stall, seed=seed, loads=loads, core=True)
