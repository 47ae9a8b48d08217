"""Read DepthwiseConv2D layers from Keras model files with zipfile and h5py only.

Two containers are understood:

``.keras`` (Keras 3)
    A zip holding ``config.json`` (the model's serialized configuration) and
    ``model.weights.h5``.  The weight file does not use the layers' names: Keras walks the
    model's layer list and keys each layer by its class name in snake case, numbered from the
    second of a class on (``layers/depthwise_conv2d``, ``layers/depthwise_conv2d_1``, ...),
    with the variables under ``vars/0``, ``vars/1``, ... in creation order.  Newer Keras
    versions also write the layer's name as the ``name`` attribute of that ``vars`` group;
    the attribute is used when present (and checked against the numbering rule), the rule
    otherwise.
``.h5`` (legacy full-model files)
    ``attrs["model_config"]`` holds the configuration; the weights of layer ``L`` are under
    ``model_weights/L``, in the order of that group's ``weight_names`` attribute.

Keras is never imported: a user who only has model files needs h5py and numpy.
"""

import io
import json
import pathlib
import re
import zipfile
from dataclasses import dataclass, field

import h5py
import numpy as np

from .layer import Layer
from .spec import LayerError, LayerSpec

__all__ = ["ModelFileError", "ModelGraph", "read_model", "load_keras_layer",
           "depthwise_layer_names"]

DEPTHWISE = "DepthwiseConv2D"
_CONTAINERS = ("Sequential", "Functional", "Model")
# Layers that keep the shape of their input: used only to follow shapes through legacy
# files whose configuration does not record each layer's input shape.
_SHAPE_KEEPING = ("BatchNormalization", "Activation", "ReLU", "Dropout", "GaussianNoise",
                  "LeakyReLU", "ELU", "PReLU", "Softmax", "LayerNormalization")


class ModelFileError(ValueError):
    """A model file that cannot be read, or that holds no usable DepthwiseConv2D layer."""


def snake_case(name):
    """Keras' file key for a class name: DepthwiseConv2D -> depthwise_conv2d."""
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


@dataclass
class ModelLayer:
    """One layer of a model file's configuration, with where its weights are.

    Members
    -------
    name, class_name : str
    config : dict
        The layer's own configuration, as Keras wrote it.
    inputs : list of str
        Names of the layers whose outputs it takes (Sequential: the one before).
    input_shape : tuple or None
        Its input shape without the batch axis, when the file records it.
    weight_key : str
        ``.keras``: the tracked path of its weight group; ``.h5``: its layer name.
    """

    name: str
    class_name: str
    config: dict
    inputs: list = field(default_factory=list)
    input_shape: tuple | None = None
    weight_key: str = ""


@dataclass
class ModelGraph:
    """A model file's top-level layers, in file order, and its weights.

    Members
    -------
    path : pathlib.Path
    kind : "keras" or "h5"
    layers : list of ModelLayer
    outputs : set of str
        Names of layers whose outputs leave the model (they cannot be fused away).
    """

    path: pathlib.Path
    kind: str
    layers: list
    outputs: set
    _weights: object = None        # h5py.File of the weights

    def layer(self, name):
        return next((layer for layer in self.layers if layer.name == name), None)

    def consumers(self, name):
        return [layer for layer in self.layers if name in layer.inputs]

    def weights(self, layer):
        """The layer's weight arrays, in Keras' order (kernel, bias / gamma, beta, ...)."""
        try:
            if self.kind == "keras":
                group = self._weights.get(f"{layer.weight_key}/vars")
                if group is None:
                    return []
                keys = sorted(group.keys(), key=lambda k: int(k) if k.isdigit() else -1)
                return [np.asarray(group[k]) for k in keys]
            group = self._weights.get(f"model_weights/{layer.weight_key}")
            if group is None:
                return []
            names = [n.decode() if isinstance(n, bytes) else str(n)
                     for n in group.attrs.get("weight_names", [])]
            return [np.asarray(group[n]) for n in names]
        except (KeyError, OSError, ValueError) as error:
            raise ModelFileError(f"{self.path}: the weights of layer {layer.name!r} cannot "
                                 f"be read ({error}); re-save the model with Keras") from None

    def close(self):
        if self._weights is not None:
            self._weights.close()


