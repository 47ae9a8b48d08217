"""hls4ml 1.3 (Vivado, io_stream) on QKeras QDepthwiseConv2D layers vs QKeras itself.

hls4ml 1.3 cannot parse QActivation under Keras 3 (assert in keras_v3_to_hls.v2_call), so
the layer is converted alone: its input precision is the input QActivation's format and its
result precision the output QActivation's format; it is fed the input QActivation's output.

Needs qkeras-v3 and hls4ml 1.3 in one venv (TensorFlow backend) and g++:

    KERAS_BACKEND=tensorflow python tests/data/qkeras/measure_hls4ml.py OUT_DIR

Prints, per case, the max |hls4ml - QKeras| and the number of differing values; a depth
multiplier > 1 stops the process (hls4ml's C++ asserts), so that case runs last.
"""
import json
import os
import pathlib
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from make_models import CASES, make_case  # noqa: E402

import hls4ml  # noqa: E402
import keras  # noqa: E402
import qkeras  # noqa: E402,F401  (registers the QKeras layers for load_model)

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "build/hls4ml-vs-qkeras")
out.mkdir(parents=True, exist_ok=True)
IN_FORMAT, OUT_FORMAT = "fixed<8,3,RND_CONV,SAT>", "fixed<10,5,RND_CONV,SAT>"
#: Cases with the quantized_bits(8,2) input and quantized_bits(10,4) output of "signed".
MEASURED = {
    "control_signed": CASES["signed"],
    "unsigned_weights": CASES["unsigned_weights"],
    "auto_po2_m1": dict(CASES["auto_po2"], depth_multiplier=1, weight_scale=(0.05,),
                        out="quantized_bits(10,4,alpha=1)"),
    "multiplier_2": dict(CASES["signed"], depth_multiplier=2),
}


def measure(name, options):
    path = make_case(name, out, **options)
    model = keras.models.load_model(path)
    with np.load(out / f"{name}.npz") as data:
        x, y = data["x"], data["y"]
    x_quantized = np.asarray(model.get_layer("q_in")(x))
    layer = model.get_layer("qdw")
    alone = keras.Sequential([keras.Input(x.shape[1:]),
                              layer.__class__.from_config(layer.get_config())])
    alone.layers[0].set_weights(layer.get_weights())
    config = hls4ml.utils.config_from_keras_model(alone, granularity="name", backend="Vivado")
    for layer_name, layer_config in config["LayerName"].items():
        if layer_name == "qdw":       # weight and bias precision: hls4ml's, from the quantizers
            layer_config.setdefault("Precision", {}).update(result=OUT_FORMAT,
                                                            accum="fixed<40,20>")
        else:
            layer_config["Precision"] = {"result": IN_FORMAT}
    hls_model = hls4ml.converters.convert_from_keras_model(
        alone, hls_config=config, output_dir=str(out / f"prj_{name}"), backend="Vivado",
        io_type="io_stream")
    hls_model.compile()
    y_hls = hls_model.predict(np.ascontiguousarray(x_quantized)).reshape(y.shape)
    return {"max_abs_error": float(np.max(np.abs(y_hls - y))),
            "mismatches": int(np.count_nonzero(y_hls != y)), "values": int(y.size)}


results = {}
for case, case_options in MEASURED.items():
    results[case] = measure(case, case_options)
    print(case, results[case], flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
