"""Exported layers: a folder with layer.json and weights.npz, and one loader for every source.

layer.json holds the original network generator's fields (``layer_name``,
``first_input_shape`` [H, W, C], ``padding``, ``stride``, ``kernel_size``,
``depth_multiplier``), the rest of the configuration (``dilation_rate``, ``use_bias``,
``activation``, ``data_format``, ``output_shape``), ``formats`` (the fixed-point formats,
defaults for later commands) and ``fused`` (layers folded in on import).
weights.npz holds ``kernel`` (kh, kw, C, M) and ``bias`` (C*M,), float32, Keras layout.

The other depthwise-like kinds (``kind`` in layer.json; DepthwiseConv2D when absent):

- DepthwiseConv1D and Conv1D/Conv2D with groups == channels: the same fields; a 1D kind
  writes its own shapes (``first_input_shape`` [L, C], ``kernel_size`` [k], ...) and its
  kernel as Keras' (k, C, M); a grouped Conv's kernel is written in the depthwise layout.
- Explicit padding (a ZeroPadding folded in with ``--fuse``): ``padding`` is
  ``[[top, bottom], [left, right]]`` (1D: ``[[left, right]]``) and ``first_input_shape``
  the unpadded input.
- SeparableConv2D, SeparableConv1D, "DepthwiseConv2D+Conv2D" (a joined pair): the
  depthwise part's fields, with its own bias and activation as ``depthwise_use_bias`` and
  ``depthwise_activation``; ``use_bias`` and ``activation`` are the pointwise stage's;
  ``filters`` F; ``output_shape`` the block's.  weights.npz adds ``pointwise_kernel``
  (Keras' (1, 1, C*M, F); 1D: (1, C*M, F)) and ``pointwise_bias`` (F,); ``bias`` is the
  depthwise part's (zeros for Keras' separable layers).  ``formats`` adds ``pointwise``
  and ``mid``.

``dwconv export --all`` writes a *tree*: one such folder per depthwise layer of a model,
and ``layers.json`` at the top listing them (``{"model": ..., "layers": [{"layer": id,
"folder": name}, ...]}``, in the model's order).
"""

import json
import pathlib
import re
import zipfile

import numpy as np

from .atomic import atomic_folder
from ..golden.fixed import FormatError
from ..golden.formats import DEFAULT_FORMATS, LayerFormats
from .int8_export import INT8_KIND, int8_arrays, int8_counts, int8_document, read_int8_export
from ..golden.int8_ref import Int8Layer
from .keras_io import ModelFileError, load_all_layers, load_model_layer, survey_layers
from ..golden.layer import SEPARABLE_KINDS, Layer, SeparableLayer
from .limits import check_npz, read_config_file
from ..golden.spec import LayerError, LayerSpec
from .tflite_io import is_tflite, load_tflite_layer, survey_tflite_layers

__all__ = ["LAYER_JSON", "WEIGHTS_NPZ", "TREE_JSON", "export_layer", "write_export",
           "read_export", "load_layer", "load_all_layers", "export_tree", "read_tree",
           "is_tree", "folder_name", "check_formats", "export_all"]

LAYER_JSON = "layer.json"
WEIGHTS_NPZ = "weights.npz"
TREE_JSON = "layers.json"


def layer_document(layer, formats=None):
    """The layer.json content for ``layer`` (formats: LayerFormats, dict or None)."""
    if isinstance(layer, Int8Layer):
        if formats is not None:
            raise LayerError(f"int8 layer {layer.name!r} computes in its model's own "
                             f"quantization; it takes no formats")
        return int8_document(layer)
    separable = isinstance(layer, SeparableLayer)
    document = layer.spec.to_dict()
    if separable:
        spec = layer.spec
        document.update(
            kind=layer.kind, layer_name=layer.name,
            depthwise_use_bias=spec.use_bias, depthwise_activation=spec.activation,
            use_bias=layer.use_bias, activation=layer.activation, filters=layer.filters,
            depthwise_output_shape=document["output_shape"],
            output_shape=spec.shape_1d(layer.output_shape))
    if formats is not None:
        document["formats"] = formats.to_dict(separable) \
            if isinstance(formats, LayerFormats) else dict(formats)
    fused = layer.depthwise.fused + layer.fused if separable else layer.fused
    document["fused"] = list(fused)
    return document


