"""What the engine builds: limits checked when an engine is configured, before any hardware.

Every legal Keras layer is a valid ``LayerSpec``, but some need more than any FPGA this
engine targets holds (the largest ECP5, LFE5U-85F, has 3.7 Mbit of block RAM and 156
multipliers), or more than generating the design can do in minutes and a few GB.  Those are
refused here with a one-line ``LayerError`` that names the limit, its value and what to
change, instead of failing deep inside elaboration or running out of memory.  Each limit is
above what the largest real layers need (MobileNetV2 and EfficientNet with every channel in
its own lane: up to 3024 multipliers, some 20k line-buffer words).
"""

from ..golden.spec import LayerError
from .folded_mac import FoldedMacArray
from .line_buffer import storage_words
from .scanner import OutputScanner

__all__ = ["MAX_MEMORY_BITS", "MAX_FRAMES_IN_FLIGHT", "MAX_COUNTER_BITS", "MAX_MULTIPLIERS",
           "MAX_WINDOW_SAMPLES", "MAX_SIGNAL_BITS", "check_buildable", "frames_in_flight", "counter_width"]

#: Bits of one memory structure (the line buffer; the weight memories together): above the
#: block RAM of the FPGAs targeted.
MAX_MEMORY_BITS = 1 << 22

#: Frames whose outputs are still to come when another frame starts (entries of the start
#: queue): windows that span thousands of small frames.
MAX_FRAMES_IN_FLIGHT = 1 << 12

#: Width of the shift index and the frame's beat counter.
MAX_COUNTER_BITS = 32

#: Multipliers (P*M*ceil(kh*kw/R)), constant ones included: each costs some milliseconds to
#: generate (MobileNetV2's widest layer at P=C has 3024).
MAX_MULTIPLIERS = 1 << 12

#: Window samples (P*kh*kw lane registers behind the line buffer's taps).
MAX_WINDOW_SAMPLES = 1 << 14

#: Bits of one signal: Amaranth's netlist holds no cell wider (the window's taps, every
#: tap's weights of a channel group, an output beat are each one signal).
MAX_SIGNAL_BITS = (1 << 16) - 1


def counter_width(spec, lanes, extra):
    """Width of the engine's shift index: it counts past the last output's target."""
    last_target = OutputScanner.targets(spec, lanes, extra)[-1]
    return (last_target + 2).bit_length() + 1


def frames_in_flight(spec, lanes, extra):
    """Frames whose outputs are still to come when another frame starts."""
    last_target = OutputScanner.targets(spec, lanes, extra)[-1]
    frame_beats = spec.height * spec.width * (spec.channels // lanes)
    return -(-(last_target + 2) // frame_beats) + 1


def _refuse(spec, need, limit, name, advice):
    raise LayerError(f"layer {spec.name!r} needs {need}, more than the engine's limit of "
                     f"{limit:,} (hw.limits.{name}); {advice}")


def check_buildable(spec, formats, lanes, *, reuse, weights, extra):
    """Raise a LayerError unless an engine of ``spec`` at these lanes, reuse and weights mode
    (``extra``: the line buffer's extra delay) stays within the limits above."""
    kh, kw = spec.kernel_size
    taps = kh * kw
    multipliers = FoldedMacArray.multipliers_of(taps, reuse) * lanes * spec.depth_multiplier
    if multipliers > MAX_MULTIPLIERS:
        _refuse(spec, f"{multipliers:,} multipliers ({lanes} lane(s) x M="
                f"{spec.depth_multiplier} x {-(-taps // reuse)} per output)",
                MAX_MULTIPLIERS, "MAX_MULTIPLIERS",
                "use fewer lanes (--lanes), a higher --reuse or a smaller kernel")
    if taps * lanes > MAX_WINDOW_SAMPLES:
        _refuse(spec, f"{taps * lanes:,} window samples ({kh}x{kw} taps x {lanes} lane(s))",
                MAX_WINDOW_SAMPLES, "MAX_WINDOW_SAMPLES",
                "use fewer lanes (--lanes) or a smaller kernel")
    outputs = lanes * spec.depth_multiplier
    signals = {"window taps": taps * lanes * formats.input.width,
               "weights of a channel group": taps * outputs * formats.weight.width,
               "biases of a channel group": outputs * formats.bias.width,
               "output beat": outputs * formats.output.width}
    what, bits = max(signals.items(), key=lambda item: item[1])
    if bits > MAX_SIGNAL_BITS:
        _refuse(spec, f"a {bits:,}-bit signal ({what}: {kh}x{kw} taps, {lanes} lane(s), "
                f"M={spec.depth_multiplier})", MAX_SIGNAL_BITS, "MAX_SIGNAL_BITS",
                "use fewer lanes (--lanes), a smaller kernel or narrower formats")
    frame_beats = spec.height * spec.width * (spec.channels // lanes)
    width = counter_width(spec, lanes, extra)
    if frame_beats.bit_length() > MAX_COUNTER_BITS or width > MAX_COUNTER_BITS:
        bits = max(frame_beats.bit_length(), width)
        _refuse(spec, f"{bits}-bit beat counters ({frame_beats:,} beats per frame)",
                MAX_COUNTER_BITS, "MAX_COUNTER_BITS",
                "use a smaller input, more lanes (--lanes) or a smaller dilation")
    line_bits = storage_words(spec, lanes, extra) * formats.input.width
    if line_bits > MAX_MEMORY_BITS:
        _refuse(spec, f"a line buffer of {line_bits:,} bits "
                f"({storage_words(spec, lanes, extra):,} words of {formats.input.width})",
                MAX_MEMORY_BITS, "MAX_MEMORY_BITS",
                "use a smaller dilation or kernel, fewer input columns or a narrower input format")
    groups = spec.channels // lanes
    if weights == "port" or groups > 1:
        banks = 2 if weights == "port" else 1
        weight_bits = banks * groups * outputs * (taps * formats.weight.width
                                                  + formats.bias.width)
        if weight_bits > MAX_MEMORY_BITS:
            _refuse(spec, f"weight memories of {weight_bits:,} bits ({spec.channels} "
                    f"channels x M={spec.depth_multiplier} x {taps} taps, {banks} bank(s))",
                    MAX_MEMORY_BITS, "MAX_MEMORY_BITS",
                    "use a smaller kernel or depth multiplier, or narrower weight formats")
    in_flight = frames_in_flight(spec, lanes, extra)
    if in_flight > MAX_FRAMES_IN_FLIGHT:
        _refuse(spec, f"{in_flight:,} frames in flight (its windows reach "
                f"{OutputScanner.targets(spec, lanes, extra)[0]:,} beats back, a frame is "
                f"{frame_beats:,} beats)", MAX_FRAMES_IN_FLIGHT, "MAX_FRAMES_IN_FLIGHT",
                "use a smaller dilation or kernel, or a larger input")
