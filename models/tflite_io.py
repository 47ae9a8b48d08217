"""Read the int8 DEPTHWISE_CONV_2D ops of a full-integer .tflite model (no TensorFlow).

The flatbuffer is parsed with the `tflite` package.  Every DEPTHWISE_CONV_2D of the main
subgraph (subgraph 0) is a candidate layer, named by its output tensor.  It must be
full-integer: int8 input and output (each one scale and zero point), int8 weights with zero
point 0 (one scale per output channel along dimension 3, or one for the tensor) and an
int32 bias or none.  Its fused activation becomes the output clamp.

TensorFlow's converter writes a *dilated* depthwise convolution as SPACE_TO_BATCH_ND,
DEPTHWISE_CONV_2D (valid, dilation 1), BATCH_TO_SPACE_ND and, with a bias, an ADD.  Without
the ADD the three ops are exactly one dilated layer (SPACE_TO_BATCH_ND pads with the zero
point, so padded taps add nothing), and they are read as one, named by the
BATCH_TO_SPACE_ND's output.  With the ADD the depthwise result is rounded to int8 before
the bias is added in a second requantization, which one layer cannot reproduce: that
pattern is refused with a message saying so.
"""

import math
import pathlib

import numpy as np
import tflite

from ..golden.int8_ref import Int8Layer, activation_range
from .keras_io import ModelFileError, ModelSurvey
from .limits import read_model_file
from ..golden.spec import LayerError, LayerSpec

__all__ = ["Int8Layer", "TFLiteModel", "read_tflite", "load_tflite_layer",
           "load_all_tflite_layers", "survey_tflite_layers", "tflite_layer_names",
           "is_tflite"]

_OPS = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_TYPES = {v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}
_ACTIVATIONS = {v: k for k, v in vars(tflite.ActivationFunctionType).items()
                if not k.startswith("_")}
_DTYPES = {tflite.TensorType.INT8: np.int8, tflite.TensorType.INT32: np.int32}
DEPTHWISE = tflite.BuiltinOperator.DEPTHWISE_CONV_2D
#: The most values an input frame may declare (2**28: 256 MB of int8), so that a shape in
#: the file cannot make the golden model or the engine plan allocate without bound.
MAX_INPUT_VALUES = 1 << 28


def is_tflite(path):
    return pathlib.Path(path).suffix.lower() == ".tflite"


