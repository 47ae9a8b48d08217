"""Per-layer configuration of a whole network, as a plain JSON file users edit.

Like hls4ml's ``config_from_keras_model(granularity="name")``: one section of defaults and
one entry per depthwise layer, keyed by the layer's id (its path through nested models)::

    {
      "model": "model.keras",
      "fuse": true,
      "defaults": {"formats": {"input": "fixed<16,6>", ..., "accum": "exact"},
                   "lanes": 1, "reuse": 1, "weights": "const", "target": null},
      "layers": {
        "block_1_depthwise": {"formats": {...}, "lanes": 8, "reuse": 1,
                              "weights": "const", "target": null},
        ...
      }
    }

Every key of an entry is optional.  A layer's settings are, later ones winning: the
built-in defaults, the formats stored with the layer (an export's layer.json, QKeras
quantizers), the file's ``defaults``, the layer's entry, then what a command line or a
``Design`` argument gives.  ``fuse`` is what ``dwconv config --fuse`` was given: the layers
are read the same way later.  A bad entry is a ``ConfigError`` naming the file, the layer
and the key.
"""

import json
import pathlib
from dataclasses import dataclass, field

from .errors import ConfigError
from .models.atomic import atomic_file
from .models.limits import read_config_file
from .golden.fixed import FormatError
from .golden.formats import DEFAULT_FORMATS, LayerFormats

__all__ = ["Config", "SETTINGS", "WEIGHT_MODES", "TARGETS", "config_for_layers",
           "read_config", "check_settings"]

#: The keys of a defaults section or a layer entry.
SETTINGS = ("formats", "lanes", "reuse", "weights", "target")
WEIGHT_MODES = ("const", "port")
#: FPGA families a design may target (None: portable Verilog).
TARGETS = ("ecp5", "ice40")
#: Settings when neither the file nor the command line gives them.
BUILTIN = {"lanes": 1, "reuse": 1, "weights": "const", "target": None}


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_settings(settings, where):
    """Check the keys and value types of one section (``where`` names it in errors)."""
    if not isinstance(settings, dict):
        raise ConfigError(f"{where} must be a JSON object with some of {', '.join(SETTINGS)}, "
                          f"not {settings!r}")
    for key, value in settings.items():
        if key not in SETTINGS:
            raise ConfigError(f"{where}: unknown key {key!r}; use {', '.join(SETTINGS)}")
        if key == "formats":
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: key 'formats' must map roles to format strings, "
                                  f"not {value!r}")
            for role, text in value.items():
                if role not in DEFAULT_FORMATS:
                    raise ConfigError(f"{where}: key 'formats': unknown role {role!r}; use "
                                      f"{', '.join(DEFAULT_FORMATS)}")
                if text is not None and not isinstance(text, str):
                    raise ConfigError(f"{where}: key 'formats.{role}' must be a format "
                                      f"string like 'fixed<8,3,RND,SAT>', not {text!r}")
                try:
                    LayerFormats.from_strings(**{role: text})
                except FormatError as error:
                    raise ConfigError(f"{where}: key 'formats.{role}': {error}") from None
        elif key in ("lanes", "reuse"):
            if not _whole(value) or value < 1:
                raise ConfigError(f"{where}: key {key!r} must be a whole number >= 1, "
                                  f"not {value!r}")
        elif key == "weights":
            if value not in WEIGHT_MODES:
                raise ConfigError(f"{where}: key 'weights' must be one of "
                                  f"{', '.join(WEIGHT_MODES)}, not {value!r}")
        elif value is not None and value not in TARGETS:
            raise ConfigError(f"{where}: key 'target' must be null or one of "
                              f"{', '.join(TARGETS)}, not {value!r}")
    return settings


