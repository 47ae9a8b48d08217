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

Models nest: a Sequential or Functional model can be a layer of another (a MobileNetV2
backbone inside a classifier).  Every layer at every depth is read, with its *scope* (the
names of the models around it).  In ``.keras`` files a nested layer's weights are under its
container's group (``layers/functional/layers/depthwise_conv2d``), numbered per container;
in ``.h5`` files they are under the top-level container's group, named by variable path
(``backbone/block_1_depthwise/kernel`` or ``block_1_depthwise/kernel``).

Keras is never imported: a user who only has model files needs h5py and numpy.
"""

import dataclasses
import io
import json
import pathlib
import re
import zipfile
from dataclasses import dataclass, field

import h5py
import numpy as np

from .layer import Layer
from .limits import CONFIG_BYTES, read_dataset, read_zip_member
from .spec import LayerError, LayerSpec

__all__ = ["ModelFileError", "ModelGraph", "read_model", "load_keras_layer",
           "load_model_layer", "load_all_layers", "depthwise_layer_names", "layer_id", "is_depthwise"]

DEPTHWISE = "DepthwiseConv2D"
#: Layer classes read as a DepthwiseConv2D: Keras' own and QKeras' quantized one.
DEPTHWISE_CLASSES = (DEPTHWISE, "QDepthwiseConv2D")
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
    scope : tuple of str
        Names of the models it is nested in, outermost first (empty at the top level).
        Names are unique within one scope only; ``inputs`` name layers of the same scope.
    """

    name: str
    class_name: str
    config: dict
    inputs: list = field(default_factory=list)
    input_shape: tuple | None = None
    weight_key: str = ""
    scope: tuple = ()

    @property
    def path(self):
        """``outer/inner/name``: unique in the whole model."""
        return "/".join(self.scope + (self.name,))


@dataclass
class ModelGraph:
    """A model file's top-level layers, in file order, and its weights.

    Members
    -------
    path : pathlib.Path
    kind : "keras" or "h5"
    layers : list of ModelLayer
        Every layer at every depth, each nested model's layers right after it.
    outputs : set of (scope, name)
        Layers whose outputs leave their model (they cannot be fused away).
    """

    path: pathlib.Path
    kind: str
    layers: list
    outputs: set
    _weights: object = None        # h5py.File of the weights

    def layer(self, name, scope=()):
        """The layer called ``name`` in ``scope`` (top level by default), or None."""
        scope = tuple(scope)
        return next((layer for layer in self.layers
                     if layer.name == name and layer.scope == scope), None)

    def consumers(self, layer):
        """The layers of ``layer``'s scope that take its output."""
        return [other for other in self.layers
                if other.scope == layer.scope and layer.name in other.inputs]

    def is_output(self, layer):
        """Whether ``layer``'s output leaves its (sub-)model."""
        return (layer.scope, layer.name) in self.outputs

    def input_of(self, layer):
        """The single layer feeding ``layer`` in its scope, or None."""
        if len(layer.inputs) != 1:
            return None
        return self.layer(layer.inputs[0], layer.scope)

    def weights(self, layer, sizes=None):
        """The layer's weight arrays, in Keras' order (kernel, bias / gamma, beta, ...).

        Each is checked before it is read (``limits.read_dataset``): against the size limit
        and, when ``sizes`` lists them, against the number of values each must hold."""
        sizes = list(sizes or [])
        where = f"{self.path}: layer {layer.name!r}"
        try:
            if self.kind == "keras":
                group = self._weights.get(f"{layer.weight_key}/vars")
                if group is None:
                    return []
                keys = sorted(group.keys(), key=lambda k: int(k) if k.isdigit() else -1)
                return [read_dataset(group[k], where, expected=(sizes[i] if i < len(sizes)
                                                                 else None))
                        for i, k in enumerate(keys)]
            group = self._weights.get(f"model_weights/{layer.weight_key}")
            if group is None:
                return []
            names = [n.decode() if isinstance(n, bytes) else str(n)
                     for n in group.attrs.get("weight_names", [])]
            if layer.scope:
                names = self._nested_h5_names(layer, names)
            return [read_dataset(group[n], where, expected=(sizes[i] if i < len(sizes)
                                                            else None))
                    for i, n in enumerate(names)]
        except ModelFileError:
            raise
        except (KeyError, OSError, ValueError) as error:
            raise ModelFileError(f"{self.path}: the weights of layer {layer.name!r} cannot "
                                 f"be read ({error}); re-save the model with Keras") from None

    def _nested_h5_names(self, layer, names):
        """The weight names of a nested layer among its top-level container's.

        A variable's path ends in ``<layer name>/<variable>``, after some of the enclosing
        models' names (Keras writes them for Sequential, not for Functional).  Names repeat
        only across scopes, so the right prefix is the one naming no model outside
        ``layer``'s scope.
        """
        prefixes = {}
        for name in names:
            parts = name.split("/")
            if len(parts) >= 2 and parts[-2] == layer.name:
                prefixes.setdefault(tuple(parts[:-1]), []).append(name)
        fits = [p for p in prefixes if set(p[:-1]) <= set(layer.scope)]
        if len(fits) > 1:
            # prefer the prefix naming the most enclosing models
            most = max(len(p) for p in fits)
            fits = [p for p in fits if len(p) == most]
        if len(fits) != 1:
            if not fits:
                return []
            raise ModelFileError(f"{self.path}: the weights of nested layer {layer.path!r} "
                                 f"cannot be told apart from another layer's; save the "
                                 f"model as .keras")
        return prefixes[fits[0]]

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
            config = json.loads(read_zip_member(archive, "config.json", path,
                                                variable=CONFIG_BYTES))
            weights = read_zip_member(archive, "model.weights.h5", path)
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
        # nested layers' weights live in their top-level container's group
        layer.weight_key = layer.scope[0] if layer.scope else layer.name
    return graph


