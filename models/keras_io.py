"""Read depthwise-like layers from Keras model files with zipfile and h5py only.

Depthwise-like: DepthwiseConv2D (QKeras' QDepthwiseConv2D too), DepthwiseConv1D,
SeparableConv2D/1D (read as a SeparableLayer) and Conv1D/Conv2D with ``groups`` == input
channels (Keras' grouped kernel (kh, kw, 1, C*M) is the depthwise kernel reshaped to
(kh, kw, C, M): filter f reads channel f // M).  A Conv with 1 < groups < channels is a
grouped convolution and refused.

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

from ..golden.layer import Layer, SeparableLayer
from .limits import CONFIG_BYTES, read_dataset, read_zip_member
from ..golden.spec import LayerError, LayerSpec

__all__ = ["ModelFileError", "ModelGraph", "ModelSurvey", "read_model", "load_keras_layer",
           "load_model_layer", "load_all_layers", "survey_layers", "depthwise_layer_names",
           "layer_id", "is_depthwise", "model_summary"]

DEPTHWISE = "DepthwiseConv2D"
#: Layer classes read as a DepthwiseConv2D: Keras' own and QKeras' quantized one.
DEPTHWISE_CLASSES = (DEPTHWISE, "QDepthwiseConv2D")
#: Keras classes read as a depthwise layer of one row.
DEPTHWISE_1D = "DepthwiseConv1D"
SEPARABLE_CLASSES = ("SeparableConv2D", "SeparableConv1D")
#: Convolutions that are depthwise when ``groups`` equals the input channels.
GROUPED_CLASSES = ("Conv2D", "Conv1D")
ZERO_PADDING_CLASSES = ("ZeroPadding2D", "ZeroPadding1D")
#: What "depthwise-like" means in messages.
DEPTHWISE_LIKE_OTHERS = ("DepthwiseConv1D, SeparableConv2D/1D, Conv2D/1D with groups == "
                         "channels")
DEPTHWISE_LIKE = ("DepthwiseConv2D, DepthwiseConv1D, SeparableConv2D, SeparableConv1D or "
                  "Conv1D/Conv2D with groups == channels")
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
    """Whether a ModelLayer is depthwise-like: a DepthwiseConv2D (QKeras' included), a
    DepthwiseConv1D, a SeparableConv1D/2D, or a Conv1D/2D with ``groups`` > 1 (a grouped
    one with fewer groups than channels is found, and refused when it is read)."""
    if layer.class_name in GROUPED_CLASSES:
        groups = layer.config.get("groups", 1)
        return isinstance(groups, int) and not isinstance(groups, bool) and groups > 1
    return layer.class_name in DEPTHWISE_CLASSES + (DEPTHWISE_1D,) + SEPARABLE_CLASSES


def layer_kind(layer):
    """The kind a depthwise-like ModelLayer is counted under (``Conv2D`` with groups: so)."""
    return layer.class_name


def model_summary(graph, limit=8):
    """The model's layers by kind and count, most common first, e.g. ``132 layers: 40
    Conv2D, 34 BatchNormalization, ...`` (at most ``limit`` kinds named)."""
    counts = {}
    for layer in graph.layers:
        counts[layer.class_name] = counts.get(layer.class_name, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    text = ", ".join(f"{n} {kind}" for kind, n in ranked[:limit])
    if len(ranked) > limit:
        text += (f" and {sum(n for _, n in ranked[limit:])} more of {len(ranked) - limit} "
                 f"other kinds")
    count = len(graph.layers)
    return f"{count} layer{'s' if count != 1 else ''}: {text}" if count else "no layers"


def _few(names, limit=6):
    """Some names, with how many more, for a message that must stay short."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


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
            raise ModelFileError(f"{graph.path.name} holds no DepthwiseConv2D or other "
                                 f"depthwise-like layer ({DEPTHWISE_LIKE_OTHERS}); it has "
                                 f"{model_summary(graph)}; give a model with one")
        kinds = {layer_kind(layer) for layer in graph.layers if is_depthwise(layer)}
        kind = kinds.pop() if len(kinds) == 1 else "depthwise-like"
        raise ModelFileError(f"{graph.path.name} holds {len(names)} {kind} layers "
                             f"({_few(names)}); choose one with --layer NAME, or use "
                             f"export --all")
    found = _matching(graph, str(layer_name).strip("/"))
    if len(found) > 1:
        raise ModelFileError(f"{len(found)} layers of {graph.path.name} are called "
                             f"{layer_name!r} ({', '.join(f.path for f in found)}); give "
                             f"--layer with its path, e.g. {found[0].path!r}")
    layer = found[0] if found else None
    if layer is None or not is_depthwise(layer):
        what = (f"is a {layer.class_name}, not a depthwise-like layer ({DEPTHWISE_LIKE})"
                if layer is not None else "is not in the model")
        raise ModelFileError(f"layer {layer_name!r} {what}; the depthwise-like layers of "
                             f"{graph.path.name} are: {_few(names) or 'none'}")
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
    if source.class_name in ZERO_PADDING_CLASSES:
        shape = _input_shape(graph, source, seen + (layer.path,))
        pads = _zero_pads(source)
        if shape is None or pads is None or len(shape) != len(pads) + 1:
            return None
        first = source.config.get("data_format") == "channels_first"
        spatial = shape[1:] if first else shape[:-1]
        spatial = tuple(n + a + b for n, (a, b) in zip(spatial, pads))
        return (shape[0],) + spatial if first else spatial + (shape[-1],)
    if is_depthwise(source):
        shape = _input_shape(graph, source, seen + (layer.path,))
        if shape is None:
            return None
        spec = _spec_from_config(graph, source, shape)
        out = spec.output_shape
        if source.class_name in SEPARABLE_CLASSES:
            out = out[:2] + (source.config.get("filters"),)
        out = out[1:] if spec.rank == 1 else out
        if spec.data_format == "channels_first":
            return (out[-1],) + tuple(out[:-1])
        return tuple(out)
    return None


def _zero_pads(layer):
    """A ZeroPadding1D/2D's pads per spatial axis, ((before, after), ...), or None."""
    pads = layer.config.get("padding", 1)
    rank = 1 if layer.class_name == "ZeroPadding1D" else 2
    if isinstance(pads, int):
        pads = [(pads, pads)] * rank
    elif rank == 1 and isinstance(pads, list) and len(pads) == 2 and \
            all(isinstance(v, int) for v in pads):
        pads = [pads]
    elif isinstance(pads, list) and len(pads) == rank and all(isinstance(v, int) for v in pads):
        pads = [(v, v) for v in pads]
    if (not isinstance(pads, list) or len(pads) != rank or
            not all(isinstance(p, (list, tuple)) and len(p) == 2 and
                    all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in p)
                    for p in pads)):
        return None
    return tuple(tuple(p) for p in pads)