@dataclass(frozen=True)
class Config:
    """A configuration: defaults and per-layer entries (see the module docstring).

    Members
    -------
    defaults : dict
    layers : dict of layer id -> dict
    model : str or None
        The model file it was made from (informative).
    fuse : bool
        Whether the layers are read with ``fuse``.
    source : str or None
        Where it was read from, for error messages.
    """

    defaults: dict = field(default_factory=dict)
    layers: dict = field(default_factory=dict)
    model: str | None = None
    fuse: bool = False
    source: str | None = None

    def __post_init__(self):
        name = self.source or "configuration"
        check_settings(self.defaults, f"{name}: defaults")
        if not isinstance(self.layers, dict):
            raise ConfigError(f"{name}: 'layers' must map layer ids to entries")
        for layer_id, entry in self.layers.items():
            check_settings(entry, f"{name}: layer {layer_id!r}")
        if not isinstance(self.fuse, bool):
            raise ConfigError(f"{name}: 'fuse' must be true or false, not {self.fuse!r}")

    @classmethod
    def from_dict(cls, document, source=None):
        name = source or "configuration"
        if not isinstance(document, dict):
            raise ConfigError(f"{name} must hold a JSON object with 'defaults' and 'layers'")
        unknown = set(document) - {"model", "fuse", "defaults", "layers"}
        if unknown:
            raise ConfigError(f"{name}: unknown key {sorted(unknown)[0]!r}; use model, fuse, "
                              f"defaults, layers")
        pick = lambda key: {} if document.get(key) is None else document[key]
        return cls(defaults=pick("defaults"), layers=pick("layers"), model=document.get("model"),
                   fuse=document.get("fuse", False), source=source)

    @classmethod
    def read(cls, path):
        path = pathlib.Path(path)
        try:
            document = json.loads(read_config_file(path, error=ConfigError))
        except FileNotFoundError:
            raise ConfigError(f"configuration {path} does not exist; make one with dwconv "
                              f"config MODEL --all -o {path.name}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ConfigError(f"configuration {path} is not valid JSON ({error}); fix it or "
                              f"make a new one with dwconv config") from None
        return cls.from_dict(document, source=str(path))

    def to_dict(self):
        return {"model": self.model, "fuse": self.fuse, "defaults": self.defaults,
                "layers": self.layers}

    def write(self, path):
        """Write the file all-or-nothing."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        with atomic_file(path) as file:
            file.write(text.encode())

    def key_for(self, name):
        """The entry key for a layer id or name (``dw`` finds ``backbone/dw``), or None."""
        if name in self.layers:
            return name
        found = [key for key in self.layers if key.endswith("/" + str(name))]
        if len(found) > 1:
            raise ConfigError(f"{self.source or 'configuration'}: layer name {name!r} is "
                              f"ambiguous ({', '.join(found)}); give the layer's full id")
        return found[0] if found else None

    def settings(self, *names):
        """The merged settings of the layer known by any of ``names`` (id first):
        ``{"formats": {...}, "lanes", "reuse", "weights", "target"}`` from the defaults and
        the entry; keys neither gives are left out (formats: only the roles given)."""
        key = next((k for k in map(self.key_for, [n for n in names if n]) if k), None)
        entry = self.layers.get(key, {}) if key is not None else {}
        merged = {k: v for k, v in self.defaults.items() if k != "formats"}
        merged.update({k: v for k, v in entry.items() if k != "formats"})
        merged["formats"] = {**self.defaults.get("formats", {}), **entry.get("formats", {})}
        return merged

    def where(self, *names):
        key = next((k for k in map(self.key_for, [n for n in names if n]) if k), None)
        return f"{self.source or 'configuration'}: layer {key or names[0]!r}"

    def check_layers(self, ids):
        """Every entry must name one of the model's layers ``ids``."""
        ids = list(ids)
        for key in self.layers:
            if key not in ids and not any(i.endswith("/" + key) for i in ids):
                raise ConfigError(f"{self.source or 'configuration'}: layer {key!r} is not a "
                                  f"depthwise layer of the model; its layers are "
                                  f"{', '.join(ids)}")

    def with_entry(self, layer_id, **updates):
        """A copy with the entry of ``layer_id`` updated (``formats`` merged role by role)."""
        key = self.key_for(layer_id) or layer_id
        entry = dict(self.layers.get(key, {}))
        if "formats" in updates:
            entry["formats"] = {**entry.get("formats", {}), **updates.pop("formats")}
        entry.update(updates)
        layers = dict(self.layers)
        layers[key] = entry
        return Config(self.defaults, layers, self.model, self.fuse, self.source)


def read_config(config):
    """A Config from a Config, a dict, a path or None (None stays None)."""
    if config is None or isinstance(config, Config):
        return config
    if isinstance(config, dict):
        return Config.from_dict(config)
    return Config.read(config)


def config_for_layers(layers, *, model=None, fuse=False):
    """The starting configuration of ``{id: layer}``: built-in defaults, and per layer its
    formats (stored ones over the defaults) and the default lanes, reuse, weights, target."""
    from .golden.layer import SeparableLayer

    defaults = {"formats": LayerFormats.from_strings().to_dict(separable=True), **BUILTIN}
    entries = {}
    for layer_id, layer in layers.items():
        stored = getattr(layer, "formats", None) or {}
        formats = LayerFormats.from_strings(**stored)
        entries[str(layer_id)] = {
            "formats": formats.to_dict(separable=isinstance(layer, SeparableLayer)), **BUILTIN}
    return Config(defaults, entries, model=None if model is None else str(model), fuse=fuse)