def _assign_keras_weight_keys(graph, h5):
    """Find each layer's weight group: numbering rule, confirmed by the name attribute.

    Each model numbers its own layers (``layers/<class>[_<n>]``); a nested model's layers
    are under its own group (``<its group>/layers/...``).
    """
    groups = {(): ""}            # scope -> the weight group of that (sub-)model
    counts = {}                  # scope -> {snake-case class: last number used}
    attributes = {}              # layers group -> its name attributes, scanned once
    for layer in graph.layers:
        prefix = groups.get(layer.scope)
        if prefix is None:       # inside a model whose group is unknown
            continue
        layers_path = f"{prefix}layers"
        if layers_path not in attributes:
            attributes[layers_path] = _name_attributes(h5.get(layers_path))
        by_attribute = attributes[layers_path]
        base = snake_case(layer.class_name)
        used = counts.setdefault(layer.scope, {})
        index = used.get(base, -1) + 1
        used[base] = index
        key = base if index == 0 else f"{base}_{index}"
        layer.weight_key = f"{layers_path}/{by_attribute.get(layer.name, key)}"
        groups[layer.scope + (layer.name,)] = f"{layer.weight_key}/"


def _name_attributes(layers_group):
    """{layer name: group key} from the ``vars`` groups' ``name`` attributes."""
    found = {}
    if layers_group is None or not isinstance(layers_group, h5py.Group):
        return found
    for key in layers_group:
        item = layers_group[key]
        vars_group = item.get("vars") if isinstance(item, h5py.Group) else None
        if vars_group is not None and "name" in vars_group.attrs:
            name = vars_group.attrs["name"]
            found[name.decode() if isinstance(name, bytes) else str(name)] = key
    return found


def _parse_model(path, config):
    """Every layer (nested ones too) and the (scope, name) of each model's output layers."""
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise ModelFileError(f"{path}: the model configuration is not a Keras model; save "
                             f"the model with model.save()")
    layers, outputs = [], set()
    _parse_container(path, config, (), layers, outputs)
    return layers, outputs


def _parse_container(path, config, scope, layers, outputs):
    """Append the layers of one (sub-)model, recursing into nested models."""
    class_name = config.get("class_name")
    body = config["config"]
    entries = body.get("layers")
    if not isinstance(entries, list):
        raise ModelFileError(f"{path} holds a {class_name} without a layer list; only "
                             f"Sequential and Functional models can be read")
    if len(scope) > 32:
        raise ModelFileError(f"{path}: models nested more than 32 deep; save a flatter "
                             f"model")
    own, previous = [], None
    sequential = class_name == "Sequential"
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
            raise ModelFileError(f"{path}: a layer entry of the model is malformed; save the "
                                 f"model again")
        layer_config = entry["config"]
        name = entry.get("name") or layer_config.get("name")
        # legacy .h5 files name registered classes "package>Class" (qkeras>QActivation)
        class_name = str(entry.get("class_name")).rpartition(">")[2]
        layer = ModelLayer(name=str(name), class_name=class_name, config=layer_config,
                           scope=scope)
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
        own.append(layer)
        if layer.class_name in _CONTAINERS and isinstance(layer_config.get("layers"), list):
            _parse_container(path, entry, scope + (layer.name,), layers, outputs)
    if sequential:
        if previous:
            outputs.add((scope, previous))
        first = next((layer for layer in own if layer.class_name != "InputLayer"), None)
        given = body.get("build_input_shape")
        if first is not None and first.input_shape is None and isinstance(given, list):
            first.input_shape = _shape(given)
    else:
        outputs.update((scope, h[0]) for h in _histories(body.get("output_layers", [])))


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