def _spec_from_config(graph, layer, shape, activation=None):
    """LayerSpec of a depthwise-like layer's (depthwise part's) configuration and its
    (batchless) input shape.

    ``activation``: the activation's name when the caller read it (a QKeras quantizer).
    A separable layer's depthwise part has no bias and a linear activation (they belong
    to the pointwise stage).
    """
    cfg = layer.config
    where = f"layer {layer.path!r} of {graph.path.name}"
    kind = layer.class_name
    rank = 1 if kind.endswith("1D") else 2
    data_format = cfg.get("data_format") or "channels_last"
    if len(shape) != rank + 1 or not all(isinstance(v, int) and v > 0 for v in shape):
        dims = "(L, C)" if rank == 1 else "(H, W, C)"
        raise LayerError(f"{where} has input shape {list(shape)}; the engine needs a fixed "
                         f"{'length' if rank == 1 else 'height, width'} and channel count: "
                         f"build the model with keras.Input({dims})")
    if data_format == "channels_first":
        shape = tuple(shape[1:]) + (shape[0],)
    channels = shape[-1]
    if activation is None:
        activation = cfg.get("activation", "linear")
    if not isinstance(activation, str) and activation is not None:
        raise LayerError(f"{where} has a custom activation; use linear, relu or relu6, or "
                         f"put the activation in its own layer")
    if activation not in (None, "linear", "relu", "relu6"):
        raise LayerError(f"{where} has activation {activation!r}, which the engine does not "
                         f"do; use linear, relu or relu6")
    multiplier = cfg.get("depth_multiplier", 1)
    use_bias = cfg.get("use_bias", True)
    spec_kind = kind if kind in ("DepthwiseConv1D", "Conv1D", "Conv2D") else (
        "DepthwiseConv1D" if rank == 1 else "DepthwiseConv2D")
    if kind in GROUPED_CLASSES:
        groups, filters = cfg.get("groups", 1), cfg.get("filters")
        if groups != channels:
            raise LayerError(f"{where} is a grouped convolution ({groups} groups of "
                             f"{channels} channels), not a depthwise one; the engine needs "
                             f"groups == channels")
        if not isinstance(filters, int) or filters < 1 or filters % channels:
            raise LayerError(f"{where} has {filters!r} filters, not a multiple of its "
                             f"{channels} channels")
        multiplier = filters // channels
    elif kind in SEPARABLE_CLASSES:
        use_bias, activation = False, "linear"
    elif cfg.get("groups", 1) != 1:
        raise LayerError(f"{where} sets groups={cfg['groups']!r}, which the engine does "
                         f"not support")
    padding = cfg.get("padding", "valid")
    padding = str(padding).lower() if isinstance(padding, str) else padding
    kernel_size, dilation = _ints(cfg.get("kernel_size")), _ints(cfg.get("dilation_rate", 1))
    if padding == "causal" and rank == 1:
        # Keras' causal padding: (k - 1) * d zeros before, none after
        k = kernel_size[0] if isinstance(kernel_size, list) else kernel_size
        d = dilation[0] if isinstance(dilation, list) else dilation
        if isinstance(k, int) and isinstance(d, int):
            padding = [[(k - 1) * d, 0]]
    elif not isinstance(padding, str):
        raise LayerError(f"{where} has padding {padding!r}; use 'valid' or 'same' (or a "
                         f"ZeroPadding layer before it with --fuse)")
    try:
        return LayerSpec(
            input_shape=tuple(shape), kernel_size=kernel_size,
            strides=_ints(cfg.get("strides", 1)), dilation_rate=dilation,
            padding=padding, depth_multiplier=multiplier,
            use_bias=use_bias, activation=activation or "linear",
            data_format=data_format, name=layer.name, kind=spec_kind)
    except LayerError as error:
        raise LayerError(f"{where}: {error}") from None