def _weight_arrays(layer):
    """weights.npz's arrays for ``layer``, in Keras' layouts."""
    if isinstance(layer, Int8Layer):
        return int8_arrays(layer)
    if not isinstance(layer, SeparableLayer):
        return {"kernel": layer.keras_kernel, "bias": layer.bias}
    depthwise = layer.depthwise
    ones = (1,) * depthwise.spec.rank
    return {"kernel": depthwise.keras_kernel, "bias": depthwise.bias,
            "pointwise_kernel": layer.pointwise_kernel.reshape(ones
                                                               + layer.pointwise_kernel.shape),
            "pointwise_bias": layer.pointwise_bias}


def write_export(folder, layer, formats=None):
    """Write layer.json and weights.npz into an existing folder."""
    folder = pathlib.Path(folder)
    text = json.dumps(layer_document(layer, formats), indent=2) + "\n"
    (folder / LAYER_JSON).write_text(text)
    with open(folder / WEIGHTS_NPZ, "wb") as file:
        np.savez(file, **_weight_arrays(layer))


def export_layer(folder, layer, formats=None):
    """Write the export folder all-or-nothing (an earlier export there is replaced)."""
    with atomic_folder(folder, LAYER_JSON) as temp:
        write_export(temp, layer, formats)


def _field(document, key, where, default=None, required=True):
    if key not in document:
        if required:
            raise ModelFileError(f"{where} has no {key!r} field; export the layer again with "
                                 f"dwconv export")
        return default
    return document[key]


def _read_weights(folder, expected, required):
    """{name: array} of every member of ``folder``/weights.npz, after each member's size,
    type and value count (``expected``: name -> count) are checked from its header; the
    ``required`` names must be there."""
    weights_path = folder / WEIGHTS_NPZ
    check_npz(weights_path, expected)
    try:
        # our own handle: np.load leaks its file when the archive is damaged
        with open(weights_path, "rb") as file:
            weights = np.load(file, allow_pickle=False)
            if not isinstance(weights, np.lib.npyio.NpzFile):
                raise ModelFileError(f"{weights_path} is not an .npz archive; export the "
                                     f"layer again with dwconv export")
            with weights:
                if any(name not in weights.files for name in required):
                    raise ModelFileError(f"{weights_path} must hold "
                                         f"{' and '.join(map(repr, required))}; export the "
                                         f"layer again with dwconv export")
                return {name: weights[name] for name in weights.files}
    except FileNotFoundError:
        raise ModelFileError(f"{folder} holds no {WEIGHTS_NPZ}; export the layer again with "
                             f"dwconv export") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ModelFileError(f"{weights_path} is damaged ({error}); export the layer again "
                             f"with dwconv export") from None


