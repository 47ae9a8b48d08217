"""Remake the .tflite fixtures: small Keras depthwise layers converted to full-integer int8.

Needs TensorFlow (the `dwconv[tflite]` extra; about 2 GB, so keep it in its own venv):

    python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install "tensorflow==2.21.*"
    KERAS_BACKEND=tensorflow /tmp/tfvenv/bin/python tests/data/tflite/make_models.py

Each model NAME gives NAME.tflite and NAME.npz (``x``: the random int8 inputs the tests
feed, (N, H, W, C)).  With ai-edge-litert installed too, NAME.npz also holds the
interpreter's outputs (``auto``: default resolver, ``ref``: reference kernels), so the
tests can check the golden model without the interpreter.
"""

import os
import pathlib
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
import keras

HERE = pathlib.Path(__file__).resolve().parent
FRAMES = 3

# name: (input shape (H, W, C), DepthwiseConv2D keyword arguments, extra)
MODELS = {
    "dw3x3_same": ((8, 8, 8), dict(kernel_size=3, padding="same"), {}),
    "dw3x3_valid_s2": ((9, 9, 4), dict(kernel_size=3, strides=2, padding="valid"), {}),
    "dw3x2_s21_same": ((8, 7, 6), dict(kernel_size=(3, 2), strides=(2, 1), padding="same"), {}),
    "dw5x5_valid_nobias": ((9, 8, 3), dict(kernel_size=5, use_bias=False), {}),
    "dw3x3_m2": ((6, 6, 3), dict(kernel_size=3, padding="same", depth_multiplier=2), {}),
    "dw3x3_m3_s2": ((7, 7, 2), dict(kernel_size=3, strides=2, padding="same",
                                     depth_multiplier=3), {}),
    "dw3x3_relu": ((6, 6, 8), dict(kernel_size=3, padding="same", activation="relu"), {}),
    "dw3x3_relu6": ((6, 6, 8), dict(kernel_size=3, padding="same", activation="relu6"), {}),
    "dw3x3_dil2_same": ((10, 9, 4), dict(kernel_size=3, padding="same",
                                         dilation_rate=2), {}),
    "dw3x3_dil2_valid_nobias": ((10, 9, 4), dict(kernel_size=3, dilation_rate=2,
                                                 use_bias=False), {}),
    "dw3x3_dil2_same_nobias": ((9, 10, 4), dict(kernel_size=3, padding="same",
                                                dilation_rate=(2, 2), use_bias=False), {}),
    "dw3x3_per_tensor": ((6, 6, 8), dict(kernel_size=3, padding="same"),
                         {"per_tensor": True}),
    "dscnn_25x5x64": ((25, 5, 64), dict(kernel_size=3, padding="same", activation="relu"), {}),
    "dw_pw": ((6, 6, 8), dict(kernel_size=3, padding="same", activation="relu"),
              {"pointwise": 16}),
}


def build(shape, kwargs, extra, seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=shape)
    y = keras.layers.DepthwiseConv2D(**kwargs, name="dw")(inputs)
    if extra.get("pointwise"):
        y = keras.layers.Conv2D(extra["pointwise"], 1, activation="relu", name="pw")(y)
    model = keras.Model(inputs, y)
    # give the bias a spread: Keras initializes it to zeros
    weights = model.get_weights()
    rng = np.random.default_rng(seed)
    weights = [w if w.ndim > 1 else rng.normal(0, 0.3, w.shape).astype(np.float32)
               for w in weights]
    model.set_weights(weights)
    return model


def convert(model, shape, extra, seed):
    rng = np.random.default_rng(seed + 1000)

    def representative():
        for _ in range(64):
            yield [rng.normal(0.2, 1.0, (1, *shape)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    if extra.get("per_tensor"):
        converter._experimental_disable_per_channel = True
    return converter.convert()


def interpreter_outputs(blob, x):
    """The depthwise layer's output tensor per frame, from both resolvers (if installed).

    That is the model's output, except before a CONV_2D (the dw_pw pair): there it is the
    DEPTHWISE_CONV_2D's own output, kept with experimental_preserve_all_tensors.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        return {}
    out = {}
    for key, kind in (("auto", OpResolverType.AUTO), ("ref", OpResolverType.BUILTIN_REF)):
        it = Interpreter(model_content=blob, experimental_op_resolver_type=kind,
                         experimental_preserve_all_tensors=True)
        it.allocate_tensors()
        ops = it._get_ops_details()
        tensor = it.get_output_details()[0]["index"]
        if any(op["op_name"] == "CONV_2D" for op in ops):
            tensor = next(op["outputs"][0] for op in ops
                          if op["op_name"] == "DEPTHWISE_CONV_2D")
        frames = []
        for frame in x:
            it.set_tensor(it.get_input_details()[0]["index"], frame[None])
            it.invoke()
            frames.append(it.get_tensor(tensor)[0])
        out[key] = np.stack(frames)
    return out


def main(names):
    for seed, (name, (shape, kwargs, extra)) in enumerate(MODELS.items()):
        if names and name not in names:
            continue
        model = build(shape, kwargs, extra, seed)
        blob = convert(model, shape, extra, seed)
        (HERE / f"{name}.tflite").write_bytes(blob)
        x = np.random.default_rng(seed + 2000).integers(-128, 128, (FRAMES, *shape),
                                                          dtype=np.int8)
        np.savez(HERE / f"{name}.npz", x=x, **interpreter_outputs(blob, x))
        print(f"{name}: {len(blob)} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
