"""Golden vectors for testbenches: arrays, raw integers, and $readmemh files in beat order.

A vectors folder holds

``input.npy``, ``expected.npy``
    The input as given and the fixed-point output (float64, exact dequantized values), both
    in the layer's data_format.
``vectors.npz``
    Raw int64 arrays, channels_last: ``input_raw`` (N, H, W, C), ``output_raw``
    (N, oh, ow, C*M), ``kernel_raw`` (kh, kw, C, M), ``bias_raw`` (C*M,).
``input.hex``, ``output.hex``
    One line per stream beat (pixels in raster order, C/P channel groups per pixel, frames
    one after another), lane 0 in the least significant bits, each lane its format's width
    in two's complement; output beats carry P*M lanes (lane q of group g is output channel
    g*P*M + q, Keras' c*M + m order).
``weights.hex``
    The weight port's words, one per line (kernel in Keras order, then the bias).
``vectors.json``
    Lanes, reuse factor, widths, frames, beats (all frames, per frame, per row), shapes and
    formats, and under ``testbench`` everything ``tb_vectors.v`` takes: its ``parameters``
    (``-P tb_vectors.NAME=VALUE`` each), the ``+input=``/``+output=``/``+weights=``
    plusargs, and the define an engine made with ``--weights port`` needs.
"""

import json
import pathlib

import numpy as np

from ..golden.atomic import atomic_folder
from ..golden.fixed_ref import fixed_forward_raw, quantize_weights
from ..golden.layer import from_channels_last, to_channels_last
from .beats import pack_beats, weight_load_values

__all__ = ["VECTORS_JSON", "TESTBENCH", "write_vectors", "build_vectors", "hex_lines",
           "testbench_parameters"]

VECTORS_JSON = "vectors.json"
TESTBENCH = "tb_vectors.v"

#: tb_vectors.v's pause patterns: the source pauses one cycle in SOURCE_PERIOD, the sink
#: one in SINK_PERIOD (its defaults, recorded so a run is reproduced from the json alone).
SOURCE_PERIOD, SINK_PERIOD = 7, 5