def _ints(value):
    return list(value) if isinstance(value, list) else value


def load_keras_layer(path, layer_name=None, fuse=False, pointwise=False):
    """The chosen depthwise-like layer of a model file (see ``load_model_layer``)."""
    return load_model_layer(path, layer_name, fuse, pointwise)[0]


def load_model_layer(path, layer_name=None, fuse=False, pointwise=False):
    """The chosen depthwise-like layer of a model file: ``(layer, formats dict or None)``.

    The layer is a Layer, or a SeparableLayer for a SeparableConv1D/2D (and, with
    ``fuse`` and ``pointwise``, a DepthwiseConv2D joined with the 1x1 Conv2D after it).
    ``layer_name`` is a layer's name, or its path through nested models where names
    repeat (``backbone/block_1_depthwise``).  With ``fuse``, a ZeroPadding directly before
    it and a BatchNormalization and/or ReLU/ReLU6 directly after it are folded in (see
    ``models.fuse``); the layer's ``fused`` lists what was.  The formats are those QKeras
    quantizers give (see ``models.qkeras``): a QDepthwiseConv2D's own, a QActivation
    directly before (input) and directly after (output); None when there are none.
    """
    graph = read_model(path)
    try:
        return _load(graph, _pick(graph, layer_name), fuse, pointwise)
    finally:
        graph.close()