class TFLiteModel:
    """The main subgraph of a parsed .tflite file, with accessors that name what they read.

    Members
    -------
    path : pathlib.Path
    ops : list of (str, list of int, list of int)
        Each operator's builtin name, input and output tensor indices.
    """

    def __init__(self, path, buffer):
        self.path = pathlib.Path(path)
        self._buf = buffer
        if len(buffer) < 8 or not tflite.Model.ModelBufferHasIdentifier(buffer, 0):
            raise ModelFileError(f"{path} is not a TFLite model (no TFL3 flatbuffer "
                                 f"identifier); give a .tflite file from TFLiteConverter")
        try:
            self.model = tflite.Model.GetRootAsModel(buffer, 0)
            if self.model.SubgraphsLength() < 1:
                raise ModelFileError(f"{path} holds no subgraph")
            self.graph = self.model.Subgraphs(0)
            for what, count in (("subgraphs", self.model.SubgraphsLength()),
                                ("operator codes", self.model.OperatorCodesLength()),
                                ("buffers", self.model.BuffersLength()),
                                ("tensors", self.graph.TensorsLength()),
                                ("operators", self.graph.OperatorsLength())):
                # each entry is a 4-byte offset at least: a longer list is a corrupt header
                if count * 4 > len(buffer):
                    raise ModelFileError(f"{path} declares {count:,} {what}, more than its "
                                         f"{len(buffer):,} bytes can hold; the file is corrupt")
            codes = self.model.OperatorCodesLength()
            self.ops = []
            for i in range(self.graph.OperatorsLength()):
                op = self.graph.Operators(i)
                if not 0 <= op.OpcodeIndex() < codes:
                    raise ModelFileError(f"{path}: op {i} refers to operator code "
                                         f"{op.OpcodeIndex()}, but the file has {codes}")
                code = self.model.OperatorCodes(op.OpcodeIndex())
                builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
                name = _OPS.get(builtin, f"builtin operator {builtin}")
                if builtin == tflite.BuiltinOperator.CUSTOM:
                    custom = code.CustomCode()
                    name = f"CUSTOM {custom.decode(errors='replace') if custom else '?'}"
                self.ops.append((name, [int(v) for v in op.InputsAsNumpy()]
                                 if op.InputsLength() else [],
                                 [int(v) for v in op.OutputsAsNumpy()]
                                 if op.OutputsLength() else []))
            self.tensor_count = self.graph.TensorsLength()
            for name, inputs, outputs in self.ops:
                for t in inputs + outputs:
                    if not -1 <= t < self.tensor_count:
                        raise ModelFileError(f"{path}: op {name} refers to tensor {t}, but "
                                             f"the subgraph has {self.tensor_count}")
        except ModelFileError:
            raise
        except Exception as error:  # a truncated or corrupt flatbuffer fails anywhere
            raise ModelFileError(f"{path} is not a readable TFLite model ({type(error).__name__}"
                                 f"); regenerate it with TFLiteConverter") from None

    def _guard(self, what, read):
        try:
            return read()
        except (ModelFileError, LayerError):
            raise
        except Exception as error:
            raise ModelFileError(f"{self.path}: cannot read {what} ({type(error).__name__}); "
                                 f"the file is corrupt") from None

    def tensor_name(self, index):
        return self._guard(f"tensor {index}", lambda: self.graph.Tensors(index).Name()
                           .decode(errors="replace"))

    def tensor_type(self, index):
        return self._guard(f"tensor {index}", lambda: self.graph.Tensors(index).Type())

    def type_name(self, index):
        return _TYPES.get(self.tensor_type(index), "unknown type")

    def shape(self, index):
        """The tensor's declared shape, each dimension checked to be a positive int32."""
        shape = self._guard(f"tensor {index}", lambda: tuple(
            int(v) for v in self.graph.Tensors(index).ShapeAsNumpy())
            if self.graph.Tensors(index).ShapeLength() else ())
        if any(v < 1 for v in shape) or len(shape) > 8:
            raise ModelFileError(f"{self.path}: tensor {self.tensor_name(index)!r} has shape "
                                 f"{list(shape)}; only static shapes of positive sizes (up to "
                                 f"8 dimensions) are supported")
        return shape

    def quantization(self, index):
        """(float32 scales, int64 zero points, quantized dimension); empty without any."""
        def read():
            q = self.graph.Tensors(index).Quantization()
            if q is None or q.ScaleLength() == 0:
                return np.zeros(0, np.float32), np.zeros(0, np.int64), 0
            zps = q.ZeroPointAsNumpy() if q.ZeroPointLength() else np.zeros(0, np.int64)
            return (np.asarray(q.ScaleAsNumpy(), np.float32),
                    np.asarray(zps, np.int64), int(q.QuantizedDimension()))
        return self._guard(f"the quantization of tensor {index}", read)

    def data(self, index):
        """The constant contents of a tensor as its dtype, shaped; None for activations."""
        def read():
            t = self.graph.Tensors(index)
            buffers = self.model.BuffersLength()
            if not 0 <= t.Buffer() < buffers:
                raise ModelFileError(f"{self.path}: tensor {self.tensor_name(index)!r} refers "
                                     f"to buffer {t.Buffer()}, but the file has {buffers}")
            buffer = self.model.Buffers(t.Buffer())
            if buffer is not None and buffer.DataLength():
                table = buffer._tab      # where the data vector starts: inside the file?
                start = table.Vector(table.Offset(4))
                if start + buffer.DataLength() > len(self._buf):
                    raise ModelFileError(
                        f"{self.path}: buffer {t.Buffer()} of tensor "
                        f"{self.tensor_name(index)!r} declares {buffer.DataLength():,} bytes "
                        f"from byte {start:,}, past the end of the file "
                        f"({len(self._buf):,} bytes); the file is corrupt")
            if buffer is None or buffer.DataLength() == 0:
                if buffer is not None and buffer.Offset() > 1:
                    raise ModelFileError(f"{self.path}: tensor {self.tensor_name(index)!r} "
                                         f"is stored outside the flatbuffer, which is not "
                                         f"supported")
                return None
            dtype = _DTYPES.get(t.Type())
            if dtype is None:
                raise ModelFileError(f"{self.path}: constant tensor "
                                     f"{self.tensor_name(index)!r} is {self.type_name(index)}"
                                     f", not int8 or int32")
            shape = self.shape(index)
            count = math.prod(shape)            # Python ints: no overflow
            if buffer.DataLength() != count * np.dtype(dtype).itemsize:
                raise ModelFileError(f"{self.path}: tensor {self.tensor_name(index)!r} holds "
                                     f"{buffer.DataLength():,} bytes, not the {count:,} values "
                                     f"of its shape {list(shape)}")
            raw = np.asarray(buffer.DataAsNumpy(), np.uint8).tobytes()
            return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")) \
                .astype(dtype).reshape(shape)
        return self._guard(f"the data of tensor {index}", read)

    def depthwise_options(self, op_index):
        def read():
            op = self.graph.Operators(op_index)
            table = op.BuiltinOptions()
            if table is None or op.BuiltinOptionsType() != \
                    tflite.BuiltinOptions.DepthwiseConv2DOptions:
                raise ModelFileError(f"{self.path}: op {op_index} (DEPTHWISE_CONV_2D) has no "
                                     f"DepthwiseConv2DOptions")
            options = tflite.DepthwiseConv2DOptions()
            options.Init(table.Bytes, table.Pos)
            return options
        return self._guard(f"the options of op {op_index}", read)

    def producer(self, tensor):
        for i, (_, _, outputs) in enumerate(self.ops):
            if tensor in outputs:
                return i
        return None

    def consumers(self, tensor):
        return [i for i, (_, inputs, _) in enumerate(self.ops) if tensor in inputs]


