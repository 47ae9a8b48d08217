"""The configuration of one depthwise layer, validated, with its derived geometry.

One form serves every depthwise-like Keras layer: a DepthwiseConv1D (or a Conv1D with
``groups`` == channels) is the 2D layer with one row (H = 1, kernel (1, k)), and ``kind``
keeps the Keras class so that arrays, layer.json and messages use its own 1D shapes.
"""

import dataclasses
from dataclasses import dataclass, field

__all__ = ["LayerError", "LayerSpec", "ACTIVATIONS", "PADDINGS", "DATA_FORMATS", "KINDS",
           "KINDS_1D"]

ACTIVATIONS = ("linear", "relu", "relu6")
PADDINGS = ("valid", "same")
DATA_FORMATS = ("channels_last", "channels_first")
#: The Keras classes a LayerSpec can come from; the 1D ones have one row.
KINDS = ("DepthwiseConv2D", "DepthwiseConv1D", "Conv2D", "Conv1D")
KINDS_1D = ("DepthwiseConv1D", "Conv1D")


class LayerError(ValueError):
    """A layer configuration the engine cannot build."""


def _pair(name, value):
    if isinstance(value, bool):
        raise LayerError(f"{name} must be a positive integer or a pair of them, not {value!r}")
    if isinstance(value, int):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        raise LayerError(f"{name} must be a positive integer or a pair of them, "
                         f"not {value!r}") from None
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise LayerError(f"{name} must be a positive integer or a pair of them, not {value!r}")
    if min(pair) < 1:
        raise LayerError(f"{name} must be positive in both axes, not {list(pair)}")
    return pair


def _same_padding(size, kernel, stride, dilation):
    """TensorFlow's rule: out = ceil(in/s); the odd pixel of padding goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return out, total // 2, total - total // 2


def _one_row(name, value, inner):
    """A 1D layer's int or [n] as the 2D pair (inner, n)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (inner, value)
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return (inner, value[0])
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == inner:
        return tuple(value)              # the kept form, (1, n)
    raise LayerError(f"{name} of a 1D layer must be a positive integer or [n], not {value!r}")


def _explicit_pads(value, rank):
    """Explicit padding ``[[top, bottom], [left, right]]`` (1D: ``[[left, right]]``) as a
    2D pair of pairs, or None when ``value`` is not a list."""
    if not isinstance(value, (list, tuple)):
        return None
    shape = "[[left, right]]" if rank == 1 else "[[top, bottom], [left, right]]"
    pairs = list(value)
    if rank == 1 and len(pairs) == 2 and tuple(pairs[0]) == (0, 0):
        pairs = pairs[1:]                # the kept form, ((0, 0), (left, right))
    if (len(pairs) != rank or
            not all(isinstance(p, (list, tuple)) and len(p) == 2 and
                    all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in p)
                    for p in pairs)):
        raise LayerError(f"explicit padding must be {shape} of whole numbers >= 0, "
                         f"not {value!r}")
    pairs = [tuple(p) for p in pairs]
    return ((0, 0), pairs[0]) if rank == 1 else (pairs[0], pairs[1])


