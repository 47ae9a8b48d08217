"""Golden vectors for testbenches: arrays, raw integers, and $readmemh files in beat order.

A vectors folder holds

``input.npy``, ``expected.npy``
    The input as given and the fixed-point output (float64, exact dequantized values), both
    in the layer's data_format.  An int8 TFLite layer's integer input gives int8 values.
``vectors.npz``
    Raw int64 arrays, channels_last: ``input_raw`` (N, H, W, C), ``output_raw``
    (N, oh, ow, C*M), ``kernel_raw`` (kh, kw, C, M), ``bias_raw`` (C*M,); a separable
    block's ``output_raw`` has F channels, and ``pointwise_raw`` (C*M, F) and
    ``pointwise_bias_raw`` (F,) come with it.
``input.hex``, ``output.hex``
    One line per stream beat (pixels in raster order, C/P channel groups per pixel, frames
    one after another), lane 0 in the least significant bits, each lane its format's width
    in two's complement; output beats carry P*M lanes (lane q of group g is output channel
    g*P*M + q, Keras' c*M + m order), a separable block's Q filters (F/Q beats per pixel,
    lane q of beat j is filter j*Q + q).
``weights.hex``
    The weight port's words, one per line (kernel in Keras order, then the bias; a
    separable block's whole load, see ``SeparableEngine.load_values``).  Left out for an
    engine without a weight port.
``vectors.json``
    Lanes, reuse factor, widths, frames, beats (all frames, per frame, per row), shapes and
    formats, and under ``testbench`` everything ``tb_vectors.v`` takes: its ``parameters``
    (``-P tb_vectors.NAME=VALUE`` each), the ``+input=``/``+output=``/``+weights=``
    plusargs, and the define an engine made with ``--weights port`` needs.
"""

import json
import pathlib

import numpy as np

from ..models.atomic import atomic_folder
from ..golden.layer import from_channels_last, to_channels_last
from .beats import pack_beats

__all__ = ["VECTORS_JSON", "TESTBENCH", "write_vectors", "write_design_vectors",
           "build_vectors", "design_vectors", "hex_lines", "testbench_parameters",
           "stream_parameters"]

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
    """Every parameter of ``tb_vectors.v`` for ``frames`` frames of depthwise ``spec`` at
    ``lanes`` (``stream_parameters`` for any kind)."""
    words = spec.taps * spec.channels * spec.depth_multiplier + \
        (spec.out_channels if spec.use_bias else 0)
    return stream_parameters(spec, lanes, formats.input.width,
                             lanes * spec.depth_multiplier, formats.output.width,
                             spec.channels // lanes, frames, reuse=reuse, weight_words=words,
                             weight_bits=_weight_width(spec, formats))


def stream_parameters(spec, lanes, in_width, out_lanes, out_width, out_groups, frames, *,
                      reuse, weight_words, weight_bits):
    """Every parameter of ``tb_vectors.v``: ``spec`` the input geometry (and output rows
    and columns), ``out_groups`` output beats per output pixel.

    ``MAX_CYCLES`` (after which the testbench gives up: FAIL) allows for the pauses on both
    sides (at most one cycle in five each), R cycles per input beat, and the engine's lag of
    under a frame of input, with a wide margin: it only guards against a hang.
    """
    groups = spec.channels // lanes
    in_row, out_row = spec.width * groups, spec.out_width * out_groups
    in_frame, out_frame = spec.height * in_row, spec.out_height * out_row
    in_beats, out_beats = frames * in_frame, frames * out_frame
    return {
        "IN_BITS": lanes * in_width, "OUT_BITS": out_lanes * out_width,
        "IN_BEATS": in_beats, "OUT_BEATS": out_beats,
        "IN_ROW_BEATS": in_row, "IN_FRAME_BEATS": in_frame,
        "OUT_ROW_BEATS": out_row, "OUT_FRAME_BEATS": out_frame,
        "MAX_CYCLES": 4 * (in_beats * reuse + out_beats) + 4 * in_frame * reuse + 10000,
        "WEIGHT_BITS": weight_bits, "WEIGHT_WORDS": weight_words,
        "SOURCE_PERIOD": SOURCE_PERIOD, "SINK_PERIOD": SINK_PERIOD,
    }


def _weight_width(spec, formats):
    return max(formats.weight.width, formats.bias.width if spec.use_bias else 0)


def build_vectors(layer, formats, x_nhwc, lanes, *, reuse=1):
    """The folder's content for a depthwise layer as ``{file name: bytes or array}``
    (nothing written yet): ``design_vectors`` of ``Design(layer, formats, lanes, reuse)``.
    ``reuse`` (the engine's R) changes no value, only the rate: one input beat every R
    cycles, recorded in vectors.json as ``reuse`` for a testbench that counts cycles."""
    from ..design import Design

    layer.spec.check_lanes(lanes)
    return design_vectors(Design(layer, formats, lanes=lanes, reuse=reuse), x_nhwc)