def read_tflite(path):
    """Parse a .tflite file: a TFLiteModel, or a ModelFileError saying what is wrong."""
    path = pathlib.Path(path)
    try:
        buffer = read_model_file(path)
    except IsADirectoryError:
        raise ModelFileError(f"{path} is a folder, not a .tflite file") from None
    except OSError as error:
        raise ModelFileError(f"cannot read {path}: {error.strerror}; check the path") from None
    return TFLiteModel(path, buffer)


def _candidates(model):
    """[(op index, name, dilated pattern or None)] for each depthwise layer of the model.

    The name is the output tensor's name (the BATCH_TO_SPACE_ND's for a dilated pattern).
    """
    found = []
    for i, (name, inputs, outputs) in enumerate(model.ops):
        if name != "DEPTHWISE_CONV_2D" or not outputs:
            continue
        pattern = _dilated_pattern(model, i)
        out = pattern["bts"][2][0] if pattern else outputs[0]
        found.append((i, model.tensor_name(out), pattern))
    return found


def _dilated_pattern(model, op_index):
    """The SPACE_TO_BATCH_ND -> this op -> BATCH_TO_SPACE_ND [-> ADD] around a depthwise op."""
    _, inputs, outputs = model.ops[op_index]
    before = model.producer(inputs[0])
    after = model.consumers(outputs[0])
    if before is None or model.ops[before][0] != "SPACE_TO_BATCH_ND":
        return None
    if len(after) != 1 or model.ops[after[0]][0] != "BATCH_TO_SPACE_ND":
        return None
    bts = after[0]
    add = model.consumers(model.ops[bts][2][0])
    add = add[0] if len(add) == 1 and model.ops[add[0]][0] == "ADD" else None
    return {"stb": model.ops[before], "bts": model.ops[bts],
            "add": model.ops[add] if add is not None else None, "ops": (before, bts, add)}


def tflite_layer_names(path):
    """The names of the depthwise layers of a .tflite file, in op order."""
    return [name for _, name, _ in _candidates(read_tflite(path))]


def _describe(model):
    ops = ", ".join(f"{i}: {name}" for i, (name, _, _) in enumerate(model.ops))
    return ops or "none"