# ---------------------------------------------------------------------------------------------
# Reading the containers

def read_model(path):
    """Open a ``.keras`` or legacy ``.h5`` model file as a ModelGraph (call ``close``)."""
    path = pathlib.Path(path)
    if not path.is_file():
        what = "is a folder without layer.json" if path.is_dir() else "does not exist"
        raise ModelFileError(f"{path} {what}; give a .keras or .h5 model file or an "
                             f"exported folder holding layer.json")
    try:
        with open(path, "rb") as file:
            magic = file.read(8)
    except OSError as error:
        raise ModelFileError(f"cannot read {path}: {error.strerror}; check the path and "
                             f"its permissions") from None
    if magic.startswith(b"PK"):
        return _read_keras_zip(path)
    if magic == b"\x89HDF\r\n\x1a\n":
        return _read_legacy_h5(path)
    raise ModelFileError(f"{path} is neither a .keras (zip) nor an .h5 (HDF5) model file; "
                         f"save the model with model.save('model.keras')")


def _read_keras_zip(path):
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names or "model.weights.h5" not in names:
                raise ModelFileError(f"{path} is a zip but not a Keras model (no config.json "
                                     f"and model.weights.h5); save it with model.save()")
            config = json.loads(archive.read("config.json"))
            weights = archive.read("model.weights.h5")
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, OSError,
            EOFError) as error:
        raise ModelFileError(f"{path} is a damaged .keras file ({error}); save the model "
                             f"again") from None
    try:
        h5 = h5py.File(io.BytesIO(weights), "r")
    except OSError as error:
        raise ModelFileError(f"{path}: its model.weights.h5 is damaged ({error}); save the "
                             f"model again") from None
    graph = ModelGraph(path, "keras", *_parse_model(path, config), _weights=h5)
    _assign_keras_weight_keys(graph, h5)
    return graph


def _read_legacy_h5(path):
    try:
        h5 = h5py.File(path, "r")
    except OSError as error:
        raise ModelFileError(f"{path} is a damaged .h5 file ({error}); save the model "
                             f"again") from None
    try:
        text = h5.attrs.get("model_config")
        if text is None:
            raise ModelFileError(f"{path} holds weights only, no model configuration; save "
                                 f"the whole model with model.save('model.keras')")
        if isinstance(text, bytes):
            text = text.decode()
        config = json.loads(text)
        if "model_weights" not in h5:
            raise ModelFileError(f"{path} holds no model_weights group; save the whole "
                                 f"model with model.save('model.keras')")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        h5.close()
        raise ModelFileError(f"{path} has a damaged model configuration ({error}); save "
                             f"the model again") from None
    except ModelFileError:
        h5.close()
        raise
    graph = ModelGraph(path, "h5", *_parse_model(path, config), _weights=h5)
    for layer in graph.layers:
        layer.weight_key = layer.name
    return graph


def _assign_keras_weight_keys(graph, h5):
    """Find each layer's weight group: numbering rule, confirmed by the name attribute."""
    counts = {}
    by_attribute = {}
    layers_group = h5.get("layers")
    if layers_group is not None:
        for key in layers_group:
            vars_group = layers_group[key].get("vars")
            if vars_group is not None and "name" in vars_group.attrs:
                name = vars_group.attrs["name"]
                by_attribute[name.decode() if isinstance(name, bytes) else str(name)] = key
    for layer in graph.layers:
        base = snake_case(layer.class_name)
        index = counts.get(base, -1) + 1
        counts[base] = index
        key = base if index == 0 else f"{base}_{index}"
        layer.weight_key = f"layers/{by_attribute.get(layer.name, key)}"


