"""Write small .tflite flatbuffers with the `tflite` package's builders (no TensorFlow).

The tests use it to make int8 DEPTHWISE_CONV_2D models of any shape for the interpreter, and
models that the reader must refuse (other ops, int16 tensors, broken quantization).
"""

from dataclasses import dataclass, field

import flatbuffers
import numpy as np
import tflite

_TYPES = {np.dtype(np.float32): tflite.TensorType.FLOAT32,
          np.dtype(np.int8): tflite.TensorType.INT8,
          np.dtype(np.int16): tflite.TensorType.INT16,
          np.dtype(np.int32): tflite.TensorType.INT32,
          np.dtype(np.int64): tflite.TensorType.INT64,
          np.dtype(np.uint8): tflite.TensorType.UINT8}
ACTIVATIONS = {"NONE": tflite.ActivationFunctionType.NONE,
               "RELU": tflite.ActivationFunctionType.RELU,
               "RELU6": tflite.ActivationFunctionType.RELU6,
               "RELU_N1_TO_1": tflite.ActivationFunctionType.RELU_N1_TO_1,
               "TANH": tflite.ActivationFunctionType.TANH}


@dataclass
class Tensor:
    name: str
    shape: tuple
    dtype: object
    data: np.ndarray | None = None
    scales: tuple | None = None
    zero_points: tuple | None = None
    quantized_dimension: int = 0


@dataclass
class Op:
    code: int                       # tflite.BuiltinOperator.*
    inputs: list
    outputs: list
    options: tuple | None = None    # (BuiltinOptions type, function(builder) -> offset)


@dataclass
class Graph:
    tensors: list = field(default_factory=list)
    ops: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)

    def add(self, tensor):
        self.tensors.append(tensor)
        return len(self.tensors) - 1


def _int_vector(builder, start, values, kind="int32"):
    start(builder, len(values))
    for v in reversed(values):
        builder.PrependInt32(int(v)) if kind == "int32" else builder.PrependInt64(int(v))
    return builder.EndVector()


def write(graph):
    """The flatbuffer bytes of a one-subgraph model."""
    b = flatbuffers.Builder(1024)
    # buffer 0 is the empty buffer by convention
    buffer_offsets, tensor_buffers = [], []
    datas = [None] + [t.data for t in graph.tensors if t.data is not None]
    for data in datas:
        if data is None:
            tflite.BufferStart(b)
        else:
            raw = np.ascontiguousarray(data).tobytes()
            vec = b.CreateByteVector(raw)
            tflite.BufferStart(b)
            tflite.BufferAddData(b, vec)
        buffer_offsets.append(tflite.BufferEnd(b))
    k = 1
    for t in graph.tensors:
        if t.data is None:
            tensor_buffers.append(0)
        else:
            tensor_buffers.append(k)
            k += 1

    tensor_offsets = []
    for t, buf in zip(graph.tensors, tensor_buffers):
        name = b.CreateString(t.name)
        shape = _int_vector(b, tflite.TensorStartShapeVector, list(t.shape))
        quant = None
        if t.scales is not None:
            tflite.QuantizationParametersStartScaleVector(b, len(t.scales))
            for s in reversed(t.scales):
                b.PrependFloat32(float(s))
            scales = b.EndVector()
            zps = _int_vector(b, tflite.QuantizationParametersStartZeroPointVector,
                              list(t.zero_points), "int64")
            tflite.QuantizationParametersStart(b)
            tflite.QuantizationParametersAddScale(b, scales)
            tflite.QuantizationParametersAddZeroPoint(b, zps)
            tflite.QuantizationParametersAddQuantizedDimension(b, t.quantized_dimension)
            quant = tflite.QuantizationParametersEnd(b)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, _TYPES[np.dtype(t.dtype)])
        tflite.TensorAddBuffer(b, buf)
        tflite.TensorAddName(b, name)
        if quant is not None:
            tflite.TensorAddQuantization(b, quant)
        tensor_offsets.append(tflite.TensorEnd(b))

    codes = sorted({op.code for op in graph.ops})
    code_offsets = []
    for code in codes:
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        tflite.OperatorCodeAddBuiltinCode(b, code)
        tflite.OperatorCodeAddVersion(b, 1)
        code_offsets.append(tflite.OperatorCodeEnd(b))

    op_offsets = []
    for op in graph.ops:
        ins = _int_vector(b, tflite.OperatorStartInputsVector, op.inputs)
        outs = _int_vector(b, tflite.OperatorStartOutputsVector, op.outputs)
        opts = op.options[1](b) if op.options else None
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, codes.index(op.code))
        tflite.OperatorAddInputs(b, ins)
        tflite.OperatorAddOutputs(b, outs)
        if opts is not None:
            tflite.OperatorAddBuiltinOptionsType(b, op.options[0])
            tflite.OperatorAddBuiltinOptions(b, opts)
        op_offsets.append(tflite.OperatorEnd(b))

    def vector(start, offsets):
        start(b, len(offsets))
        for o in reversed(offsets):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()

    tensors = vector(tflite.SubGraphStartTensorsVector, tensor_offsets)
    ops = vector(tflite.SubGraphStartOperatorsVector, op_offsets)
    ins = _int_vector(b, tflite.SubGraphStartInputsVector, graph.inputs)
    outs = _int_vector(b, tflite.SubGraphStartOutputsVector, graph.outputs)
    sg_name = b.CreateString("main")
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensors)
    tflite.SubGraphAddOperators(b, ops)
    tflite.SubGraphAddInputs(b, ins)
    tflite.SubGraphAddOutputs(b, outs)
    tflite.SubGraphAddName(b, sg_name)
    subgraph = tflite.SubGraphEnd(b)

    subgraphs = vector(tflite.ModelStartSubgraphsVector, [subgraph])
    codes_vec = vector(tflite.ModelStartOperatorCodesVector, code_offsets)
    buffers = vector(tflite.ModelStartBuffersVector, buffer_offsets)
    desc = b.CreateString("dwconv test model")
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, codes_vec)
    tflite.ModelAddSubgraphs(b, subgraphs)
    tflite.ModelAddDescription(b, desc)
    tflite.ModelAddBuffers(b, buffers)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def depthwise_options(strides=(1, 1), dilation=(1, 1), padding="SAME", multiplier=1,
                      activation="NONE"):
    def build(b):
        tflite.DepthwiseConv2DOptionsStart(b)
        tflite.DepthwiseConv2DOptionsAddPadding(
            b, tflite.Padding.SAME if padding == "SAME" else tflite.Padding.VALID)
        tflite.DepthwiseConv2DOptionsAddStrideH(b, strides[0])
        tflite.DepthwiseConv2DOptionsAddStrideW(b, strides[1])
        tflite.DepthwiseConv2DOptionsAddDepthMultiplier(b, multiplier)
        tflite.DepthwiseConv2DOptionsAddFusedActivationFunction(b, ACTIVATIONS[activation])
        tflite.DepthwiseConv2DOptionsAddDilationHFactor(b, dilation[0])
        tflite.DepthwiseConv2DOptionsAddDilationWFactor(b, dilation[1])
        return tflite.DepthwiseConv2DOptionsEnd(b)
    return tflite.BuiltinOptions.DepthwiseConv2DOptions, build