def read_export(path):
    """(layer, formats dict or None) from an export folder or its layer.json: a Layer, a
    SeparableLayer, or an Int8Layer (whose formats are None: the model's quantization)."""
    path = pathlib.Path(path)
    folder = path if path.is_dir() else path.parent
    json_path = folder / LAYER_JSON
    try:
        document = json.loads(read_config_file(json_path))
    except FileNotFoundError:
        raise ModelFileError(f"{folder} holds no {LAYER_JSON}; give an exported folder, a "
                             f".keras or an .h5 file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{json_path} is not valid JSON ({error}); export the layer "
                             f"again with dwconv export") from None
    if not isinstance(document, dict):
        raise ModelFileError(f"{json_path} does not hold a JSON object; export the layer "
                             f"again with dwconv export")
    where = str(json_path)
    kind = document.get("kind", "DepthwiseConv2D")
    separable = kind in SEPARABLE_KINDS
    prefix = "depthwise_" if separable else ""
    try:
        if not isinstance(kind, str):
            raise LayerError(f"kind must be a layer class name, not {kind!r}")
        spec = LayerSpec(
            input_shape=_field(document, "first_input_shape", where),
            kernel_size=_field(document, "kernel_size", where),
            strides=_field(document, "stride", where),
            dilation_rate=_field(document, "dilation_rate", where, [1, 1], required=False),
            padding=_field(document, "padding", where),
            depth_multiplier=_field(document, "depth_multiplier", where),
            use_bias=_field(document, prefix + "use_bias", where, True, required=False),
            activation=_field(document, prefix + "activation", where, "linear",
                              required=False),
            data_format=_field(document, "data_format", where, "channels_last",
                               required=False),
            name=str(_field(document, "layer_name", where)),
            kind=_DEPTHWISE_PART.get(kind, kind))
    except LayerError as error:
        raise LayerError(f"{where}: {error}") from None
    weights_path = folder / WEIGHTS_NPZ
    if kind == INT8_KIND:
        weights = _read_weights(folder, int8_counts(spec), ("kernel", "bias"))
        return read_int8_export(document, spec, weights, where, weights_path), None
    formats = document.get("formats")
    if formats is not None:
        if not isinstance(formats, dict) or set(formats) - set(DEFAULT_FORMATS):
            raise ModelFileError(f"{where}: 'formats' must map some of "
                                 f"{', '.join(DEFAULT_FORMATS)} to format strings")
        try:
            LayerFormats.from_strings(**formats)
        except FormatError as error:
            raise FormatError(f"{where}: {error}") from None
    fused = document.get("fused", [])
    weights = _read_weights(folder, {"kernel": spec.taps * spec.channels
                                     * spec.depth_multiplier, "bias": spec.out_channels},
                            ("kernel", "bias"))
    kernel, bias = weights["kernel"], weights["bias"]
    pointwise = [weights[k] for k in ("pointwise_kernel", "pointwise_bias")
                 if separable and k in weights]
    fused = tuple(map(str, fused)) if isinstance(fused, list) else ()
    if not separable:
        return Layer(spec, kernel, bias if spec.use_bias else None, fused=fused), formats
    if len(pointwise) != 2:
        raise ModelFileError(f"{weights_path} must hold 'pointwise_kernel' and "
                             f"'pointwise_bias' for a {kind}; export the layer again with "
                             f"dwconv export")
    try:
        use_bias = _field(document, "use_bias", where, True, required=False)
        layer = SeparableLayer(
            Layer(spec, kernel, bias if spec.use_bias else None), pointwise[0],
            pointwise[1] if use_bias is True else None, use_bias=use_bias,
            activation=_field(document, "activation", where, "linear", required=False),
            kind=kind, name=spec.name, fused=fused)
    except LayerError as error:
        raise LayerError(f"{where}: {error}") from None
    if layer.filters != document.get("filters", layer.filters):
        raise ModelFileError(f"{where} says {document['filters']!r} filters but the pointwise "
                             f"kernel has {layer.filters}; export the layer again")
    return layer, formats


#: The depthwise part's kind of each separable kind.
_DEPTHWISE_PART = {"SeparableConv2D": "DepthwiseConv2D", "SeparableConv1D": "DepthwiseConv1D",
                   "DepthwiseConv2D+Conv2D": "DepthwiseConv2D", INT8_KIND: "DepthwiseConv2D"}


def check_formats(layer, formats):
    """Raise a FormatError unless ``formats`` (LayerFormats) fit ``layer``: its exact
    accumulators (a separable block's two stages) need no more bits than the engine has."""
    formats.exact_accumulator(layer.spec.taps)
    if isinstance(layer, SeparableLayer):
        formats.exact_pointwise_accumulator(layer.spec.out_channels)


def export_all(source, folder, formats_for, fuse=False, pointwise=False,
               skip_unsupported=False, check_ids=None):
    """``export --all``: every depthwise-like layer of a model file into an export tree.

    ``formats_for(layer_id, layer, stored)`` gives the LayerFormats of a layer from the
    formats its file stored (QKeras) or None; ``check_ids(ids)``, if given, checks the ids
    of the layers to be written before anything is (a configuration naming a missing one).
    All or nothing: a layer the engine cannot build (or whose formats do not fit) stops it
    with nothing written, unless ``skip_unsupported``; then the rest is written and the
    survey lists what was left out.  Returns the ModelSurvey.  A ``.tflite`` model gives
    its int8 layers, which take no formats (``formats_for`` is not called).
    """
    chosen = {}

    def check(layer_id, layer, stored):
        formats = formats_for(layer_id, layer, stored)
        try:
            check_formats(layer, formats)
        except FormatError as error:
            raise FormatError(f"formats: {error}") from None
        chosen[layer_id] = formats

    if is_tflite(source):
        survey = survey_tflite_layers(source, skip_unsupported)
        chosen = {layer_id: None for layer_id, _, _ in survey.entries}
    else:
        survey = survey_layers(source, fuse, pointwise, skip_unsupported, check)
    if not survey.entries:
        raise LayerError(f"no layer of {survey.model} can be exported: "
                         f"{len(survey.skipped)} skipped, e.g. {survey.skipped[0][0]!r} "
                         f"({survey.skipped[0][1]}): {survey.skipped[0][2]}")
    if check_ids is not None:
        check_ids([layer_id for layer_id, _, _ in survey.entries])
    export_tree(folder, [(layer_id, layer, chosen[layer_id])
                         for layer_id, layer, _ in survey.entries],
                model=pathlib.Path(source).name)
    return survey