def hex_lines(words, bits):
    """``$readmemh`` text: one word per line, zero-padded to the beat's width."""
    digits = max(1, -(-bits // 4))
    return "".join(f"{word:0{digits}x}\n" for word in words)


def testbench_parameters(spec, lanes, formats, frames, *, reuse=1):
    """Every parameter of ``tb_vectors.v`` for ``frames`` frames of ``spec`` at ``lanes``.

    ``MAX_CYCLES`` (after which the testbench gives up: FAIL) allows for the pauses on both
    sides (at most one cycle in five each), R cycles per input beat, and the engine's lag of
    under a frame of input, with a wide margin: it only guards against a hang.
    """
    groups = spec.channels // lanes
    out_lanes = lanes * spec.depth_multiplier
    in_row, out_row = spec.width * groups, spec.out_width * groups
    in_frame, out_frame = spec.height * in_row, spec.out_height * out_row
    in_beats, out_beats = frames * in_frame, frames * out_frame
    return {
        "IN_BITS": lanes * formats.input.width, "OUT_BITS": out_lanes * formats.output.width,
        "IN_BEATS": in_beats, "OUT_BEATS": out_beats,
        "IN_ROW_BEATS": in_row, "IN_FRAME_BEATS": in_frame,
        "OUT_ROW_BEATS": out_row, "OUT_FRAME_BEATS": out_frame,
        "MAX_CYCLES": 4 * (in_beats * reuse + out_beats) + 4 * in_frame * reuse + 10000,
        "WEIGHT_BITS": _weight_width(spec, formats),
        "WEIGHT_WORDS": spec.taps * spec.channels * spec.depth_multiplier
        + (spec.out_channels if spec.use_bias else 0),
        "SOURCE_PERIOD": SOURCE_PERIOD, "SINK_PERIOD": SINK_PERIOD,
    }


def _weight_width(spec, formats):
    return max(formats.weight.width, formats.bias.width if spec.use_bias else 0)


def build_vectors(layer, formats, x_nhwc, lanes, *, reuse=1):
    """The folder's content as ``{file name: bytes or array}`` (nothing written yet).
    ``reuse`` (the engine's R) changes no value, only the rate: one input beat every R
    cycles, recorded in vectors.json as ``reuse`` for a testbench that counts cycles."""
    spec = layer.spec
    spec.check_lanes(lanes)
    x_raw = formats.input.quantize(x_nhwc)
    out_raw = fixed_forward_raw(layer, formats, x_raw)
    kernel_raw, bias_raw = quantize_weights(layer, formats)
    out_lanes = lanes * spec.depth_multiplier
    frames = x_raw.shape[0]
    in_words = pack_beats(x_raw, lanes, formats.input.width)
    out_words = pack_beats(out_raw, out_lanes, formats.output.width)
    weight_width = _weight_width(spec, formats)
    parameters = testbench_parameters(spec, lanes, formats, frames, reuse=reuse)
    assert (parameters["IN_BEATS"], parameters["OUT_BEATS"]) == (len(in_words), len(out_words))
    description = {
        "layer_name": spec.name,
        "frames": frames,
        "lanes": lanes,
        "reuse": reuse,
        "input": {"shape": list(x_raw.shape), "format": str(formats.input),
                  "width": formats.input.width, "lanes": lanes,
                  "beat_bits": lanes * formats.input.width, "beats": len(in_words),
                  "beats_per_frame": parameters["IN_FRAME_BEATS"],
                  "beats_per_row": parameters["IN_ROW_BEATS"]},
        "output": {"shape": list(out_raw.shape), "format": str(formats.output),
                   "width": formats.output.width, "lanes": out_lanes,
                   "beat_bits": out_lanes * formats.output.width, "beats": len(out_words),
                   "beats_per_frame": parameters["OUT_FRAME_BEATS"],
                   "beats_per_row": parameters["OUT_ROW_BEATS"]},
        "weights": {"words": parameters["WEIGHT_WORDS"], "width": weight_width},
        "testbench": {
            "file": TESTBENCH, "top_define": "DWCONV_TOP",
            "parameters": parameters,
            "plusargs": {"input": "input.hex", "output": "output.hex",
                         "weights": "weights.hex"},
            "weight_port_define": "WEIGHT_PORT",
            "usage": "iverilog -g2012 -s tb_vectors -P tb_vectors.NAME=VALUE (each of "
                     "parameters) [-DWEIGHT_PORT for --weights port] tb_vectors.v dwconv.v; "
                     "vvp a.out +input=input.hex +output=output.hex [+weights=weights.hex]",
        },
        "formats": formats.to_dict(),
        "layer": spec.to_dict(),
        "data_format": spec.data_format,
    }
    expected = from_channels_last(spec, formats.output.to_float(out_raw))
    return {
        "expected.npy": expected,
        "vectors.npz": {"input_raw": x_raw, "output_raw": out_raw, "kernel_raw": kernel_raw,
                        "bias_raw": bias_raw},
        "input.hex": hex_lines(in_words, lanes * formats.input.width),
        "output.hex": hex_lines(out_words, out_lanes * formats.output.width),
        "weights.hex": hex_lines(weight_load_values(spec, kernel_raw, bias_raw, weight_width),
                                 weight_width),
        VECTORS_JSON: json.dumps(description, indent=2) + "\n",
    }


def write_vectors(folder, layer, formats, x, lanes, *, reuse=1):
    """Write a vectors folder all-or-nothing; ``x`` is float64 in the layer's data_format."""
    x_nhwc, _ = to_channels_last(layer.spec, x)
    content = build_vectors(layer, formats, x_nhwc, lanes, reuse=reuse)
    with atomic_folder(folder, VECTORS_JSON) as temp:
        temp = pathlib.Path(temp)
        np.save(temp / "input.npy", np.asarray(x, dtype=np.float64))
        for name, value in content.items():
            if name.endswith(".npy"):
                np.save(temp / name, value)
            elif name.endswith(".npz"):
                np.savez(temp / name, **value)
            else:
                (temp / name).write_text(value)
    return content
