"""Calibration inputs for ``dwconv profile``: each layer's own input activations.

``-i`` may be

- for one layer, an array that fits the layer's input (its data_format): used as it is;
- the model's input, when the source is a ``.keras``/``.h5`` file: Keras (the ``keras``
  extra) runs the float model up to each depthwise layer's input (always for several
  layers from a model file: an array of the right shape may still be another layer's
  input);
- for several layers of an export tree, an array that fits each layer's input;
- an ``.npz`` with one array per layer id (``/`` may be written ``__``), for export trees
  or models Keras cannot run here.
"""

import pathlib
import zipfile

import numpy as np

from .golden.layer import LayerError, to_channels_last

__all__ = ["calibration_inputs", "keras_layer_inputs"]


def _fits(layer, x):
    try:
        to_channels_last(layer.spec, x)
        return True
    except LayerError:
        return False


def _read(path):
    from .cli import UsageError

    path = pathlib.Path(path)
    try:
        with open(path, "rb") as file:
            magic = file.read(6)
    except FileNotFoundError:
        raise UsageError(f"calibration input {path} does not exist; give a .npy or .npz "
                         f"file") from None
    except OSError as error:
        raise UsageError(f"cannot read calibration input {path} ({error})") from None
    try:
        if magic[:2] == b"PK":
            with open(path, "rb") as file, np.load(file, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        if magic != b"\x93NUMPY":
            raise UsageError(f"{path} is not a .npy or .npz file; save it with numpy")
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise UsageError(f"cannot read calibration input {path} ({error}); give a .npy or "
                         f"an .npz made with numpy") from None


def _check(x, where):
    from .cli import UsageError
    x = np.asarray(x)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise UsageError(f"{where} holds {x.dtype} values, not numbers; give a float array")
    if not np.all(np.isfinite(x)):
        raise UsageError(f"{where} holds NaN or Inf values; give finite numbers")
    return x.astype(np.float64)


def calibration_inputs(path, source, layers):
    """``{layer id: array}`` of calibration input for each of ``layers`` (see the module)."""
    from .cli import UsageError

    data = _read(path)
    if isinstance(data, dict):
        found = {}
        for layer_id, layer in layers.items():
            key = next((k for k in (layer_id, layer_id.replace("/", "__"), layer.name)
                        if k in data), None)
            if key is None:
                raise UsageError(f"{path} has no array for layer {layer_id!r}; its arrays "
                                 f"are {', '.join(data) or 'none'}")
            x = _check(data[key], f"{path}[{key}]")
            if not _fits(layer, x):
                raise UsageError(f"{path}[{key}] has shape {list(x.shape)}, which is not "
                                 f"an input of layer {layer_id!r} "
                                 f"({list(layer.spec.input_shape)} as H, W, C)")
            found[layer_id] = x
        return found
    x = _check(data, str(path))
    model_file = pathlib.Path(source).suffix.lower() in (".keras", ".h5")
    found = {} if model_file and len(layers) > 1 else \
        {layer_id: x for layer_id, layer in layers.items() if _fits(layer, x)}
    missing = [layer_id for layer_id in layers if layer_id not in found]
    if missing:
        if not model_file:
            raise UsageError(f"{path} (shape {list(x.shape)}) does not fit the input of "
                             f"layer(s) {', '.join(missing)}; give an .npz with one array "
                             f"per layer id, or the model file")
        found.update(keras_layer_inputs(source, {k: layers[k] for k in missing}, x))
    return found


def keras_layer_inputs(model_path, layers, x):
    """Each layer's input activations, computed by Keras from the model's input ``x``."""
    from .cli import UsageError

    try:
        import keras
    except ImportError:
        raise UsageError("computing each layer's input from the model's input needs Keras "
                         "(pip install dwconv[keras]); or give an .npz with one array per "
                         "layer id") from None
    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as error:      # Keras raises many kinds; all mean "cannot run it here"
        raise UsageError(f"Keras cannot load {model_path} to compute the layers' inputs "
                         f"({type(error).__name__}: {error}); give an .npz with one array "
                         f"per layer id") from None
    tensors = []
    for layer_id, layer in layers.items():
        if "/" in layer_id:
            raise UsageError(f"layer {layer_id!r} is inside a nested model: give its input "
                             f"in an .npz keyed {layer_id.replace('/', '__')!r}")
        tensors.append(_fitting_input(model.get_layer(layer_id), layer, layer_id))
    try:
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        extractor = keras.Model(inputs, tensors)
        outputs = extractor.predict(np.asarray(x, dtype=np.float32), verbose=0)
    except Exception as error:
        raise UsageError(f"the model does not take the calibration input of shape "
                         f"{list(np.shape(x))} ({type(error).__name__}); give the model's "
                         f"input, or an .npz with one array per layer id") from None
    if len(tensors) == 1 and not isinstance(outputs, list):
        outputs = [outputs]
    return {layer_id: np.asarray(out, dtype=np.float64)
            for layer_id, out in zip(layers, outputs)}


def _fitting_input(model_layer, layer, layer_id):
    """The Keras tensor feeding ``model_layer`` that has the engine layer's input shape:
    its input, or before a padding layer folded into it."""
    from .cli import UsageError

    tensor = model_layer.input
    for _ in range(4):
        shape = tuple(tensor.shape[1:])
        wanted = layer.spec.input_shape
        if layer.spec.data_format == "channels_first":
            wanted = (wanted[2], wanted[0], wanted[1])
        if shape == tuple(wanted):
            return tensor
        producer = tensor._keras_history[0]
        if not type(producer).__name__.startswith("ZeroPadding"):
            break
        tensor = producer.input
    raise UsageError(f"cannot find the input of layer {layer_id!r} in the model (shape "
                     f"{list(layer.spec.input_shape)}); give an .npz with one array per "
                     f"layer id")