def folder_name(layer_id):
    """A file-system-safe folder name for a layer id (``backbone/dw`` -> ``backbone__dw``)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(layer_id).replace("/", "__")).lstrip(".")
    return name or "layer"


def export_tree(folder, entries, model=None):
    """Write one export folder per ``(id, layer, formats)`` and TREE_JSON, all-or-nothing."""
    listing, used = [], set()
    with atomic_folder(folder, TREE_JSON) as temp:
        for layer_id, layer, formats in entries:
            name = folder_name(layer_id)
            base, count = name, 1
            while name.lower() in used:          # case-insensitive file systems too
                count += 1
                name = f"{base}_{count}"
            used.add(name.lower())
            (temp / name).mkdir()
            write_export(temp / name, layer, formats)
            listing.append({"layer": str(layer_id), "folder": name})
        document = {"model": None if model is None else str(model), "layers": listing}
        (temp / TREE_JSON).write_text(json.dumps(document, indent=2) + "\n")


def read_tree(folder):
    """``[(layer id, subfolder path), ...]`` of an export tree (see ``export_tree``).

    Raises ModelFileError when ``folder`` is not one.
    """
    folder = pathlib.Path(folder)
    index = folder / TREE_JSON
    try:
        document = json.loads(read_config_file(index))
        entries = document["layers"]
        found = [(str(e["layer"]), folder / str(e["folder"])) for e in entries]
    except FileNotFoundError:
        raise ModelFileError(f"{folder} holds no {LAYER_JSON} or {TREE_JSON}; give an "
                             f"exported folder, a .keras or an .h5 file") from None
    except ModelFileError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise ModelFileError(f"{index} is damaged ({error}); export the model again with "
                             f"dwconv export --all") from None
    for _, sub in found:
        if sub.parent != folder or not (sub / LAYER_JSON).is_file():
            raise ModelFileError(f"{index} lists {sub.name!r}, which is not an export folder "
                                 f"inside {folder}; export the model again with dwconv "
                                 f"export --all")
    if not found:
        raise ModelFileError(f"{index} lists no layers; export the model again with dwconv "
                             f"export --all")
    return found


def is_tree(path):
    """Whether ``path`` is an export tree (a folder with TREE_JSON and no LAYER_JSON)."""
    path = pathlib.Path(path)
    return path.is_dir() and not (path / LAYER_JSON).exists() and (path / TREE_JSON).exists()


def load_layer(path, layer_name=None, fuse=False, pointwise=False):
    """A Layer from a ``.keras`` or ``.h5`` model, an export folder or its layer.json (an
    Int8Layer from a ``.tflite`` model or an int8 export).

    Returns ``(layer, formats)``: formats is the dict stored in layer.json (defaults for
    that layer), the one QKeras quantizers give on model import, or None.  ``layer_name``
    picks a depthwise layer (a model's, or one of an export tree's; an export holds one,
    and a different name is an error); ``fuse`` folds BatchNormalization/ReLU on model
    import (an export is as it was exported), with ``pointwise`` also a 1x1 Conv2D after a
    DepthwiseConv2D (a SeparableLayer).
    """
    path = pathlib.Path(path)
    if is_tree(path):
        found = read_tree(path)
        ids = [layer_id for layer_id, _ in found]
        if layer_name is None:
            if len(found) == 1:
                return read_export(found[0][1])
            raise ModelFileError(f"{path} is an export tree of {len(found)} layers "
                                 f"({', '.join(ids)}); choose one with --layer NAME or give "
                                 f"its folder")
        match = [sub for layer_id, sub in found
                 if layer_id == layer_name or layer_id.endswith("/" + layer_name)]
        if len(match) != 1:
            raise ModelFileError(f"{path} holds {len(match) or 'no'} layer(s) called "
                                 f"{layer_name!r}; its layers are: {', '.join(ids)}")
        return read_export(match[0])
    if path.is_dir() or path.name == LAYER_JSON:
        layer, formats = read_export(path)
        if layer_name is not None and layer_name != layer.name:
            raise ModelFileError(f"{path} holds layer {layer.name!r}, not {layer_name!r}; "
                                 f"drop --layer or export {layer_name!r}")
        return layer, formats
    if is_tflite(path):
        return load_tflite_layer(path, layer_name, pointwise=pointwise), None
    return load_model_layer(path, layer_name, fuse, pointwise)
