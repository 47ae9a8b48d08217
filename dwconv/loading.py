"""Loading layers: ``dwconv.load`` and ``dwconv.load_all``.

Formats that come with a layer (an export's layer.json, QKeras quantizers, a configuration
file's entry) ride on the returned layer: ``load`` returns a ``LoadedLayer``, a golden
``Layer`` with two more fields, ``formats`` (role -> format string, or None) and
``layer_id`` (the layer's path in its model), so ``Design(layer)`` uses those formats and
any golden function takes the layer as it is.
"""

import dataclasses
import pathlib

from .config import read_config
from .models.export import is_tree, load_layer, read_export, read_tree
from .models.keras_io import load_all_layers
from .golden.layer import Layer

__all__ = ["LoadedLayer", "load", "load_all", "with_formats"]


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedLayer(Layer):
    """A ``Layer`` with the formats stored for it and where it came from.

    Members
    -------
    formats : dict or None
        Role -> format string, the layer's own defaults (``Design`` puts the built-in
        defaults under them and its ``formats`` argument over them).
    layer_id : str or None
        The layer's id in its model or export tree (``backbone/block_1_depthwise``), the key
        of its configuration entry.
    """

    formats: dict | None = None
    layer_id: str | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.formats is not None:
            object.__setattr__(self, "formats", dict(self.formats))


def with_formats(layer, formats, layer_id=None):
    """``layer`` carrying ``formats`` (a dict or None) and ``layer_id``.

    Other layer kinds than the golden ``Layer`` keep their class; they get the two
    attributes set on them (their dataclass fields stay as they are).
    """
    layer_id = layer_id if layer_id is not None else getattr(layer, "layer_id", None)
    if type(layer) in (Layer, LoadedLayer):
        values = {f.name: getattr(layer, f.name) for f in dataclasses.fields(Layer) if f.init}
        return LoadedLayer(**values, formats=formats, layer_id=layer_id)
    object.__setattr__(layer, "formats", None if formats is None else dict(formats))
    object.__setattr__(layer, "layer_id", layer_id)
    return layer


def _config_formats(layer, config):
    """Stored formats with the configuration's defaults and entry over them."""
    if config is None:
        return layer.formats
    chosen = config.settings(layer.layer_id, layer.name)["formats"]
    return {**(layer.formats or {}), **chosen} or None


def load(path, layer=None, fuse=False, *, config=None, pointwise=False):
    """One layer from a ``.keras``/``.h5`` model, an export folder or tree, or a ``.tflite``
    model (an int8 ``golden.int8_ref.Int8Layer``, with ``layer_id`` its name).

    Parameters
    ----------
    path : str or path
    layer : str, optional
        The layer's name or path (``backbone/dw``) when the source holds several.
    fuse : bool
        Fold a following BatchNormalization and ReLU/ReLU6 (and what else the import
        fuses) into the layer.  A configuration made with ``--fuse`` sets it too.
    config : Config, dict or path, optional
        Its formats for this layer are stored on the returned layer.
    pointwise : bool
        With ``fuse``, join a DepthwiseConv2D and the 1x1 Conv2D after it into one separable
        block (a ``SeparableLayer``).

    Returns
    -------
    LoadedLayer, SeparableLayer or Int8Layer
        The last two carry ``formats`` and ``layer_id`` as attributes.
    """
    from .models.tflite_io import is_tflite, load_tflite_layer

    if is_tflite(path):         # an int8 layer: golden.int8_ref runs it, hw.int8 builds it
        found = load_tflite_layer(path, layer, pointwise=pointwise)
        return with_formats(found, None, found.name)
    config = read_config(config)
    fuse = fuse or bool(config is not None and config.fuse)
    found, stored = load_layer(path, layer, fuse, pointwise)
    layer_id = layer if layer is not None and "/" in str(layer) else None
    loaded = with_formats(found, stored, layer_id or found.name)
    return with_formats(loaded, _config_formats(loaded, config)) if config else loaded


def load_all(path, fuse=False, *, config=None):
    """Every depthwise layer of a model file (.keras, .h5, .tflite) or an export tree:
    ``{layer id: layer}`` in the model's order (an export folder gives its one layer).

    With ``config``, its entries must all name layers of the model, and each layer carries
    the configuration's formats for it.
    """
    from .models.tflite_io import is_tflite, load_all_tflite_layers

    config = read_config(config)
    fuse = fuse or bool(config is not None and config.fuse)
    path = pathlib.Path(path)
    if is_tflite(path):
        found = [(name, one, None) for name, one in load_all_tflite_layers(path)]
    elif is_tree(path):
        found = []
        for layer_id, folder in read_tree(path):
            found.append((layer_id, *read_export(folder)))
    elif path.is_dir() or path.name == "layer.json":
        one, stored = read_export(path)
        found = [(one.name, one, stored)]
    else:
        found = load_all_layers(path, fuse)
    layers = {str(layer_id): with_formats(one, stored, str(layer_id))
              for layer_id, one, stored in found}
    if config is not None:
        config.check_layers(layers)
        layers = {k: with_formats(v, _config_formats(v, config)) for k, v in layers.items()}
    return layers
