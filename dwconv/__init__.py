"""dwconv: a streaming fixed-point depthwise-convolution engine for FPGAs.

Keras layer in, bit-exact golden models, simulation, Verilog and synthesis out::

    import dwconv
    layer = dwconv.load("model.keras", layer="block_1_depthwise", fuse=True)
    design = dwconv.Design(layer, formats={"input": "fixed<8,3,RND,SAT>"}, lanes=8)
    y = design.predict(x)                    # fixed golden model, layer's data_format
    r = design.simulate(x, sim="verilator")  # r.outputs, r.mismatches, r.cycles, r.report
    text = design.verilog(top="dwconv")

``load``/``load_all`` read models and exports, ``Design`` describes one layer's hardware,
``Config`` holds per-layer settings of a whole network (``dwconv config``),
``profile_layer`` chooses formats from calibration data (``dwconv profile``).  The parts
below: ``dwconv.golden`` (NumPy reference, model readers), ``dwconv.hw`` (Amaranth
gateware), ``dwconv.sim`` (simulators and tool flows), ``dwconv.cli`` (the command line).
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("dwconv")
except _metadata.PackageNotFoundError:      # run from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from .config import Config, config_for_layers
from .design import Design, SimulationResult
from .errors import ConfigError, DesignError
from .golden.fixed import FormatError, QFormat
from .golden.formats import LayerFormats
from .models.keras_io import ModelFileError
from .golden.layer import Layer
from .golden.spec import LayerError, LayerSpec
from .loading import LoadedLayer, load, load_all
from .profile import LayerProfile, profile_layer

__all__ = ["__version__", "load", "load_all", "designs", "Design", "SimulationResult",
           "Config", "config_for_layers", "profile_layer", "LayerProfile", "Layer",
           "LoadedLayer", "LayerSpec", "LayerFormats", "QFormat", "LayerError",
           "FormatError", "ModelFileError", "DesignError", "ConfigError"]


def designs(path, config=None, fuse=False, **knobs):
    """``{layer id: Design}`` for every depthwise layer of ``path``, each with its
    configuration entry (``Design.from_config``); ``knobs`` (lanes, reuse, weights, target,
    formats) override the configuration."""
    from .config import read_config
    config = read_config(config)
    return {layer_id: Design.from_config(layer, config, **knobs)
            for layer_id, layer in load_all(path, fuse, config=config).items()}
