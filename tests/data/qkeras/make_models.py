"""Make the QKeras reference models and outputs that tests/test_qkeras.py checks against.

Needs qkeras-v3 (``pip install 'dwconv[qkeras]'``, which brings TensorFlow) and runs on
the TensorFlow backend; dwconv itself is not needed:

    KERAS_BACKEND=tensorflow python tests/data/qkeras/make_models.py [OUT_DIR]

For each case it writes ``<case>.keras`` (QActivation -> QDepthwiseConv2D -> QActivation,
small random weights; ``<case>.h5`` too for the cases in LEGACY) and ``<case>.npz`` holding ``x`` (float32 input), ``y`` (the QKeras
model's output), ``kernel`` and ``bias`` (what the layer's own quantizers make of its float
weights).  ``quantizers.npz`` holds QKeras' output for a sweep of quantizers on inputs
made from a fixed seed (see ``quantizer_inputs``), one array per quantizer.
"""

import os
import pathlib
import sys

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

#: name -> keyword arguments of ``make_case``.  Quantizers are given as QKeras call text.
CASES = {
    # the example: signed 6-bit weights, same padding
    "signed": dict(shape=(7, 6, 4), kernel=3, padding="same",
                   inp="quantized_bits(8,2,alpha=1)", weight="quantized_bits(6,0,alpha=1)",
                   bias="quantized_bits(8,2,alpha=1)", out="quantized_bits(10,4,alpha=1)"),
    # unsigned weights (hls4ml 1.3 gets these wrong), stride 2, valid padding
    "unsigned_weights": dict(shape=(8, 7, 3), kernel=3, strides=2, padding="valid",
                             inp="quantized_bits(8,2,alpha=1)",
                             weight="quantized_bits(6,0,keep_negative=False,alpha=1)",
                             bias="quantized_bits(8,2,alpha=1)",
                             out="quantized_bits(10,4,alpha=1)"),
    # symmetric weights and output (SAT_SYM)
    "symmetric": dict(shape=(6, 6, 4), kernel=(3, 2), padding="same",
                      inp="quantized_bits(8,3,alpha=1)",
                      weight="quantized_bits(5,1,symmetric=1,alpha=1)",
                      bias="quantized_bits(8,2,alpha=1)",
                      out="quantized_bits(8,3,symmetric=1,alpha=1)"),
    # alpha=None on a kernel means auto_po2: a power-of-two scale per depth-multiplier index
    # (scale != 1 here), depth_multiplier 2, a quantized_relu output
    "auto_po2": dict(shape=(6, 7, 3), kernel=3, padding="same", depth_multiplier=2,
                     weight_scale=(0.05, 0.4), inp="quantized_bits(8,2,alpha=1)",
                     weight="quantized_bits(6,0,alpha=None)",
                     bias="quantized_bits(10,3,alpha=1)", out="quantized_relu(8,3)"),
    # quantized_relu in and out, depth_multiplier 3, stride 2 with same padding
    "relu_multiplier": dict(shape=(7, 7, 2), kernel=3, strides=2, padding="same",
                            depth_multiplier=3, inp="quantized_relu(6,2)",
                            weight="quantized_bits(4,1,alpha=1)",
                            bias="quantized_bits(8,3,alpha=1)", out="quantized_relu(6,2)"),
    # the layer's own activation is the output quantizer; no bias
    "own_activation": dict(shape=(6, 6, 4), kernel=3, padding="valid", use_bias=False,
                           inp="quantized_bits(8,2,alpha=1)",
                           weight="quantized_bits(6,1,alpha=1)", activation="quantized_relu(6,2)"),
    # no output quantizer: the float output is the exact sum
    "float_output": dict(shape=(6, 6, 2), kernel=2, padding="valid",
                         inp="quantized_bits(8,2,alpha=1)", weight="quantized_bits(6,0,alpha=1)",
                         bias="quantized_bits(8,2,alpha=1)"),
    # the quantized layers inside a sub-model of a Sequential classifier
    "nested": dict(shape=(6, 6, 4), kernel=3, padding="same", nested=True,
                   inp="quantized_bits(8,2,alpha=1)", weight="quantized_bits(6,0,alpha=None)",
                   bias="quantized_bits(8,2,alpha=1)", out="quantized_bits(10,4,alpha=1)"),
}

#: Cases also saved as legacy .h5 (there QKeras' classes read "qkeras>QDepthwiseConv2D").
LEGACY = ("signed", "auto_po2", "nested")

#: Quantizers swept in quantizers.npz, as QKeras call text; "kernel" ones see (3, 3, 8, 2)
#: tensors (auto_po2 scales per depth-multiplier index), the others flat vectors.
QUANTIZER_SWEEP = [
    "quantized_bits(8,2,alpha=1)", "quantized_bits(6,0,alpha=1)",
    "quantized_bits(10,4,alpha=1)", "quantized_bits(4,1,alpha=1)",
    "quantized_bits(6,0,keep_negative=False,alpha=1)",
    "quantized_bits(8,3,keep_negative=False,alpha=1)",
    "quantized_bits(5,1,symmetric=1,alpha=1)", "quantized_bits(8,3,symmetric=1,alpha=1)",
    "quantized_bits(16,6,alpha=1)", "quantized_bits(3,0,alpha=1)",
    "quantized_relu(6,2)", "quantized_relu(8,0)", "quantized_relu(4,3)",
    "kernel:quantized_bits(6,0,alpha='auto_po2')", "kernel:quantized_bits(4,0,alpha='auto_po2')",
    "kernel:quantized_bits(8,1,alpha='auto_po2')", "kernel:quantized_bits(8,0,alpha=1)",
    "bias:quantized_bits(8,2,alpha='auto_po2')",
]
SWEEP_SAMPLES = 12_000


