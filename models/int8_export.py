"""The export folder of an int8 TFLite layer (kind ``TFLiteDepthwiseConv2D``).

layer.json holds the geometry fields of every export (``layer_name``, ``first_input_shape``,
``padding``, ``stride``, ``kernel_size``, ``depth_multiplier``, ``dilation_rate``,
``use_bias``, ``activation`` (relu/relu6 where the clamp is one, else linear),
``data_format``, ``output_shape``), ``kind`` "TFLiteDepthwiseConv2D", and ``quantization``:
``input_scale``, ``input_zero_point``, ``output_scale``, ``output_zero_point``,
``weight_scales`` (one per output channel, C*M; a per-tensor model repeats its one),
``per_channel``, ``quantized_dimension`` (3, the output channels of TFLite's [1, kh, kw, C*M]
filter; null when per-tensor), ``fused_activation`` (NONE, RELU, RELU6, RELU_N1_TO_1),
``act_min``/``act_max`` (the output clamp) and ``source_model`` (the .tflite file's name).
Scales are float32 values written as JSON floats, which read back exactly.

weights.npz holds ``kernel`` (int8, Keras layout kh, kw, C, M), ``bias`` (int32, C*M), and
per output channel what each rounding computes with: ``multiplier`` and ``shift`` (int32,
TFLite's QuantizeMultiplier, the ``double`` rounding's), ``single_multiplier`` and
``single_shift`` (the ``single`` rounding's; they differ only where it saturates) and
``scale`` (float32, the ``fp32`` rounding's).  These are derived from the scales; a folder
whose stored values differ from what its scales give is refused as inconsistent.
"""

import numpy as np

from ..golden.int8_ref import Int8Layer, activation_range
from .keras_io import ModelFileError
from ..golden.spec import LayerError

__all__ = ["INT8_KIND", "int8_document", "int8_arrays", "int8_counts", "read_int8_export"]

INT8_KIND = "TFLiteDepthwiseConv2D"
FIX = "export the layer again with dwconv export"

_RANGES = {"int8": (-128, 127), "int32": (-(1 << 31), (1 << 31) - 1)}
#: weights.npz's members
_MEMBERS = ("kernel", "bias", "multiplier", "shift", "single_multiplier", "single_shift",
            "scale")


def int8_document(layer):
    """The layer.json content of an Int8Layer."""
    document = layer.spec.to_dict()
    document["kind"] = INT8_KIND
    document["quantization"] = layer.to_dict()
    return document


def int8_arrays(layer):
    """weights.npz's arrays of an Int8Layer."""
    single_m0, single_shift = layer.quantized_multipliers("single")
    return {"kernel": layer.kernel, "bias": layer.bias,
            "multiplier": layer.multiplier.astype(np.int32),
            "shift": layer.shift.astype(np.int32),
            "single_multiplier": single_m0.astype(np.int32),
            "single_shift": single_shift.astype(np.int32),
            "scale": layer.float_scales()}


def int8_counts(spec):
    """The number of values each weights.npz member must hold, for ``limits.check_npz``."""
    counts = {name: spec.out_channels for name in _MEMBERS}
    counts["kernel"] = spec.taps * spec.channels * spec.depth_multiplier
    return counts


def _number(q, key, where, kind=float):
    """``q[key]`` as a float or int; a one-line error when missing or not a number."""
    if key not in q:
        raise ModelFileError(f"{where}: 'quantization' has no {key!r}; {FIX}")
    value = q[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (kind is int and not isinstance(value, int)):
        name = "an integer" if kind is int else "a number"
        raise ModelFileError(f"{where}: quantization {key!r} must be {name}, not {value!r}")
    return value if kind is int else _float(value, f"quantization {key!r}", where)


def _float(value, what, where):
    try:
        return float(value)
    except OverflowError:                   # a JSON integer beyond any float
        raise ModelFileError(f"{where}: {what} is too large for a float") from None


def _quantization(document, spec, where):
    q = document.get("quantization")
    if not isinstance(q, dict):
        raise ModelFileError(f"{where}: a {INT8_KIND} needs a 'quantization' object; {FIX}")
    values = {key: _number(q, key, where) for key in ("input_scale", "output_scale")}
    for key in ("input_zero_point", "output_zero_point", "act_min", "act_max"):
        values[key] = _number(q, key, where, int)
    scales = q.get("weight_scales")
    if not isinstance(scales, list) or len(scales) != spec.out_channels or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) for s in scales):
        raise ModelFileError(f"{where}: quantization 'weight_scales' must be a list of "
                             f"{spec.out_channels} numbers (one per output channel)")
    scales = [_float(s, "a weight scale", where) for s in scales]
    per_channel = q.get("per_channel")
    if not isinstance(per_channel, bool):
        raise ModelFileError(f"{where}: quantization 'per_channel' must be true or false, "
                             f"not {per_channel!r}")
    dimension = q.get("quantized_dimension")
    if dimension != (3 if per_channel else None) or isinstance(dimension, bool):
        raise ModelFileError(f"{where}: quantization 'quantized_dimension' is {dimension!r}; "
                             f"per-channel scales run along dimension 3 (null when "
                             f"per-tensor)")
    if not per_channel and len(set(scales)) > 1:
        raise ModelFileError(f"{where}: per-tensor quantization with "
                             f"{len(set(scales))} different weight scales")
    source = q.get("source_model")
    if source is not None and not isinstance(source, str):
        raise ModelFileError(f"{where}: quantization 'source_model' must be a file name, "
                             f"not {source!r}")
    fused = q.get("fused_activation")
    if not isinstance(fused, str):
        raise ModelFileError(f"{where}: quantization 'fused_activation' must be NONE, RELU, "
                             f"RELU6 or RELU_N1_TO_1, not {fused!r}")
    return values, scales, per_channel, fused, source