@dataclass(frozen=True)
class LayerSpec:
    """A DepthwiseConv2D layer as Keras 3 defines it (kernel shape (kh, kw, C, M)).

    Members
    -------
    input_shape : (H, W, C)
        Always height, width, channels, whatever ``data_format`` the arrays use.  A 1D
        kind may be given (L, C); it is kept as (1, L, C).
    kernel_size, strides, dilation_rate : (int, int)
        Positive; stride and dilation greater than one together are allowed.  A 1D kind
        may give an int or [n]; it is kept as (1, n).
    padding : "valid", "same" or explicit ((top, bottom), (left, right))
        "same" follows TensorFlow: ``pad_top``/``pad_left`` get half, the rest goes after.
        Explicit pads (any amounts >= 0; a 1D kind: ((left, right),)) are what a folded
        ZeroPadding layer gives; they are kept as a pair of pairs.
    depth_multiplier : int
        M; output channel ``c*M + m`` is input channel ``c`` with ``kernel[:, :, c, m]``.
    use_bias : bool
    activation : "linear", "relu" or "relu6"
    data_format : "channels_last" or "channels_first"
        Layout of the arrays the layer reads and writes.
    name : str
    kind : one of KINDS
        The Keras class the layer comes from ("Conv2D"/"Conv1D": ``groups`` == channels).
    rank : 1 or 2 (derived from ``kind``)
    """

    input_shape: tuple
    kernel_size: tuple
    strides: tuple = (1, 1)
    dilation_rate: tuple = (1, 1)
    padding: str = "valid"
    depth_multiplier: int = 1
    use_bias: bool = True
    activation: str = "linear"
    data_format: str = "channels_last"
    name: str = "depthwise_conv2d"
    kind: str = "DepthwiseConv2D"
    # derived geometry, filled in by __post_init__
    output_shape: tuple = field(init=False)
    pads: tuple = field(init=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)
        if self.kind not in KINDS:
            raise LayerError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        rank = self.rank
        shape = self.input_shape
        if rank == 1:
            shape = _one_row_shape(shape)
            for option, inner in (("kernel_size", 1), ("strides", 1), ("dilation_rate", 1)):
                set_(option, _one_row(option, getattr(self, option), inner))
        try:
            shape = tuple(shape)
        except TypeError:
            raise LayerError(f"input_shape must be [H, W, C], not {shape!r}") from None
        if (len(shape) != 3 or
                not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                        for v in shape)):
            raise LayerError(f"input_shape must be three positive integers [H, W, C], "
                             f"not {list(shape)}")
        set_("input_shape", shape)
        set_("kernel_size", _pair("kernel_size", self.kernel_size))
        set_("strides", _pair("strides", self.strides))
        set_("dilation_rate", _pair("dilation_rate", self.dilation_rate))
        explicit = _explicit_pads(self.padding, rank)
        if explicit is not None:
            set_("padding", explicit)
        elif self.padding not in PADDINGS:
            raise LayerError(f"padding must be one of {', '.join(PADDINGS)} or explicit "
                             f"pads, not {self.padding!r}")
        multiplier = self.depth_multiplier
        if not isinstance(multiplier, int) or isinstance(multiplier, bool) or multiplier < 1:
            raise LayerError(f"depth_multiplier must be a positive integer, not {multiplier!r}")
        if not isinstance(self.use_bias, bool):
            raise LayerError(f"use_bias must be true or false, not {self.use_bias!r}")
        activation = "linear" if self.activation in (None, "None") else self.activation
        if activation not in ACTIVATIONS:
            raise LayerError(f"activation {activation!r} is not supported; use one of "
                             f"{', '.join(ACTIVATIONS)}")
        set_("activation", activation)
        if self.data_format not in DATA_FORMATS:
            raise LayerError(f"data_format must be one of {', '.join(DATA_FORMATS)}, "
                             f"not {self.data_format!r}")

        outs, pads = [], []
        axes = ("height", "length" if rank == 1 else "width")
        for index, axis, size, k, s, d in zip((0, 1), axes, shape[:2], self.kernel_size,
                                              self.strides, self.dilation_rate):
            span = (k - 1) * d + 1
            if self.padding == "same":
                out, before, after = _same_padding(size, k, s, d)
            else:
                before, after = explicit[index] if explicit is not None else (0, 0)
                if span > size + before + after:
                    padded = f" padded to {size + before + after}" if before + after else ""
                    raise LayerError(
                        f"kernel_size {k} with dilation {d} spans {span} pixels, more than "
                        f"the input {axis} {size}{padded}; use padding 'same' or a smaller "
                        f"kernel")
                out = (size + before + after - span) // s + 1
            outs.append(out)
            pads.extend((before, after))
        set_("output_shape", (outs[0], outs[1], shape[2] * multiplier))
        set_("pads", tuple(pads))

    rank = property(lambda self: 1 if self.kind in KINDS_1D else 2)
    explicit_padding = property(lambda self: not isinstance(self.padding, str))

    # Short names used throughout golden, hw and sim.
    height = property(lambda self: self.input_shape[0])
    width = property(lambda self: self.input_shape[1])
    channels = property(lambda self: self.input_shape[2])
    out_height = property(lambda self: self.output_shape[0])
    out_width = property(lambda self: self.output_shape[1])
    out_channels = property(lambda self: self.output_shape[2])
    pad_top = property(lambda self: self.pads[0])
    pad_bottom = property(lambda self: self.pads[1])
    pad_left = property(lambda self: self.pads[2])
    pad_right = property(lambda self: self.pads[3])
    taps = property(lambda self: self.kernel_size[0] * self.kernel_size[1])

    @property
    def kernel_shape(self):
        kh, kw = self.kernel_size
        return (kh, kw, self.channels, self.depth_multiplier)

    def check_lanes(self, lanes):
        """Raise a LayerError naming the valid lane counts unless ``lanes`` divides C."""
        valid = [p for p in range(1, self.channels + 1) if self.channels % p == 0]
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes not in valid:
            raise LayerError(f"lanes must divide the {self.channels} channels: use one of "
                             f"{', '.join(map(str, valid))}, not {lanes!r}")
        return lanes

    def with_pads(self, before):
        """This layer after a ZeroPadding of ``((top, bottom), (left, right))``: the same
        output, from the unpadded input, with explicit pads (``same`` added on top)."""
        (top, bottom), (left, right) = before
        if self.rank == 1 and (top or bottom):
            raise LayerError(f"a 1D layer cannot take padding in height, not {top, bottom}")
        h, w, c = self.input_shape
        pt, pb, pl, pr = self.pads
        pads = ((top + pt, bottom + pb), (left + pl, right + pr))
        unpadded = (h - top - bottom, w - left - right, c)
        if min(unpadded) < 1:
            raise LayerError(f"padding {[list(p) for p in before]} is more than the input "
                             f"{list(self.input_shape)} of layer {self.name!r}")
        if self.rank == 1:
            pads, unpadded = (pads[1],), unpadded[1:]
        return dataclasses.replace(self, input_shape=unpadded, padding=pads)

    def shape_1d(self, shape):
        """A 2D shape [1, L, C] as this layer's own: [L, C] for a 1D kind."""
        return list(shape[1:]) if self.rank == 1 else list(shape)

    def to_dict(self):
        """The fields of layer.json that describe the layer (formats are added by export).

        A 1D kind writes its own shapes ([L, C], [k], [[left, right]]).
        """
        axes = slice(1, 2) if self.rank == 1 else slice(0, 2)
        padding = self.padding
        if self.explicit_padding:
            padding = [list(p) for p in padding][axes]
        return {
            "kind": self.kind,
            "layer_name": self.name,
            "first_input_shape": self.shape_1d(self.input_shape),
            "padding": padding,
            "stride": list(self.strides)[axes],
            "kernel_size": list(self.kernel_size)[axes],
            "depth_multiplier": self.depth_multiplier,
            "dilation_rate": list(self.dilation_rate)[axes],
            "use_bias": self.use_bias,
            "activation": self.activation,
            "data_format": self.data_format,
            "output_shape": self.shape_1d(self.output_shape),
        }


def _one_row_shape(shape):
    """A 1D layer's (L, C) input as (1, L, C); (1, L, C) stays."""
    try:
        shape = tuple(shape)
    except TypeError:
        raise LayerError(f"input_shape of a 1D layer must be [L, C], not {shape!r}") from None
    if len(shape) == 2:
        return (1,) + shape
    if len(shape) == 3 and shape[0] == 1:
        return shape
    raise LayerError(f"input_shape of a 1D layer must be [L, C], not {list(shape)}")