def _pick(model, layer):
    found = _candidates(model)
    path = model.path
    if not found:
        raise ModelFileError(f"{path} holds no DEPTHWISE_CONV_2D op (its ops: "
                             f"{_describe(model)})")
    names = ", ".join(f"{i}: {name!r}" for i, name, _ in found)
    if layer is None:
        if len(found) == 1:
            return found[0]
        raise ModelFileError(f"{path} holds {len(found)} DEPTHWISE_CONV_2D ops ({names}); "
                             f"choose one with --layer NAME or its op index")
    if isinstance(layer, int) or (isinstance(layer, str) and layer.strip().isdigit()):
        index = int(layer)
        match = [f for f in found if f[0] == index]
        if not match:
            if 0 <= index < len(model.ops):
                raise ModelFileError(f"{path}: op {index} is {model.ops[index][0]}, not a "
                                     f"DEPTHWISE_CONV_2D (the depthwise ops: {names})")
            raise ModelFileError(f"{path} has no op {index}; the depthwise ops: {names}")
        return match[0]
    if not isinstance(layer, str) or not layer:
        raise ModelFileError(f"a layer is chosen by a tensor name or an op index, not "
                             f"{layer!r}")
    exact = [f for f in found if f[1] == layer]
    match = exact or [f for f in found if layer in f[1]]
    if len(match) == 1:
        return match[0]
    if len(match) > 1:
        raise ModelFileError(f"{path}: {layer!r} is part of {len(match)} layer names ("
                             f"{', '.join(repr(f[1]) for f in match)}); give more of it or "
                             f"the op index")
    # the name of some other op's output: say what that op is
    for i, (name, _, outputs) in enumerate(model.ops):
        if any(layer in model.tensor_name(t) for t in outputs):
            raise ModelFileError(f"{path}: {layer!r} is the output of op {i} ({name}), which "
                                 f"is not supported; the depthwise ops: {names}")
    raise ModelFileError(f"{path} has no depthwise layer named {layer!r}; its depthwise ops: "
                         f"{names}")


def _act_params(model, tensor, what, where):
    kind = model.type_name(tensor)
    if kind != "INT8":
        raise ModelFileError(f"{where}: its {what} is {kind}; only int8 activations are "
                             f"supported (convert with inference types int8 and "
                             f"TFLITE_BUILTINS_INT8)")
    scales, zps, _ = model.quantization(tensor)
    if scales.size != 1 or zps.size != 1:
        raise ModelFileError(f"{where}: its {what} must have one scale and zero point, not "
                             f"{scales.size} and {zps.size}")
    if not (np.isfinite(scales[0]) and scales[0] > 0) or not -128 <= zps[0] <= 127:
        raise ModelFileError(f"{where}: its {what} has scale {scales[0]} and zero point "
                             f"{zps[0]}; a positive scale and an int8 zero point are needed")
    return float(scales[0]), int(zps[0])


def _const_int(model, tensor, where, what):
    data = model.data(tensor) if tensor >= 0 else None
    if data is None:
        raise ModelFileError(f"{where}: its {what} is not a constant")
    return data


def _dilation_geometry(model, pattern, where, kernel, dilation_in):
    """(dilation, input shape, pads) of a SPACE_TO_BATCH_ND ... BATCH_TO_SPACE_ND pattern."""
    _, stb_in, _ = pattern["stb"]
    _, bts_in, bts_out = pattern["bts"]
    if len(stb_in) != 3 or len(bts_in) != 3:
        raise ModelFileError(f"{where}: SPACE_TO_BATCH_ND/BATCH_TO_SPACE_ND need block shape "
                             f"and paddings/crops inputs")
    block = _const_int(model, stb_in[1], where, "SPACE_TO_BATCH_ND block shape")
    pads = _const_int(model, stb_in[2], where, "SPACE_TO_BATCH_ND paddings")
    block2 = _const_int(model, bts_in[1], where, "BATCH_TO_SPACE_ND block shape")
    crops = _const_int(model, bts_in[2], where, "BATCH_TO_SPACE_ND crops")
    if (block.shape != (2,) or pads.shape != (2, 2) or crops.shape != (2, 2)
            or not np.array_equal(block, block2) or block.min() < 1):
        raise ModelFileError(f"{where}: its SPACE_TO_BATCH_ND/BATCH_TO_SPACE_ND pair is not "
                             f"one 2-D dilation (block shapes {block.tolist()} and "
                             f"{block2.tolist()})")
    if dilation_in != (1, 1):
        raise ModelFileError(f"{where}: a dilated op inside SPACE_TO_BATCH_ND is not supported")
    effective = pads - crops
    if effective.min() < 0:
        raise ModelFileError(f"{where}: BATCH_TO_SPACE_ND crops {crops.tolist()} exceed the "
                             f"paddings {pads.tolist()}; this is not a dilated convolution")
    shape = model.shape(stb_in[0])
    out_shape = model.shape(bts_out[0])
    return tuple(int(b) for b in block), shape, tuple(int(v) for v in effective.ravel()), \
        out_shape