def _integers(name, array, family, path, shape):
    """``array`` as ``family`` (int8/int32), refused when it is not integers of ``shape`` or
    holds values outside the family's range."""
    if array.shape != tuple(shape):
        raise ModelFileError(f"{path}: {name} has shape {list(array.shape)}, not "
                             f"{list(shape)}; {FIX}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ModelFileError(f"{path}: {name} must be {family} integers, not {array.dtype}; "
                             f"{FIX}")
    low, high = _RANGES[family]
    if array.size and (array.min() < low or array.max() > high):
        raise ModelFileError(f"{path}: {name} holds values outside {family} [{low}, {high}] "
                             f"(from {array.min()} to {array.max()}); {FIX}")
    return array.astype(family)


def read_int8_export(document, spec, weights, where, weights_path):
    """The Int8Layer of an int8 export: ``document`` its layer.json (at ``where``), ``spec``
    the geometry read from it, ``weights`` the arrays of weights.npz by name."""
    if "formats" in document:
        raise ModelFileError(f"{where}: an int8 layer computes in the model's own "
                             f"quantization; drop its 'formats'")
    values, scales, per_channel, fused, source = _quantization(document, spec, where)
    missing = [name for name in _MEMBERS if name not in weights]
    if missing:
        raise ModelFileError(f"{weights_path} must hold {', '.join(map(repr, _MEMBERS))} "
                             f"for a {INT8_KIND} (missing {', '.join(map(repr, missing))}); "
                             f"{FIX}")
    kernel = _integers("kernel", weights["kernel"], "int8", weights_path, spec.kernel_shape)
    bias = _integers("bias", weights["bias"], "int32", weights_path, (spec.out_channels,))
    if not spec.use_bias and bias.any():
        raise ModelFileError(f"{where} says use_bias false but weights.npz holds a nonzero "
                             f"bias; {FIX}")
    try:
        layer = Int8Layer(spec, kernel, bias, np.asarray(scales, np.float32),
                          values["input_scale"], values["input_zero_point"],
                          values["output_scale"], values["output_zero_point"],
                          values["act_min"], values["act_max"], fused, per_channel,
                          source=source)
        clamp = activation_range(fused, layer.output_scale, layer.output_zero_point)
    except LayerError as error:
        raise LayerError(f"{where}: {error}") from None
    expected = {"RELU": "relu", "RELU6": "relu6"}.get(fused, "linear")
    if spec.activation != expected:
        raise ModelFileError(f"{where}: activation {spec.activation!r} does not match the "
                             f"fused activation {fused} (which gives {expected!r}); {FIX}")
    if clamp != (layer.act_min, layer.act_max):
        raise ModelFileError(f"{where}: act_min/act_max [{layer.act_min}, {layer.act_max}] "
                             f"are not what {fused} gives with the output scale and zero "
                             f"point ({list(clamp)}); {FIX}")
    _check_derived(layer, weights, weights_path)
    return layer


def _check_derived(layer, weights, path):
    """The stored per-channel multipliers, shifts and scales equal the scales' own."""
    derived = int8_arrays(layer)
    for name in ("multiplier", "shift", "single_multiplier", "single_shift"):
        stored = _integers(name, weights[name], "int32", path, (layer.spec.out_channels,))
        if not np.array_equal(stored, derived[name]):
            channel = int(np.flatnonzero(stored != derived[name])[0])
            raise ModelFileError(f"{path}: {name} of channel {channel} is {stored[channel]}, "
                                 f"but the scales in layer.json give {derived[name][channel]}; "
                                 f"the folder is inconsistent, {FIX}")
    scale = np.asarray(weights["scale"])
    if scale.dtype != np.float32:
        raise ModelFileError(f"{path}: scale must be float32, not {scale.dtype}; {FIX}")
    if scale.shape != (layer.spec.out_channels,):
        raise ModelFileError(f"{path}: scale has shape {list(scale.shape)}, not "
                             f"[{layer.spec.out_channels}]; {FIX}")
    if not np.array_equal(scale, derived["scale"]):
        channel = int(np.flatnonzero(scale != derived["scale"])[0])
        raise ModelFileError(f"{path}: scale of channel {channel} is {float(scale[channel])}, "
                             f"but the scales in layer.json give "
                             f"{float(derived['scale'][channel])}; "
                             f"the folder is inconsistent, {FIX}")