@dataclass
class ModelSurvey:
    """What ``survey_layers`` found in a model file, and what it read.

    Members
    -------
    model : str
        The file's name.
    summary : str
        The model's layers by kind and count (``model_summary``).
    found : list of (id, kind)
        Every depthwise-like layer, in file order.
    entries : list of (id, layer, formats dict or None)
        The layers read (Layer or SeparableLayer).
    skipped : list of (id, kind, reason)
        Those left out (``skip_unsupported``), each with a short reason.
    """

    model: str
    summary: str
    found: list = field(default_factory=list)
    entries: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    @staticmethod
    def _by_kind(kinds):
        counts = {}
        for kind in kinds:
            counts[kind] = counts.get(kind, 0) + 1
        return ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "none"

    def report(self):
        """Lines for the user: found and read, per kind, and every layer left out."""
        kinds = dict(self.found)
        lines = [f"{self.model}: found {len(self.found)} depthwise-like layer(s) "
                 f"({self._by_kind(kind for _, kind in self.found)}); exported "
                 f"{len(self.entries)} ({self._by_kind(kinds[i] for i, *_ in self.entries)})"]
        for layer_id, kind, reason in self.skipped:
            lines.append(f"skipped {layer_id} ({kind}): {reason}")
        return lines


def _short_reason(error, model_layer, graph):
    """The error's message without the 'layer X of model' it starts with."""
    message = " ".join(str(error).split())
    for where in (f"layer {model_layer.path!r} of {graph.path.name}", f"{graph.path.name}: "
                  f"layer {model_layer.path!r}"):
        message = message.removeprefix(where).lstrip(": ")
    return message


def survey_layers(path, fuse=False, pointwise=False, skip_unsupported=False, check=None):
    """Read every depthwise-like layer of a model file (``export --all``).

    A layer with an option the engine does not support stops it with a LayerError that
    names the layer, its kind and the option, and summarizes the model's layers; with
    ``skip_unsupported`` it is listed in ``skipped`` instead.  ``check(layer_id, layer,
    formats)`` may raise a LayerError or FormatError (formats that do not fit the layer),
    treated the same way.  A model without any depthwise-like layer is a ModelFileError.
    """
    from ..golden.fixed import FormatError

    graph = read_model(path)
    try:
        survey = ModelSurvey(graph.path.name, model_summary(graph))
        found = [(layer_id(graph, layer), layer) for layer in graph.layers
                 if is_depthwise(layer)]
        if not found:
            _pick(graph, None)        # raises the "no depthwise-like layer" error
        for name, model_layer in found:
            kind = layer_kind(model_layer)
            survey.found.append((name, kind))
            try:
                layer, formats = _load(graph, model_layer, fuse, pointwise)
                if check is not None:
                    check(name, layer, formats)
            except (LayerError, FormatError) as error:
                reason = _short_reason(error, model_layer, graph)
                if not skip_unsupported:
                    raise LayerError(
                        f"layer {name!r} ({kind}) of {graph.path.name}: {reason}; the model "
                        f"has {survey.summary}; export --all --skip-unsupported writes the "
                        f"other layers") from None
                survey.skipped.append((name, kind, reason))
                continue
            survey.entries.append((name, layer, formats))
        return survey
    finally:
        graph.close()


def load_all_layers(path, fuse=False, pointwise=False):
    """Every depthwise-like layer of a model file: a list of ``(id, layer, formats or
    None)``, all or nothing (see ``survey_layers``).

    The ids are those ``depthwise_layer_names`` gives, in file order.
    """
    return survey_layers(path, fuse, pointwise).entries