def _parse_model(path, config):
    """The top-level layers and the output layer names of a serialized model."""
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise ModelFileError(f"{path}: the model configuration is not a Keras model; save "
                             f"the model with model.save()")
    class_name = config.get("class_name")
    body = config["config"]
    entries = body.get("layers")
    if not isinstance(entries, list):
        raise ModelFileError(f"{path} holds a {class_name} without a layer list; only "
                             f"Sequential and Functional models can be read")
    layers, previous = [], None
    sequential = class_name == "Sequential"
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
            raise ModelFileError(f"{path}: a layer entry of the model is malformed; save the "
                                 f"model again")
        layer_config = entry["config"]
        name = entry.get("name") or layer_config.get("name")
        layer = ModelLayer(name=str(name), class_name=str(entry.get("class_name")),
                           config=layer_config)
        build = entry.get("build_config")
        if isinstance(build, dict) and isinstance(build.get("input_shape"), list):
            layer.input_shape = _shape(build["input_shape"])
        if sequential:
            layer.inputs = [] if previous is None else [previous]
            previous = layer.name
        else:
            nodes = entry.get("inbound_nodes") or []
            histories = list(_histories(nodes[0])) if nodes else []
            layer.inputs = [h[0] for h in histories]
            shapes = [h[1] for h in histories if h[1] is not None]
            if layer.input_shape is None and len(shapes) == 1:
                layer.input_shape = shapes[0]
        layers.append(layer)
    if sequential:
        outputs = {previous} if previous else set()
        first = next((layer for layer in layers if layer.class_name != "InputLayer"), None)
        given = body.get("build_input_shape")
        if first is not None and first.input_shape is None and isinstance(given, list):
            first.input_shape = _shape(given)
    else:
        outputs = {h[0] for h in _histories(body.get("output_layers", []))}
    return layers, outputs


def _histories(node):
    """(layer name, shape or None) of every tensor a serialized inbound node refers to.

    Keras 3 writes ``{"args": [{"class_name": "__keras_tensor__", "config": {"shape": ...,
    "keras_history": [name, node, index]}}], "kwargs": ...}``; Keras 2 wrote lists
    ``[name, node, index, kwargs]``; output_layers use ``[name, node, index]``.
    """
    if isinstance(node, dict):
        if node.get("class_name") == "__keras_tensor__":
            cfg = node.get("config", {})
            history = cfg.get("keras_history")
            if isinstance(history, list) and history:
                shape = cfg.get("shape")
                yield str(history[0]), _shape(shape) if isinstance(shape, list) else None
            return
        for key in ("args", "kwargs"):
            if key in node:
                yield from _histories(node[key])
        return
    if isinstance(node, list):
        if len(node) in (3, 4) and isinstance(node[0], str) and isinstance(node[1], int):
            yield node[0], None
            return
        for item in node:
            yield from _histories(item)


def _shape(batch_shape):
    """A serialized shape with its batch axis to a tuple without it."""
    return tuple(batch_shape[1:])


# ---------------------------------------------------------------------------------------------
# DepthwiseConv2D layers

def depthwise_layer_names(graph):
    return [layer.name for layer in graph.layers if layer.class_name == DEPTHWISE]


def _pick(graph, layer_name):
    names = depthwise_layer_names(graph)
    if layer_name is None:
        if len(names) == 1:
            return graph.layer(names[0])
        if not names:
            present = ", ".join(f"{layer.name} ({layer.class_name})"
                                for layer in graph.layers) or "no layers"
            raise ModelFileError(f"{graph.path} holds no DepthwiseConv2D layer (it has "
                                 f"{present}); give a model with one")
        raise ModelFileError(f"{graph.path} holds {len(names)} DepthwiseConv2D layers "
                             f"({', '.join(names)}); choose one with --layer NAME")
    layer = graph.layer(layer_name)
    if layer is None or layer.class_name != DEPTHWISE:
        what = (f"is a {layer.class_name}, not a DepthwiseConv2D" if layer is not None
                else "is not in the model")
        raise ModelFileError(f"layer {layer_name!r} {what}; the DepthwiseConv2D layers of "
                             f"{graph.path.name} are: {', '.join(names) or 'none'}")
    return layer