def _load(model, picked):
    op_index, name, pattern = picked
    _, inputs, outputs = model.ops[op_index]
    where = f"{model.path}: DEPTHWISE_CONV_2D op {op_index} ({name!r})"
    if pattern is not None and pattern["add"] is not None:
        raise ModelFileError(f"{where} is a dilated depthwise convolution with a bias, which "
                             f"the converter wrote as SPACE_TO_BATCH_ND, DEPTHWISE_CONV_2D, "
                             f"BATCH_TO_SPACE_ND and ADD (the sum is rounded to int8 before "
                             f"the bias is added); this two-step form is not supported: "
                             f"convert the layer with use_bias=False or without dilation")
    if len(inputs) < 2 or len(outputs) != 1:
        raise ModelFileError(f"{where} needs input, filter (and bias) and one output")
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else -1
    y = outputs[0]
    in_scale, in_zp = _act_params(model, x, "input", where)
    out_scale, out_zp = _act_params(model, y, "output", where)

    if model.type_name(w) != "INT8":
        raise ModelFileError(f"{where}: its weights are {model.type_name(w)}; only int8 "
                             f"weights are supported")
    kernel = model.data(w)
    if kernel is None:
        raise ModelFileError(f"{where}: its weights are not a constant tensor")
    if kernel.ndim != 4 or kernel.shape[0] != 1:
        raise ModelFileError(f"{where}: its weights have shape {list(kernel.shape)}, not "
                             f"[1, kh, kw, C*M]")
    _, kh, kw, outputs_ch = kernel.shape
    in_shape = model.shape(x)
    if len(in_shape) != 4 or in_shape[0] != 1:
        raise ModelFileError(f"{where}: its input has shape {list(in_shape)}, not "
                             f"[1, H, W, C]")
    if math.prod(in_shape) > MAX_INPUT_VALUES:
        raise ModelFileError(f"{where}: its input shape {list(in_shape)} holds "
                             f"{math.prod(in_shape):,} values, more than the "
                             f"{MAX_INPUT_VALUES:,} supported")
    channels = in_shape[3]
    if channels < 1 or outputs_ch % channels:
        raise ModelFileError(f"{where}: {outputs_ch} output channels is not a multiple of "
                             f"the {channels} input channels")
    multiplier = outputs_ch // channels
    scales, per_channel = _weight_scales(model, w, outputs_ch, where)
    bias, use_bias = _bias(model, b, outputs_ch, where)

    padding, strides, dilation, fused = _options(model, op_index, channels, outputs_ch,
                                                 multiplier, where)

    out_shape = model.shape(y)
    if pattern is not None:
        dilation, in_shape, out_shape, padding, (in_scale, in_zp) = _undo_space_to_batch(
            model, pattern, where, (kh, kw), strides, dilation, padding, multiplier,
            channels, in_scale, (out_scale, out_zp))
    activation = {"RELU": "relu", "RELU6": "relu6"}.get(fused, "linear")
    spec = LayerSpec(tuple(in_shape[1:]), (kh, kw), strides, dilation, padding, multiplier,
                     use_bias, activation, "channels_last", name)
    if tuple(out_shape[1:]) != spec.output_shape or out_shape[:1] != (1,):
        raise ModelFileError(f"{where}: its output has shape {list(out_shape)}, but the "
                             f"options give [1, {', '.join(map(str, spec.output_shape))}]")
    act_min, act_max = activation_range(fused, out_scale, out_zp)
    kernel = kernel.reshape(kh, kw, channels, multiplier)
    try:
        return Int8Layer(spec, kernel, bias.astype(np.int32), scales, in_scale, in_zp,
                         out_scale, out_zp, act_min, act_max, fused, per_channel,
                         source=model.path.name)
    except LayerError as error:
        raise ModelFileError(f"{where}: {error}") from None