def out_size(size, k, s, d, padding):
    span = (k - 1) * d + 1
    return -(-size // s) if padding == "SAME" else (size - span) // s + 1


def depthwise_graph(kernel, bias, weight_scales, input_shape, *, in_scale, in_zp, out_scale,
                    out_zp, strides=(1, 1), dilation=(1, 1), padding="SAME",
                    activation="NONE", per_channel=True, act_dtype=np.int8,
                    bias_dtype=np.int32, name="dw"):
    """A Graph of one DEPTHWISE_CONV_2D: kernel (kh, kw, C, M) int8, bias (C*M,) int32."""
    kh, kw, c, m = kernel.shape
    h, w, _ = input_shape
    oh = out_size(h, kh, strides[0], dilation[0], padding)
    ow = out_size(w, kw, strides[1], dilation[1], padding)
    g = Graph()
    x = g.add(Tensor("serving_input", (1, h, w, c), act_dtype, scales=(in_scale,),
                     zero_points=(in_zp,)))
    ws = tuple(float(s) for s in weight_scales) if per_channel else (float(weight_scales[0]),)
    filt = g.add(Tensor(f"{name}/depthwise_kernel", (1, kh, kw, c * m), np.int8,
                        data=np.asarray(kernel, np.int8).reshape(1, kh, kw, c * m),
                        scales=ws, zero_points=(0,) * len(ws), quantized_dimension=3))
    inputs = [x, filt]
    if bias is not None:
        bs = tuple(float(np.float32(in_scale) * np.float32(s)) for s in ws)
        inputs.append(g.add(Tensor(f"{name}/bias", (c * m,), bias_dtype,
                                   data=np.asarray(bias, bias_dtype), scales=bs,
                                   zero_points=(0,) * len(bs))))
    else:
        inputs.append(-1)
    y = g.add(Tensor(f"StatefulPartitionedCall:0/{name}", (1, oh, ow, c * m), act_dtype,
                     scales=(out_scale,), zero_points=(out_zp,)))
    g.ops.append(Op(tflite.BuiltinOperator.DEPTHWISE_CONV_2D, inputs, [y],
                    depthwise_options(strides, dilation, padding, m, activation)))
    g.inputs, g.outputs = [x], [y]
    return g


def random_depthwise(rng, input_shape, kernel_size, multiplier=1, *, bias=True,
                     per_channel=True, **options):
    """A random int8 depthwise model (bytes) with scales like the converter's."""
    kh, kw = kernel_size
    c = input_shape[2]
    kernel = rng.integers(-127, 128, size=(kh, kw, c, multiplier)).astype(np.int8)
    scales = rng.uniform(0.002, 0.05, size=c * multiplier).astype(np.float32)
    if not per_channel:
        scales[:] = scales[0]
    in_scale = np.float32(rng.uniform(0.005, 0.05))
    # an output scale near the accumulators' range keeps outputs mostly unclamped
    out_scale = np.float32(in_scale * scales.mean() * rng.uniform(20, 400))
    b = rng.integers(-20000, 20000, size=c * multiplier).astype(np.int32) if bias else None
    g = depthwise_graph(kernel, b, scales, input_shape, in_scale=float(in_scale),
                        in_zp=int(rng.integers(-128, 128)), out_scale=float(out_scale),
                        out_zp=int(rng.integers(-128, 128)), per_channel=per_channel,
                        **options)
    return write(g)