#: Names in vectors.npz of the raw weights of each kind (``Kind.weights_raw``'s order).
_WEIGHT_NAMES = {"separable": ("kernel_raw", "bias_raw", "pointwise_raw",
                               "pointwise_bias_raw")}


def design_vectors(design, x_nhwc):
    """The folder's content for any layer kind (``dwconv.Design``) as ``{file name: bytes
    or array}``; ``x_nhwc`` channels last (an int8 layer: integers, or floats it
    quantizes).  A separable block's output beats carry its Q filters; its vectors.npz
    also holds ``pointwise_raw`` (C*M, F) and ``pointwise_bias_raw`` (F,), and its
    weights.hex the block's whole load.  An int8 layer's raw values are its int8 and
    int32 values; weights.hex is written when its engine has a weight port."""
    kind, spec, formats, lanes = design.kind, design.spec, design.formats, design.lanes
    x_raw = kind.quantize(design, x_nhwc)
    out_raw = kind.forward_raw(design, x_raw)
    out_lanes = design.out_lanes
    frames = x_raw.shape[0]
    in_words = pack_beats(x_raw, lanes, formats.input.width)
    out_words = pack_beats(out_raw, out_lanes, formats.output.width)
    load = kind.weight_load(design)
    load_values, weight_width = load if load is not None else ([], 0)
    parameters = stream_parameters(spec, lanes, formats.input.width, out_lanes,
                                   formats.output.width, kind.out_groups(design), frames,
                                   reuse=design.reuse, weight_words=len(load_values),
                                   weight_bits=weight_width)
    assert (parameters["IN_BEATS"], parameters["OUT_BEATS"]) == (len(in_words), len(out_words))
    description = {
        "layer_name": spec.name,
        **kind.report(design),
        "frames": frames,
        "lanes": lanes,
        "reuse": design.reuse,
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
        "weights": {"words": len(load_values), "width": weight_width},
        "testbench": {
            "file": TESTBENCH, "top_define": "DWCONV_TOP",
            "parameters": parameters,
            "plusargs": {"input": "input.hex", "output": "output.hex",
                         **({"weights": "weights.hex"} if load is not None else {})},
            "weight_port_define": "WEIGHT_PORT",
            "usage": "iverilog -g2012 -s tb_vectors -P tb_vectors.NAME=VALUE (each of "
                     "parameters) [-DWEIGHT_PORT for --weights port] tb_vectors.v dwconv.v; "
                     "vvp a.out +input=input.hex +output=output.hex [+weights=weights.hex]",
        },
        "formats": formats.to_dict(kind.name == "separable"),
        "layer": spec.to_dict(),
        "data_format": spec.data_format,
    }
    names = _WEIGHT_NAMES.get(kind.name, ("kernel_raw", "bias_raw"))
    content = {
        "expected.npy": from_channels_last(spec, design.raw_values(out_raw, x_nhwc)),
        "vectors.npz": {"input_raw": x_raw, "output_raw": out_raw,
                        **dict(zip(names, kind.weights_raw(design)))},
        "input.hex": hex_lines(in_words, lanes * formats.input.width),
        "output.hex": hex_lines(out_words, out_lanes * formats.output.width),
    }
    if load is not None:
        content["weights.hex"] = hex_lines(load_values, weight_width)
    content[VECTORS_JSON] = json.dumps(description, indent=2) + "\n"
    return content


def write_vectors(folder, layer, formats, x, lanes, *, reuse=1):
    """Write a depthwise layer's vectors folder all-or-nothing; ``x`` is float64 in the
    layer's data_format."""
    x_nhwc, _ = to_channels_last(layer.spec, x)
    return _write(folder, x, build_vectors(layer, formats, x_nhwc, lanes, reuse=reuse))


def write_design_vectors(folder, design, x):
    """Write the vectors folder of ``design`` (any kind) all-or-nothing; ``x`` in the
    layer's data_format (an int8 layer's integer input stays integers)."""
    x_nhwc, _ = to_channels_last(design.spec, x)
    if np.issubdtype(np.asarray(x).dtype, np.integer) and design.kind.name == "int8":
        x_nhwc = x_nhwc.astype(np.int64)
        x = np.asarray(x)
    else:
        x = np.asarray(x, dtype=np.float64)
    return _write(folder, x, design_vectors(design, x_nhwc))


def _write(folder, x, content):
    with atomic_folder(folder, VECTORS_JSON) as temp:
        temp = pathlib.Path(temp)
        np.save(temp / "input.npy", x)
        for name, value in content.items():
            if name.endswith(".npy"):
                np.save(temp / name, value)
            elif name.endswith(".npz"):
                np.savez(temp / name, **value)
            else:
                (temp / name).write_text(value)
    return content