def quantizer_inputs(entry, index):
    """The float32 input of sweep entry ``index``: reproducible from its seed alone."""
    rng = np.random.default_rng(1000 + index)
    if entry.startswith("kernel:"):
        # 160 kernels of 144 values, magnitudes from 2^-8 to 2^3 so scales vary
        spread = 2.0 ** rng.uniform(-8, 3, (160, 1, 1, 1, 1))
        return (rng.normal(0, 1, (160, 3, 3, 8, 2)) * spread).astype(np.float32)
    if entry.startswith("bias:"):
        spread = 2.0 ** rng.uniform(-6, 2, (SWEEP_SAMPLES // 16, 1))
        return (rng.normal(0, 1, (SWEEP_SAMPLES // 16, 16)) * spread).astype(np.float32)
    x = rng.normal(0, 6, SWEEP_SAMPLES)
    # values exactly on rounding midpoints and at the saturation edges, too
    x[:2000] = rng.integers(-4000, 4000, 2000) / 2.0 ** rng.integers(0, 9, 2000)
    return x.astype(np.float32)


def _quantizer(text):
    import qkeras.quantizers as quantizers

    return quantizers.get_quantizer(text.split(":", 1)[-1])


def make_case(name, folder, *, shape, kernel, inp=None, weight=None, bias=None, out=None,
              activation=None, strides=1, padding="valid", depth_multiplier=1, use_bias=True,
              weight_scale=(0.4,), nested=False, seed=None):
    """Build, save and run one case; returns the .keras path."""
    import keras
    from qkeras import QActivation, QDepthwiseConv2D

    seed = sum(map(ord, name)) if seed is None else seed
    keras.utils.set_random_seed(seed)
    layers = [keras.Input(shape)]
    if inp:
        layers.append(QActivation(inp, name="q_in"))
    dw = QDepthwiseConv2D(kernel, strides=strides, padding=padding,
                          depth_multiplier=depth_multiplier, use_bias=use_bias,
                          depthwise_quantizer=weight, bias_quantizer=bias if use_bias else None,
                          activation=activation, name="qdw")
    layers.append(dw)
    if out:
        layers.append(QActivation(out, name="q_out"))
    if nested:
        inner_in = keras.Input(shape)
        y = inner_in
        for layer in layers[1:]:
            y = layer(y)
        backbone = keras.Model(inner_in, y, name="backbone")
        model = keras.Sequential([keras.Input(shape), backbone,
                                  keras.layers.GlobalAveragePooling2D(name="pool"),
                                  keras.layers.Dense(2, name="head")], name="classifier")
    else:
        model = keras.Sequential(layers, name=name)
    rng = np.random.default_rng(seed)
    k = rng.normal(0, 1, dw.depthwise_kernel.shape)
    scales = np.resize(np.asarray(weight_scale), depth_multiplier)
    weights = [(k * scales).astype(np.float32)]
    if use_bias:
        weights.append(rng.normal(0, 0.7, dw.bias.shape).astype(np.float32))
    dw.set_weights(weights)
    x = rng.normal(0, 2.5, (2,) + tuple(shape)).astype(np.float32)
    if nested:
        probe = keras.Model(backbone.input, backbone.output)
        y = np.asarray(probe(x))
    else:
        y = np.asarray(model(x))
    quantized_kernel = np.asarray(dw.depthwise_quantizer_internal(dw.depthwise_kernel)) \
        if weight else weights[0]
    quantized_bias = (np.asarray(dw.bias_quantizer_internal(dw.bias)) if bias and use_bias
                      else (weights[1] if use_bias else np.zeros(0, np.float32)))
    path = folder / f"{name}.keras"
    model.save(path)
    if name in LEGACY:
        model.save(folder / f"{name}.h5")
    np.savez_compressed(folder / f"{name}.npz", x=x, y=y, kernel=quantized_kernel,
                        bias=quantized_bias)
    return path


def make_sweep(folder):
    arrays = {}
    for index, entry in enumerate(QUANTIZER_SWEEP):
        x = quantizer_inputs(entry, index)
        arrays[f"q{index}"] = np.asarray(_quantizer(entry)(x), dtype=np.float32)
    np.savez_compressed(folder / "quantizers.npz", **arrays)


def main(folder=None):
    folder = pathlib.Path(folder or pathlib.Path(__file__).parent)
    folder.mkdir(parents=True, exist_ok=True)
    for name, options in CASES.items():
        make_case(name, folder, **options)
    make_sweep(folder)


if __name__ == "__main__":
    main(*sys.argv[1:])
