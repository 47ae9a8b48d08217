"""The configuration of one DepthwiseConv2D layer, validated, with its derived geometry."""

from dataclasses import dataclass, field

__all__ = ["LayerError", "LayerSpec", "ACTIVATIONS", "PADDINGS", "DATA_FORMATS"]

ACTIVATIONS = ("linear", "relu", "relu6")
PADDINGS = ("valid", "same")
DATA_FORMATS = ("channels_last", "channels_first")


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


@dataclass(frozen=True)
class LayerSpec:
    """A DepthwiseConv2D layer as Keras 3 defines it (kernel shape (kh, kw, C, M)).

    Members
    -------
    input_shape : (H, W, C)
        Always height, width, channels, whatever ``data_format`` the arrays use.
    kernel_size, strides, dilation_rate : (int, int)
        Positive; stride and dilation greater than one together are allowed.
    padding : "valid" or "same"
        "same" follows TensorFlow: ``pad_top``/``pad_left`` get half, the rest goes after.
    depth_multiplier : int
        M; output channel ``c*M + m`` is input channel ``c`` with ``kernel[:, :, c, m]``.
    use_bias : bool
    activation : "linear", "relu" or "relu6"
    data_format : "channels_last" or "channels_first"
        Layout of the arrays the layer reads and writes.
    name : str
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
    # derived geometry, filled in by __post_init__
    output_shape: tuple = field(init=False)
    pads: tuple = field(init=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)
        shape = self.input_shape
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
        if self.padding not in PADDINGS:
            raise LayerError(f"padding must be one of {', '.join(PADDINGS)}, "
                             f"not {self.padding!r}")
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
        for axis, size, k, s, d in zip(("height", "width"), shape[:2], self.kernel_size,
                                       self.strides, self.dilation_rate):
            span = (k - 1) * d + 1
            if self.padding == "same":
                out, before, after = _same_padding(size, k, s, d)
            else:
                if span > size:
                    raise LayerError(
                        f"kernel_size {k} with dilation {d} spans {span} pixels, more than "
                        f"the input {axis} {size}; use padding 'same' or a smaller kernel")
                out, before, after = (size - span) // s + 1, 0, 0
            outs.append(out)
            pads.extend((before, after))
        set_("output_shape", (outs[0], outs[1], shape[2] * multiplier))
        set_("pads", tuple(pads))

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

    def to_dict(self):
        """The fields of layer.json that describe the layer (formats are added by export)."""
        return {
            "layer_name": self.name,
            "first_input_shape": list(self.input_shape),
            "padding": self.padding,
            "stride": list(self.strides),
            "kernel_size": list(self.kernel_size),
            "depth_multiplier": self.depth_multiplier,
            "dilation_rate": list(self.dilation_rate),
            "use_bias": self.use_bias,
            "activation": self.activation,
            "data_format": self.data_format,
            "output_shape": list(self.output_shape),
        }