def _load(graph, model_layer, fuse, pointwise=False):
    from .fuse import fold_zero_padding, fuse_following  # fuse needs this module: import late

    shape = _input_shape(graph, model_layer)
    if shape is None:
        raise ModelFileError(f"{graph.path.name} does not record the input shape of layer "
                             f"{model_layer.path!r}; save the model from Keras 3 as .keras, "
                             f"or build it with keras.Input((H, W, C))")
    if model_layer.class_name in DEPTHWISE_CLASSES:
        layer, formats, last, quantized, output_quantized = _load_depthwise(
            graph, model_layer, shape)
    else:
        layer, formats, last = _load_depthwise_like(graph, model_layer, shape), None, model_layer
        quantized = output_quantized = False
    if fuse:
        layer = fold_zero_padding(graph, model_layer, layer)
        layer = fuse_following(graph, last, layer, quantized=quantized,
                               output_quantized=output_quantized, pointwise=pointwise)
    return layer, formats


def _weight_arrays(graph, model_layer, count):
    arrays = graph.weights(model_layer)
    if len(arrays) != count:
        raise ModelFileError(f"{graph.path.name}: layer {model_layer.path!r} has {len(arrays)} "
                             f"weight arrays where {count} were expected; re-save the "
                             f"model with Keras")
    return arrays


def _load_depthwise_like(graph, model_layer, shape):
    """A DepthwiseConv1D, grouped Conv1D/2D or SeparableConv1D/2D as a Layer or a
    SeparableLayer, the kernels in the depthwise layout (kh, kw, C, M)."""
    spec = _spec_from_config(graph, model_layer, shape)
    where = f"layer {model_layer.path!r} of {graph.path.name}"
    kind, cfg = model_layer.class_name, model_layer.config
    kh, kw, channels, multiplier = spec.kernel_shape
    if kind in SEPARABLE_CLASSES:
        use_bias = cfg.get("use_bias", True)
        arrays = _weight_arrays(graph, model_layer, 3 if use_bias else 2)
        depthwise, pointwise = arrays[0], arrays[1]
        filters = cfg.get("filters")
        if pointwise.shape[-2:] != (channels * multiplier, filters):
            raise ModelFileError(f"{where} has a pointwise kernel of shape "
                                 f"{list(pointwise.shape)}, not [.., {channels * multiplier}, "
                                 f"{filters}]; re-save the model with Keras")
        activation = cfg.get("activation", "linear")
        if activation not in (None, "linear", "relu", "relu6"):
            raise LayerError(f"{where} has activation {activation!r}, which the engine does "
                             f"not do; use linear, relu or relu6")
        return SeparableLayer(Layer(spec, depthwise), pointwise,
                              arrays[2] if use_bias else None, use_bias=bool(use_bias),
                              activation=activation or "linear", kind=kind,
                              name=model_layer.name)
    arrays = _weight_arrays(graph, model_layer, 2 if spec.use_bias else 1)
    kernel = arrays[0]
    if kind in GROUPED_CLASSES:
        # Keras' grouped kernel (kh, kw, 1, C*M): filter f reads input channel f // M
        need = (kw, 1, channels * multiplier) if spec.rank == 1 else \
            (kh, kw, 1, channels * multiplier)
        if kernel.shape != need:
            raise ModelFileError(f"{where} has a kernel of shape {list(kernel.shape)}, not "
                                 f"{list(need)}; re-save the model with Keras")
        kernel = kernel.reshape(kh, kw, channels, multiplier)
    return Layer(spec, kernel, arrays[1] if spec.use_bias else None)


def _load_depthwise(graph, model_layer, shape):
    """A DepthwiseConv2D (or QKeras' QDepthwiseConv2D) with the formats its quantizers
    give: ``(layer, formats, last, quantized, output_quantized)``, ``last`` the last model
    layer read into it (a QActivation after it)."""
    from . import qkeras

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
    return layer, formats, last, weight_q is not None, output_q is not None


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
