"""Beats on the stream ports: packing raw tensors into lane words and back."""

import numpy as np

__all__ = ["pack_beats", "unpack_beats", "weight_load_values"]


def pack_beats(raw, lanes, width):
    """(N, H, W, C) raw integers to one int per beat, in stream order.

    Pixels in raster order, each as C/P beats of P lanes (channel groups in order); lane 0
    in the least significant bits; each lane ``width`` bits of two's complement.
    """
    raw = np.asarray(raw, dtype=np.int64)
    n, h, w, c = raw.shape
    lanes_of = (raw & ((1 << width) - 1)).reshape(n * h * w * (c // lanes), lanes)
    beats = []
    for row in lanes_of.tolist():
        word = 0
        for p in reversed(range(lanes)):
            word = (word << width) | row[p]
        beats.append(word)
    return beats


def unpack_beats(beats, shape, lanes, fmt):
    """Inverse of ``pack_beats``: beats to raw integers of ``fmt``, shaped (N, H, W, C)."""
    width = fmt.width
    mask = (1 << width) - 1
    values = np.array([(int(beat) >> (p * width)) & mask for beat in beats
                       for p in range(lanes)], dtype=np.int64)
    if fmt.signed:
        values = np.where(values >= 1 << (width - 1), values - (1 << width), values)
    return values.reshape(shape)


def weight_load_values(spec, kernel_raw, bias_raw, width):
    """The weight port's beats: kernel in Keras order (kh, kw, C, M), then the bias."""
    values = list(np.asarray(kernel_raw, dtype=np.int64).reshape(-1))
    if spec.use_bias:
        values += list(np.asarray(bias_raw, dtype=np.int64).reshape(-1))
    return [int(v) & ((1 << width) - 1) for v in values]