def is_depthwise(layer):
    """Whether a ModelLayer is a DepthwiseConv2D (QKeras' QDepthwiseConv2D included)."""
    return layer.class_name in DEPTHWISE_CLASSES


def layer_id(graph, layer):
    """The shortest tail of ``layer.path`` that names it alone in the model.

    A top-level layer, or a nested one whose name is unique, is its plain name; where
    names repeat across nested models the enclosing models' names are prefixed
    (``backbone/dw``).  ``--layer`` accepts this id, the full path or any unique tail.
    """
    parts = layer.path.split("/")
    for start in range(len(parts) - 1, -1, -1):
        tail = "/".join(parts[start:])
        if len(_matching(graph, tail)) == 1:
            return tail
    return layer.path


def depthwise_layer_names(graph):
    """The id (see ``layer_id``) of every depthwise layer, at any depth, in file order."""
    return [layer_id(graph, layer) for layer in graph.layers if is_depthwise(layer)]


def _matching(graph, text):
    return [layer for layer in graph.layers
            if layer.path == text or layer.path.endswith("/" + text)]


def _pick(graph, layer_name):
    names = depthwise_layer_names(graph)
    if layer_name is None:
        if len(names) == 1:
            return _matching(graph, names[0])[0]
        if not names:
            present = ", ".join(f"{layer.path} ({layer.class_name})"
                                for layer in graph.layers) or "no layers"
            raise ModelFileError(f"{graph.path} holds no DepthwiseConv2D layer (it has "
                                 f"{present}); give a model with one")
        raise ModelFileError(f"{graph.path} holds {len(names)} DepthwiseConv2D layers "
                             f"({', '.join(names)}); choose one with --layer NAME")
    found = _matching(graph, str(layer_name).strip("/"))
    if len(found) > 1:
        raise ModelFileError(f"{len(found)} layers of {graph.path.name} are called "
                             f"{layer_name!r} ({', '.join(f.path for f in found)}); give "
                             f"--layer with its path, e.g. {found[0].path!r}")
    layer = found[0] if found else None
    if layer is None or not is_depthwise(layer):
        what = (f"is a {layer.class_name}, not a DepthwiseConv2D" if layer is not None
                else "is not in the model")
        raise ModelFileError(f"layer {layer_name!r} {what}; the DepthwiseConv2D layers of "
                             f"{graph.path.name} are: {', '.join(names) or 'none'}")
    return layer


def _input_shape(graph, layer, seen=()):
    """The layer's input shape: recorded in the file, or followed from the model input."""
    if layer.input_shape is not None:
        return layer.input_shape
    if len(layer.inputs) != 1 or layer.path in seen:
        return None
    source = graph.input_of(layer)
    if source is None:
        return None
    if source.class_name == "InputLayer":
        cfg = source.config
        shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        return _shape(shape) if isinstance(shape, list) else None
    if source.class_name in _SHAPE_KEEPING or source.class_name == "QActivation":
        return _input_shape(graph, source, seen + (layer.path,))
    if source.class_name == "Dense" and isinstance(source.config.get("units"), int):
        shape = _input_shape(graph, source, seen + (layer.path,))
        return None if shape is None else shape[:-1] + (source.config["units"],)
    if is_depthwise(source):
        shape = _input_shape(graph, source, seen + (layer.path,))
        if shape is None:
            return None
        spec = _spec_from_config(graph, source, shape)
        out = spec.output_shape
        if spec.data_format == "channels_first":
            return (out[2], out[0], out[1])
        return out
    return None


def _spec_from_config(graph, layer, shape, activation=None):
    """LayerSpec from a DepthwiseConv2D's configuration and its (batchless) input shape.

    ``activation``: the activation's name when the caller read it (a QKeras quantizer).
    """
    cfg = layer.config
    where = f"layer {layer.path!r} of {graph.path.name}"
    data_format = cfg.get("data_format") or "channels_last"
    if len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape):
        raise LayerError(f"{where} has input shape {list(shape)}; the engine needs a fixed "
                         f"height, width and channel count: build the model with "
                         f"keras.Input((H, W, C))")
    if data_format == "channels_first":
        shape = (shape[1], shape[2], shape[0])
    if activation is None:
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
    """The chosen DepthwiseConv2D of a model file as a Layer (see ``load_model_layer``)."""
    return load_model_layer(path, layer_name, fuse)[0]