def _weight_scales(model, w, outputs_ch, where):
    """The weights' scales, one per output channel, and whether they were per channel."""
    scales, zps, dim = model.quantization(w)
    if scales.size == outputs_ch and outputs_ch > 1:
        if dim != 3:
            raise ModelFileError(f"{where}: its weights are quantized along dimension {dim}, "
                                 f"not 3 (the output channels)")
        per_channel = True
    elif scales.size == 1:
        scales, per_channel = np.repeat(scales, outputs_ch), False
    else:
        raise ModelFileError(f"{where}: its weights have {scales.size} scales; one per "
                             f"output channel ({outputs_ch}) or one are needed")
    if zps.size and np.any(zps != 0):
        raise ModelFileError(f"{where}: its weights have nonzero zero points; int8 weights "
                             f"must be symmetric (zero point 0)")
    return scales, per_channel


def _bias(model, b, outputs_ch, where):
    """The int32 bias (zeros without one, tensor index -1) and whether there is one."""
    if b < 0:
        return np.zeros(outputs_ch, np.int32), False
    if model.type_name(b) != "INT32":
        raise ModelFileError(f"{where}: its bias is {model.type_name(b)}; only int32 "
                             f"bias is supported (int16 activations are not)")
    bias = model.data(b)
    if bias is None or bias.shape != (outputs_ch,):
        raise ModelFileError(f"{where}: its bias must be a constant of "
                             f"{outputs_ch} values")
    return bias, True


def _options(model, op_index, channels, outputs_ch, multiplier, where):
    """(padding, strides, dilation, fused activation) of the op's options, checked."""
    options = model.depthwise_options(op_index)
    padding = {tflite.Padding.SAME: "same", tflite.Padding.VALID: "valid"}.get(
        options.Padding())
    if padding is None:
        raise ModelFileError(f"{where}: padding {options.Padding()} is not SAME or VALID")
    strides = (options.StrideH(), options.StrideW())
    dilation = (options.DilationHFactor() or 1, options.DilationWFactor() or 1)
    declared = options.DepthMultiplier()
    if declared not in (0, multiplier) and not (declared == 1 and multiplier == 1):
        raise ModelFileError(f"{where}: depth_multiplier {declared} does not match its "
                             f"{channels} input and {outputs_ch} output channels")
    fused = _ACTIVATIONS.get(options.FusedActivationFunction(),
                             str(options.FusedActivationFunction()))
    if fused not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
        raise ModelFileError(f"{where}: fused activation {fused} is not supported; NONE, "
                             f"RELU, RELU6 and RELU_N1_TO_1 are")
    if min(strides) < 1 or min(dilation) < 1:
        raise ModelFileError(f"{where}: strides {list(strides)} and dilation "
                             f"{list(dilation)} must be positive")
    return padding, strides, dilation, fused