def _input_shape(graph, layer, seen=()):
    """The layer's input shape: recorded in the file, or followed from the model input."""
    if layer.input_shape is not None:
        return layer.input_shape
    if len(layer.inputs) != 1 or layer.name in seen:
        return None
    source = graph.layer(layer.inputs[0])
    if source is None:
        return None
    if source.class_name == "InputLayer":
        cfg = source.config
        shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        return _shape(shape) if isinstance(shape, list) else None
    if source.class_name in _SHAPE_KEEPING:
        return _input_shape(graph, source, seen + (layer.name,))
    if source.class_name == "Dense" and isinstance(source.config.get("units"), int):
        shape = _input_shape(graph, source, seen + (layer.name,))
        return None if shape is None else shape[:-1] + (source.config["units"],)
    if source.class_name == DEPTHWISE:
        shape = _input_shape(graph, source, seen + (layer.name,))
        if shape is None:
            return None
        spec = _spec_from_config(graph, source, shape)
        out = spec.output_shape
        if spec.data_format == "channels_first":
            return (out[2], out[0], out[1])
        return out
    return None


def _spec_from_config(graph, layer, shape):
    """LayerSpec from a DepthwiseConv2D's configuration and its (batchless) input shape."""
    cfg = layer.config
    where = f"layer {layer.name!r} of {graph.path.name}"
    data_format = cfg.get("data_format") or "channels_last"
    if len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape):
        raise LayerError(f"{where} has input shape {list(shape)}; the engine needs a fixed "
                         f"height, width and channel count: build the model with "
                         f"keras.Input((H, W, C))")
    if data_format == "channels_first":
        shape = (shape[1], shape[2], shape[0])
    activation = cfg.get("activation", "linear")
    if not isinstance(activation, str) and activation is not None:
        raise LayerError(f"{where} has a custom activation; use linear, relu or relu6, or "
                         f"put the activation in its own layer")
    if activation not in (None, "linear", "relu", "relu6"):
        raise LayerError(f"{where} has activation {activation!r}, which the engine does not "
                         f"do; use linear, relu or relu6")
    for option, default in (("groups", 1),):
        if cfg.get(option, default) != default:
            raise LayerError(f"{where} sets {option}={cfg[option]!r}, which the engine does "
                             f"not support")
    try:
        return LayerSpec(
            input_shape=tuple(shape), kernel_size=_ints(cfg.get("kernel_size")),
            strides=_ints(cfg.get("strides", 1)), dilation_rate=_ints(cfg.get("dilation_rate", 1)),
            padding=str(cfg.get("padding", "valid")).lower(),
            depth_multiplier=cfg.get("depth_multiplier", 1),
            use_bias=cfg.get("use_bias", True), activation=activation or "linear",
            data_format=data_format, name=layer.name)
    except LayerError as error:
        raise LayerError(f"{where}: {error}") from None


def _ints(value):
    return list(value) if isinstance(value, list) else value


def load_keras_layer(path, layer_name=None, fuse=False):
    """The chosen DepthwiseConv2D of a model file as a Layer.

    With ``fuse``, a BatchNormalization and/or ReLU/ReLU6 directly after it is folded in
    (see ``golden.fuse``); the Layer's ``fused`` lists what was.
    """
    from .fuse import fuse_following  # fuse needs this module's readers: import late

    graph = read_model(path)
    try:
        layer = _pick(graph, layer_name)
        shape = _input_shape(graph, layer)
        if shape is None:
            raise ModelFileError(f"{graph.path.name} does not record the input shape of layer "
                                 f"{layer.name!r}; save the model from Keras 3 as .keras, or "
                                 f"build it with keras.Input((H, W, C))")
        spec = _spec_from_config(graph, layer, shape)
        arrays = graph.weights(layer)
        expected = 2 if spec.use_bias else 1
        if len(arrays) != expected:
            raise ModelFileError(f"{graph.path.name}: layer {layer.name!r} has {len(arrays)} "
                                 f"weight arrays where {expected} were expected; re-save the "
                                 f"model with Keras")
        result = Layer(spec, arrays[0], arrays[1] if spec.use_bias else None)
        if fuse:
            result = fuse_following(graph, layer, result)
        return result
    finally:
        graph.close()