def load_model_layer(path, layer_name=None, fuse=False):
    """The chosen depthwise layer of a model file: ``(Layer, formats dict or None)``.

    ``layer_name`` is a layer's name, or its path through nested models where names
    repeat (``backbone/block_1_depthwise``).  With ``fuse``, a BatchNormalization and/or
    ReLU/ReLU6 directly after it is folded in (see ``golden.fuse``); the Layer's ``fused``
    lists what was.  The formats are those QKeras quantizers give (see ``golden.qkeras``):
    a QDepthwiseConv2D's own, a QActivation directly before (input) and directly after
    (output); None when there are none.
    """
    graph = read_model(path)
    try:
        return _load(graph, _pick(graph, layer_name), fuse)
    finally:
        graph.close()


def load_all_layers(path, fuse=False):
    """Every depthwise layer of a model file: a list of ``(id, Layer, formats or None)``.

    The ids are those ``depthwise_layer_names`` gives, in file order.
    """
    graph = read_model(path)
    try:
        found = [(layer_id(graph, layer), layer) for layer in graph.layers
                 if is_depthwise(layer)]
        if not found:
            _pick(graph, None)        # raises the "no DepthwiseConv2D layer" error
        return [(name, *_load(graph, layer, fuse)) for name, layer in found]
    finally:
        graph.close()


def _load(graph, model_layer, fuse):
    from .fuse import fuse_following  # fuse needs this module's readers: import late
    from . import qkeras

    shape = _input_shape(graph, model_layer)
    if shape is None:
        raise ModelFileError(f"{graph.path.name} does not record the input shape of layer "
                             f"{model_layer.path!r}; save the model from Keras 3 as .keras, "
                             f"or build it with keras.Input((H, W, C))")
    where = f"layer {model_layer.path!r} of {graph.path.name}"
    activation, own_output = qkeras.parse_activation(model_layer.config.get("activation"),
                                                     where)
    spec = _spec_from_config(graph, model_layer, shape, activation)
    arrays = graph.weights(model_layer, sizes=[spec.taps * spec.channels
                                               * spec.depth_multiplier, spec.out_channels])
    expected = 2 if spec.use_bias else 1
    if len(arrays) != expected:
        raise ModelFileError(f"{graph.path.name}: layer {model_layer.path!r} has {len(arrays)} "
                             f"weight arrays where {expected} were expected; re-save the "
                             f"model with Keras")
    kernel, bias = arrays[0], arrays[1] if spec.use_bias else None
    quantized = model_layer.class_name == qkeras.QUANTIZED_DEPTHWISE
    cfg = model_layer.config
    weight_q = qkeras.parse_quantizer(cfg.get("depthwise_quantizer"), where) if quantized \
        else None
    bias_q = qkeras.parse_quantizer(cfg.get("bias_quantizer"), where) if quantized else None
    before = graph.input_of(model_layer)
    input_q = (qkeras.parse_quantizer(before.config.get("activation"), f"layer "
                                      f"{before.path!r} of {graph.path.name}")
               if before is not None and before.class_name == qkeras.QACTIVATION else None)
    if input_q is not None and input_q.is_relu:
        input_q = qkeras.Quantizer("quantized_bits", input_q.bits, input_q.integer,
                                   keep_negative=False, alpha=1)  # relu then ufixed = ufixed
    last = model_layer
    output_q = own_output
    if own_output is None and spec.activation == "linear":
        after = _single_consumer(graph, model_layer)
        if after is not None and after.class_name == qkeras.QACTIVATION:
            name, output_q = qkeras.parse_activation(after.config.get("activation"),
                                                     f"layer {after.path!r} of "
                                                     f"{graph.path.name}")
            if output_q is not None or name in ("relu", "relu6"):
                spec = _replace_activation(spec, name)
                last = after
    formats = None
    if any(q is not None for q in (weight_q, bias_q, input_q, output_q)):
        kernel, bias, formats = qkeras.qkeras_formats(
            where, kernel, bias, spec.use_bias, spec.taps, depthwise_quantizer=weight_q,
            bias_quantizer=bias_q, input_quantizer=input_q, output_quantizer=output_q)
    layer = Layer(spec, kernel, bias,
                  fused=(last.name,) if last is not model_layer else ())
    if fuse:
        layer = fuse_following(graph, last, layer, quantized=weight_q is not None,
                               output_quantized=output_q is not None)
    return layer, formats


def _single_consumer(graph, layer):
    """The one layer taking ``layer``'s output, when nothing else needs it."""
    if graph.is_output(layer):
        return None
    consumers = graph.consumers(layer)
    if len(consumers) != 1 or len(consumers[0].inputs) != 1:
        return None
    return consumers[0]


def _replace_activation(spec, activation):
    return dataclasses.replace(spec, activation=activation)