def _undo_space_to_batch(model, pattern, where, kernel, strides, dilation, padding,
                         multiplier, channels, in_scale, out_params):
    """A SPACE_TO_BATCH_ND, DEPTHWISE_CONV_2D, BATCH_TO_SPACE_ND pattern as one dilated op:
    (dilation, input shape, output shape, padding, input (scale, zero point))."""
    if strides != (1, 1) or padding != "valid":
        raise ModelFileError(f"{where}: a strided or padded op inside SPACE_TO_BATCH_ND "
                             f"is not supported")
    dilation, in_shape, pads, out_shape = _dilation_geometry(model, pattern, where, kernel,
                                                             dilation)
    if model.quantization(pattern["stb"][1][0])[0].tolist() != [in_scale]:
        raise ModelFileError(f"{where}: SPACE_TO_BATCH_ND changes the quantization")
    in_params = _act_params(model, pattern["stb"][1][0], "input", where)
    bts_out = pattern["bts"][2][0]
    out_scale, out_zp = out_params
    if (model.quantization(bts_out)[0].tolist() != [out_scale]
            or model.quantization(bts_out)[1].tolist() != [out_zp]):
        raise ModelFileError(f"{where}: BATCH_TO_SPACE_ND changes the quantization")
    if (len(in_shape) != 4 or in_shape[0] != 1 or in_shape[3] != channels
            or math.prod(in_shape) > MAX_INPUT_VALUES):
        raise ModelFileError(f"{where}: the input of its SPACE_TO_BATCH_ND has shape "
                             f"{list(in_shape)}, not [1, H, W, {channels}]")
    padding = "valid" if not any(pads) else "same"
    probe = LayerSpec(in_shape[1:], kernel, (1, 1), dilation, padding, multiplier)
    if probe.pads != pads:
        raise ModelFileError(f"{where}: SPACE_TO_BATCH_ND/BATCH_TO_SPACE_ND pad the frame "
                             f"by {list(pads)} (top, bottom, left, right), which is "
                             f"neither 'valid' nor 'same'")
    return dilation, in_shape, out_shape, padding, in_params


def _pointwise_after(model, picked):
    """The index of a CONV_2D with a 1x1 kernel that takes the picked layer's output alone,
    or None."""
    op_index, _, pattern = picked
    output = (pattern["bts"] if pattern else model.ops[op_index])[2][0]
    after = model.consumers(output)
    if len(after) != 1 or model.ops[after[0]][0] != "CONV_2D":
        return None
    inputs = model.ops[after[0]][1]
    filters = model.shape(inputs[1]) if len(inputs) > 1 and inputs[1] >= 0 else ()
    return after[0] if len(filters) == 4 and filters[1:3] == (1, 1) else None


def load_tflite_layer(path, layer=None, pointwise=False):
    """The chosen depthwise layer of a .tflite file as an Int8Layer.

    ``layer`` is a unique part of its output tensor's name, or its op index in the main
    subgraph; with one depthwise op it may be omitted.  ``pointwise`` asks for the layer
    joined with a 1x1 CONV_2D after it (``--fuse --pointwise``): there is no int8 separable
    block, so where such a CONV_2D follows, that is an error saying so.
    """
    model = read_tflite(path)
    picked = _pick(model, layer)
    conv = _pointwise_after(model, picked) if pointwise else None
    if conv is not None:
        raise ModelFileError(f"{model.path}: DEPTHWISE_CONV_2D op {picked[0]} "
                             f"({picked[1]!r}) feeds a 1x1 CONV_2D (op {conv}), but int8 "
                             f"separable blocks are not supported; drop --pointwise to read "
                             f"the depthwise op alone")
    return _load(model, picked)


def load_all_tflite_layers(path):
    """Every depthwise layer of a .tflite file: a list of ``(name, Int8Layer)`` in op order."""
    return [(name, layer) for name, layer, _ in survey_tflite_layers(path).entries]


def survey_tflite_layers(path, skip_unsupported=False):
    """Every depthwise layer of a .tflite file (``export --all``): a ``ModelSurvey`` whose
    entries are ``(name, Int8Layer, None)`` in op order.

    A layer that cannot be read stops it with a ModelFileError naming the op and what is
    unsupported; with ``skip_unsupported`` it is listed in ``skipped`` instead.
    """
    model = read_tflite(path)
    found = _candidates(model)
    if not found:
        _pick(model, None)              # raises the "no DEPTHWISE_CONV_2D op" error
    counts = {}
    for name, _, _ in model.ops:
        counts[name] = counts.get(name, 0) + 1
    survey = ModelSurvey(model.path.name, ", ".join(f"{n} {op}" for op, n in counts.items()))
    for picked in found:
        survey.found.append((picked[1], "DEPTHWISE_CONV_2D"))
        try:
            survey.entries.append((picked[1], _load(model, picked), None))
        except ModelFileError as error:
            if not skip_unsupported:
                raise ModelFileError(f"{error}; export --all --skip-unsupported writes the "
                                     f"other layers") from None
            reason = str(error).split(f"({picked[1]!r})", 1)[-1].lstrip(": ")
            survey.skipped.append((picked[1], "DEPTHWISE_CONV_2D", reason))
    return survey
