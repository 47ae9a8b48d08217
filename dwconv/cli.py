"""The ``dwconv`` command line.

Each subcommand is one ``run_<name>(args)`` function plus one ``add_<name>_args(parser)``
builder, registered in ``COMMANDS``.  A command only parses its arguments, builds a
``dwconv.Design`` (``load_design``: the layer, ``--config``'s entry for it, the options
over both) and calls it.  main() builds the parsers from the table, runs the command, and
turns every user error into exit code 2 with one line on stderr:

    dwconv: error: <what is wrong>; <what to do>

Unexpected exceptions are internal errors: one line, exit code 1 (set ``DWCONV_DEBUG=1``
for the traceback).  Outputs are written all-or-nothing (see ``models.atomic``), so a
failing command leaves no file behind.

Shared helpers for commands: ``add_layer_args``, ``add_format_args``, ``add_lanes_arg``,
``add_config_arg``, ``add_quiet_arg``, ``load_design`` / ``design_for``, ``read_input``,
``load_layer_args``, ``load_input_array`` / ``load_input``, ``save_array``, ``atomic_write``.
"""

import argparse
import os
import pathlib
import sys
from dataclasses import dataclass

import numpy as np

from .errors import DesignError
from .models.atomic import OutputError, atomic_file, atomic_folder
from .golden.fixed import FormatError
from .golden.formats import DEFAULT_FORMATS, LayerFormats
from .models.keras_io import ModelFileError
from .golden.layer import from_channels_last, to_channels_last
from .golden.spec import LayerError
from .flows.tools import MissingToolError, ToolError, ToolTimeout

__all__ = ["main", "COMMANDS", "Command", "UsageError", "USER_ERRORS", "DEFAULT_LANES",
           "add_layer_args", "add_format_args", "add_lanes_arg", "check_lanes",
           "add_reuse_arg", "check_reuse",
           "load_layer_args", "formats_from_args", "load_input", "load_input_array",
           "save_array", "atomic_write", "atomic_folder", "add_config_arg", "add_quiet_arg",
           "load_design", "design_for", "read_input"]

#: Lanes when --lanes is not given: one channel per beat fits every channel count.
DEFAULT_LANES = 1


class UsageError(ValueError):
    """A command line that cannot be carried out (bad argument combination, bad array)."""


#: Exceptions that mean bad input, not a bug: exit code 2, message only.
USER_ERRORS = (UsageError, LayerError, FormatError, ModelFileError, OutputError,
               MissingToolError, DesignError)


@dataclass(frozen=True)
class Command:
    """One subcommand.

    Members
    -------
    name, help : str
    add_arguments : callable(argparse.ArgumentParser)
    run : callable(argparse.Namespace) -> int or None
        Returns the exit code (None means 0).
    """

    name: str
    help: str
    add_arguments: object
    run: object


# ---------------------------------------------------------------------------------------------
# Shared helpers

def add_layer_args(parser, *, layer_option=True, fuse=True, pointwise=False):
    parser.add_argument("layer", metavar="LAYER",
                        help="a .keras, .h5 or .tflite model, or an exported folder "
                             "(layer.json)")
    if layer_option:
        parser.add_argument("--layer", dest="layer_name", metavar="NAME",
                            help="the depthwise layer (or separable block) to use when the "
                                 "model has several")
    if fuse:
        parser.add_argument("--fuse", action="store_true",
                            help="fold a following BatchNormalization and ReLU/ReLU6 in")
    if pointwise:
        parser.add_argument("--pointwise", action="store_true",
                            help="with --fuse: join a DepthwiseConv2D and the 1x1 Conv2D after "
                                 "it into one separable block")


def add_rounding_arg(parser):
    parser.add_argument("--tflite-rounding", dest="rounding", default=None,
                        choices=("fp32", "double", "single"),
                        help="int8 .tflite layers: the requantization rounding; fp32 "
                             "(default) equals LiteRT's default interpreter, double its "
                             "reference kernels, single the single-rounding form")


def add_format_args(parser):
    group = parser.add_argument_group(
        "fixed-point formats", "fixed<W,I[,Q[,O]]> or ufixed<...>; defaults: those stored in "
        "an exported layer.json, else " + ", ".join(
            f"{role} {text or 'exact'}" for role, text in DEFAULT_FORMATS.items()))
    for role in DEFAULT_FORMATS:
        extra = " ('exact' for the exact accumulator)" if role == "accum" else ""
        group.add_argument(f"--{role}-format", dest=f"{role}_format", metavar="FMT",
                           help=f"format of the {role}{extra}")


def add_lanes_arg(parser):
    parser.add_argument("--lanes", type=_positive_int, default=None, metavar="P",
                        help=f"channels per stream beat; must divide C (default: --config's, "
                             f"else {DEFAULT_LANES})")


def add_pointwise_args(parser):
    group = parser.add_argument_group("separable blocks", "the pointwise stage's parallelism "
                                      "(default: the fewest lanes that keep the input rate, "
                                      "Rp = min(R, P*M))")
    group.add_argument("--pointwise-lanes", type=_positive_int, default=None, metavar="Q",
                       help="filters per output beat; must divide F")
    group.add_argument("--pointwise-reuse", type=_positive_int, default=None, metavar="RP",
                       help="the pointwise stage's folding, 1 to P*M")


def check_lanes(layer, lanes):
    """--lanes must divide the channel count."""
    channels = layer.spec.channels
    if lanes < 1 or channels % lanes:
        valid = ", ".join(str(p) for p in range(1, channels + 1) if channels % p == 0)
        raise UsageError(f"--lanes {lanes} does not divide the {channels} channels of layer "
                         f"{layer.name!r}; use one of {valid}")
    return lanes


def add_reuse_arg(parser):
    parser.add_argument("--reuse", type=_positive_int, default=None, metavar="R",
                        help="reuse factor: one input beat every R cycles, each lane's kh*kw "
                             "products on ceil(kh*kw/R) multipliers; 1 to kh*kw (default: "
                             "--config's, else 1)")


def check_reuse(layer, reuse):
    """--reuse must be from 1 to the kernel's kh*kw taps (``hw.folded_mac.check_reuse``)."""
    from .hw.folded_mac import check_reuse as check_folding
    try:
        return check_folding(reuse, layer.spec.taps)
    except ValueError as error:
        kh, kw = layer.spec.kernel_size
        raise UsageError(f"--{error}; layer {layer.name!r} has a {kh}x{kw} kernel") from None


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def formats_from_args(args, stored=None):
    """LayerFormats: command-line formats over those stored with the layer, over defaults."""
    chosen = dict(stored or {})
    for role in DEFAULT_FORMATS:
        text = getattr(args, f"{role}_format", None)
        if text is not None:
            try:
                LayerFormats.from_strings(**{role: text})
            except FormatError as error:
                message = str(error)
                if "; " not in message:
                    message += "; write fixed<W,I[,Q[,O]]> or ufixed<...> with 0 <= I <= W"
                raise FormatError(f"--{role}-format: {message}") from None
            chosen[role] = text
    return LayerFormats.from_strings(**chosen)


def load_layer_args(args, *, quantized=True):
    """(Layer, LayerFormats) for the LAYER, --layer, --fuse and FORMATS arguments.

    The formats are checked against the layer too: the exact accumulator must fit.  When
    the command quantizes the weights (``quantized``), weights that overflow their format
    get one warning line on stderr; they are saturated or wrapped as the format says.
    """
    from .models.export import load_layer

    layer, stored = load_layer(args.layer, getattr(args, "layer_name", None),
                               getattr(args, "fuse", False), getattr(args, "pointwise", False))
    formats = formats_from_args(args, stored)
    formats.exact_accumulator(layer.spec.taps)
    if quantized:
        warn_weight_overflow(layer, formats)
    return layer, formats


def add_config_arg(parser, help=None):
    parser.add_argument("--config", metavar="CONFIG.json",
                        help=help or "per-layer formats, lanes, reuse, weights mode and target "
                                     "(made by dwconv config); command-line options override "
                                     "it")


def add_quiet_arg(parser):
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress output (a bar on a terminal, else a line per step)")


def _config(args):
    from .config import read_config
    return read_config(getattr(args, "config", None))


def _progress(args):
    """The Progress factory of a command: nothing with --quiet."""
    import functools

    from .progress import Progress
    return functools.partial(Progress, mode="off" if getattr(args, "quiet", False) else "auto")


def _format_options(args):
    """{role: text} of the FORMATS options given, each checked (named in the error)."""
    formats_from_args(args)
    return {role: getattr(args, f"{role}_format") for role in DEFAULT_FORMATS
            if getattr(args, f"{role}_format", None) is not None}


def design_for(args, layer, config=None):
    """The Design of ``layer`` (formats stored on it) for the command's options over
    ``config``'s entry for it: lanes and reuse given on the command line are checked with
    the command's own messages."""
    from .design import Design

    lanes, reuse = getattr(args, "lanes", None), getattr(args, "reuse", None)
    if lanes is not None:
        check_lanes(layer, lanes)
    if reuse is not None:
        check_reuse(layer, reuse)
    return Design.from_config(layer, config, formats=_format_options(args), lanes=lanes,
                              reuse=reuse, weights=getattr(args, "weights", None),
                              target=getattr(args, "target", None),
                              rounding=getattr(args, "rounding", None),
                              pointwise_lanes=getattr(args, "pointwise_lanes", None),
                              pointwise_reuse=getattr(args, "pointwise_reuse", None))


def load_design(args, *, quantized=True, target=True):
    """The Design for the LAYER, --layer, --fuse, --config, FORMATS, --lanes, --reuse,
    --weights and --target arguments.  With ``quantized``, weights that overflow their
    format get one warning line on stderr (see ``load_layer_args``).  ``target=False``:
    the command's --target is not a Design knob (synth takes it as its own argument)."""
    from .loading import load

    config = _config(args)
    layer = load(args.layer, getattr(args, "layer_name", None), getattr(args, "fuse", False),
                 config=None if config is None else _fuse_only(config),
                 pointwise=getattr(args, "pointwise", False))
    if not target:
        args = argparse.Namespace(**{**vars(args), "target": None})
    design = design_for(args, layer, config)
    if quantized:
        warn_weight_overflow(layer, design.formats)
    return design


def _fuse_only(config):
    """The configuration's fuse flag alone (its formats are applied by the Design)."""
    from .config import Config
    return Config(fuse=config.fuse)


def warn_overflows(design, x):
    """The one warning line for the values of a run on ``x`` that overflow their formats."""
    line = design.overflow_warning(x)
    if line:
        print(f"dwconv: warning: {line}", file=sys.stderr)


def read_input(path, layer):
    """The input array of a .npy file, checked, as float64 in the layer's data_format; an
    int8 layer's integer array stays integers (int8 in gives int8 out)."""
    from .kinds import INT8, kind_of

    x, batched = load_input(path, layer)
    x = from_channels_last(layer.spec, x, batched)
    if kind_of(layer) is INT8 and np.issubdtype(np.load(path, mmap_mode="r").dtype,
                                                np.integer):
        return x.astype(np.int64)
    return x


def warn_weight_overflow(layer, formats):
    """One stderr line counting the kernel and bias values their formats cannot hold (a
    separable block's pointwise kernel and bias too; an int8 layer's are its model's)."""
    from .golden.layer import SeparableLayer
    from .kinds import INT8, kind_of

    if kind_of(layer) is INT8:
        return
    depthwise = layer.depthwise if isinstance(layer, SeparableLayer) else layer
    count = lambda fmt, values: int(np.count_nonzero(fmt.overflows(values)))
    counts = [(count(formats.weight, depthwise.kernel), "kernel", formats.weight,
               "--weight-format")]
    if depthwise.spec.use_bias:
        counts.append((count(formats.bias, depthwise.bias), "bias", formats.bias,
                       "--bias-format"))
    if isinstance(layer, SeparableLayer):
        counts.append((count(formats.pointwise, layer.pointwise_kernel), "pointwise kernel",
                       formats.pointwise, "--pointwise-format"))
        if layer.use_bias:
            counts.append((count(formats.bias, layer.pointwise_bias), "pointwise bias",
                           formats.bias, "--bias-format"))
    parts = [(n, what, fmt, option) for n, what, fmt, option in counts if n]
    if not parts:
        return
    mode = lambda fmt: "wrapped" if fmt.overflow == "WRAP" else "saturated"
    said = "; ".join(f"{n} {what} value(s) overflow {fmt} and are {mode(fmt)}"
                     for n, what, fmt, _ in parts)
    options = " / ".join(dict.fromkeys(option for *_, option in parts))
    print(f"dwconv: warning: {said}; give a wider {options} to keep them", file=sys.stderr)


def load_input(path, layer):
    """(float64 (N, H, W, C) array, batched) from a .npy file in the layer's data_format."""
    path = pathlib.Path(path)
    try:
        with open(path, "rb") as file:
            magic = file.read(6)
        if magic[:2] == b"PK":
            raise UsageError(f"{path} is an .npz archive; give one array as a .npy file")
        if magic != b"\x93NUMPY":
            raise UsageError(f"{path} is not a .npy array file; save the array with "
                             f"numpy.save")
        from .models.limits import check_npy
        check_npy(path, error=UsageError)    # shape and size from the header, before loading
        array = np.load(path, allow_pickle=False)
    except UsageError:
        raise
    except FileNotFoundError:
        raise UsageError(f"input array {path} does not exist; give a .npy file made with "
                         f"numpy.save") from None
    except IsADirectoryError:
        raise UsageError(f"input array {path} is a folder; give a .npy file") from None
    except (OSError, ValueError, EOFError) as error:
        raise UsageError(f"cannot read input array {path} ({error}); give a .npy file made "
                         f"with numpy.save") from None
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
            or array.dtype == np.bool_):
        raise UsageError(f"{path} holds {array.dtype} values, not numbers; give a float "
                         f"array")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise UsageError(f"{path} holds {bad} NaN or Inf value(s); give finite numbers")
    try:
        return to_channels_last(layer.spec, array)
    except LayerError as error:
        raise UsageError(f"{path}: {error}; give an array of that shape") from None


def load_input_array(path, layer):
    """Float64 (N, H, W, C) input from a .npy file in the layer's data_format."""
    return load_input(path, layer)[0]


def atomic_write(path, write):
    """Call ``write(file)`` with a binary file object that becomes ``path`` on success."""
    with atomic_file(path) as file:
        write(file)


def save_array(path, array):
    atomic_write(path, lambda file: np.save(file, np.asarray(array)))


def _output_path(text, suffix):
    path = pathlib.Path(text)
    if path.suffix != suffix:
        raise UsageError(f"output {path} should end in {suffix}; name the file *{suffix}")
    return path


# ---------------------------------------------------------------------------------------------
# export

def add_export_args(parser):
    add_layer_args(parser, pointwise=True)
    parser.add_argument("--all", action="store_true",
                        help="export every depthwise layer of the model (nested ones too): "
                             "one folder per layer in DIR, listed in DIR/layers.json")
    parser.add_argument("--skip-unsupported", action="store_true",
                        help="with --all: leave out (and list) layers the engine cannot "
                             "build instead of stopping")
    add_format_args(parser)
    add_config_arg(parser)
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="folder to write layer.json and weights.npz into")


def run_export(args):
    from .models.export import export_layer

    if args.all:
        return _export_all(args)
    design = load_design(args, quantized=False)
    if design.kind.roles:
        export_layer(args.output, design.layer, design.formats)
    else:                               # an int8 layer: its quantization is the model's
        export_layer(args.output, design.layer)


def _export_all(args):
    """export --all: every layer read and checked first, then the tree written at once."""
    from .models.export import export_all

    if args.layer_name is not None:
        raise UsageError("--all exports every layer: drop --layer NAME, or drop --all")
    source = pathlib.Path(args.layer)
    if source.is_dir() or source.name == "layer.json":
        raise UsageError(f"--all needs a .keras or .h5 model file, not the exported folder "
                         f"{source}")
    config = _config(args)
    formats_from_args(args)             # a bad format string is the user's, not a layer's

    def formats_for(layer_id, layer, stored):
        chosen = dict(stored or {})
        if config is not None:
            chosen.update(config.settings(layer_id, layer.name)["formats"])
        return formats_from_args(args, chosen)

    survey = export_all(source, args.output, formats_for,
                        args.fuse or (config is not None and config.fuse), args.pointwise,
                        args.skip_unsupported,
                        check_ids=None if config is None else config.check_layers)
    print("\n".join(survey.report() + [f"wrote {args.output}"]))


# ---------------------------------------------------------------------------------------------
# golden

def add_golden_args(parser):
    add_layer_args(parser, pointwise=True)
    parser.add_argument("-i", "--input", required=True, metavar="X.npy", help="input array")
    parser.add_argument("-o", "--output", required=True, metavar="Y.npy",
                        help="output array (float64, the layer's data_format; an int8 "
                             ".tflite layer: int8 for an integer input)")
    parser.add_argument("--float", action="store_true",
                        help="the float reference (Keras' result) instead of fixed point")
    add_format_args(parser)
    add_rounding_arg(parser)
    add_config_arg(parser)


def run_golden(args):
    output = _output_path(args.output, ".npy")
    design = load_design(args, quantized=not args.float)
    x = read_input(args.input, design.layer)
    if not args.float:
        warn_overflows(design, x)
    save_array(output, design.predict(x, float=args.float))


# ---------------------------------------------------------------------------------------------
# vectors

def add_vectors_args(parser):
    add_layer_args(parser, pointwise=True)
    parser.add_argument("-i", "--input", required=True, metavar="X.npy", help="input array")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="folder for the vectors (npy, npz, $readmemh hex, json)")
    add_format_args(parser)
    add_rounding_arg(parser)
    add_lanes_arg(parser)
    add_reuse_arg(parser)
    add_pointwise_args(parser)
    add_config_arg(parser)


def run_vectors(args):
    design = load_design(args)
    design.vectors(read_input(args.input, design.layer), args.output)


# ---------------------------------------------------------------------------------------------
# simulate

def _probability(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a probability in [0, 1)")
    return value


def add_weights_arg(parser):
    parser.add_argument("--weights", choices=("const", "port"), default=None,
                        help="weights built in as constants (default) or loaded at run time "
                             "through the w_axis port")


def add_simulate_args(parser):
    add_layer_args(parser, pointwise=True)
    parser.add_argument("-i", "--input", required=True, metavar="X.npy", help="input array")
    parser.add_argument("-o", "--output", required=True, metavar="Y.npy",
                        help="the engine's output (float64, the layer's data_format; an int8 "
                             ".tflite layer: int8 for an integer input)")
    add_format_args(parser)
    add_rounding_arg(parser)
    add_lanes_arg(parser)
    add_reuse_arg(parser)
    add_pointwise_args(parser)
    parser.add_argument("--sim", default="amaranth",
                        choices=("amaranth", "verilator", "icarus", "cocotb-verilator",
                                 "cocotb-icarus"),
                        help="simulator (default amaranth): verilator and icarus run the "
                             "shipped Verilog at native speed (compiled testbench); "
                             "cocotb-verilator and cocotb-icarus run it under cocotb with "
                             "cocotbext-axi (protocol checks, slow)")
    parser.add_argument("--stall", type=_probability, default=0.0, metavar="PROB",
                        help="probability per cycle of a source pause and, independently, "
                             "of sink backpressure")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random stalls")
    add_weights_arg(parser)
    parser.add_argument("--report", metavar="R.json", help="write the report JSON here")
    add_config_arg(parser)
    add_quiet_arg(parser)


def run_simulate(args):
    import json

    output = _output_path(args.output, ".npy")
    report_path = _output_path(args.report, ".json") if args.report else None
    design = load_design(args)
    x = read_input(args.input, design.layer)
    warn_overflows(design, x)
    result = design.simulate(x, sim=args.sim, stall=args.stall, seed=args.seed,
                             progress=_progress(args))
    report = result.report
    save_array(output, result.outputs)
    if report_path:
        text = json.dumps(report, indent=2) + "\n"
        atomic_write(report_path, lambda file: file.write(text.encode()))
    error = report.get("max_abs_error_vs_float")
    print(f"{report['sim']}: {report['frames']} frame(s), {report['cycles']} cycles "
          f"(ideal {report['ideal_cycles']}, efficiency {report['efficiency']:.3f}), latency "
          f"{report['latency_cycles']}, mismatches {report['mismatches']}"
          + ("" if error is None else f", max |error| vs float {error:.4g}"))
    if report["mismatches"] or report["framing_errors"] or report["error_flag"]:
        print(f"dwconv: error: the engine differs from the fixed golden model in "
              f"{report['mismatches']} value(s) ({report['framing_errors']} framing "
              f"problem(s)); this is a bug, please report it", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------------------
# verilog

def add_verilog_args(parser):
    add_layer_args(parser, pointwise=True)
    add_format_args(parser)
    add_rounding_arg(parser)
    add_lanes_arg(parser)
    add_reuse_arg(parser)
    add_pointwise_args(parser)
    add_weights_arg(parser)
    parser.add_argument("--top", default="dwconv",
                        help="top module name (default dwconv); for an export tree, the "
                             "prefix of each layer's module name (dwconv_<layer>)")
    parser.add_argument("--target", choices=("ecp5", "ice40"), default=None,
                        help="multipliers as that family's DSP blocks (MULT18X18D / SB_MAC16 "
                             "instances with their registers); default: portable Verilog, "
                             "registered '*' that vendor tools map to DSP blocks")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.v",
                        help="Verilog file to write; for an export tree (dwconv export "
                             "--all) a folder, one <module>.v per layer")
    add_config_arg(parser)


def run_verilog(args):
    import re

    from .models.export import is_tree

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", args.top):
        raise UsageError(f"--top {args.top!r} is not a Verilog module name; use letters, "
                         f"digits and _")
    if is_tree(args.layer) and args.layer_name is None:
        return _verilog_tree(args)
    output = _output_path(args.output, ".v")
    design = load_design(args)
    text = design.verilog(top=args.top)
    atomic_write(output, lambda file: file.write(text.encode()))
    print(f"wrote {output}: module {args.top}, {design.lanes} lane(s) in, "
          f"{design.out_lanes} out, {design.multipliers} multipliers, line buffer "
          f"{design.line_buffer_words} words")


def _verilog_tree(args):
    """verilog on an export tree: one module per layer, all built before any is written."""
    import json

    from .models.export import read_export, read_tree
    from .loading import with_formats
    from .flows.verilog import module_name

    output = pathlib.Path(args.output)
    if output.suffix == ".v":
        raise UsageError(f"{args.layer} holds several layers: give -o a folder for their "
                         f"Verilog files, not {output}")
    modules = []
    config = _config(args)
    tree = read_tree(args.layer)
    if config is not None:
        config.check_layers([layer_id for layer_id, _ in tree])
    for layer_id, folder in tree:
        layer = with_formats(*read_export(folder), layer_id)
        design = design_for(args, layer, config)
        warn_weight_overflow(layer, design.formats)
        top = module_name(args.top, folder.name)
        modules.append((layer_id, top, design.verilog(top=top), design))
    listing = [{"layer": layer_id, "module": top, "file": f"{top}.v"}
               for layer_id, top, _, _ in modules]
    with atomic_folder(output, "modules.json") as temp:
        for _, top, text, _ in modules:
            (temp / f"{top}.v").write_text(text)
        (temp / "modules.json").write_text(json.dumps(listing, indent=2) + "\n")
    for layer_id, top, _, engine in modules:
        print(f"wrote {output / (top + '.v')}: module {top} ({layer_id}), {engine.lanes} "
              f"lane(s) in, {engine.out_lanes} out, {engine.multipliers} multipliers")


# ---------------------------------------------------------------------------------------------
# synth

def add_synth_args(parser):
    from .flows.synth import DEVICES, TARGETS

    add_layer_args(parser, pointwise=True)
    parser.add_argument("--target", required=True, choices=TARGETS, help="FPGA family")
    parser.add_argument("--device", metavar="D",
                        help="device: " + "; ".join(f"{t}: {', '.join(d)} (default {next(iter(d))})"
                                                   for t, d in DEVICES.items()))
    add_format_args(parser)
    add_rounding_arg(parser)
    add_lanes_arg(parser)
    add_reuse_arg(parser)
    add_pointwise_args(parser)
    add_weights_arg(parser)
    parser.add_argument("--no-dsp", action="store_true",
                        help="keep multipliers out of DSP blocks (LUT logic)")
    parser.add_argument("--seeds", type=_positive_int, default=1, metavar="N",
                        help="place and route with nextpnr seeds 1..N (one per core at a "
                             "time): the best seed's figures, and the median Fmax (default 1)")
    parser.add_argument("--seed-timeout", type=_positive_int, metavar="S",
                        help="stop a seed's nextpnr after S seconds and leave it out (its "
                             "router may never converge); fails only if every seed is stopped")
    parser.add_argument("--report", metavar="R.json", help="write the report JSON here")
    parser.add_argument("--build-dir", metavar="DIR",
                        help="keep the tools' files and logs here (default: a temporary folder)")
    add_config_arg(parser)
    add_quiet_arg(parser)


def _tool_failure(error):
    """The one-line error for a tool that failed (a ``ToolError``), with what to try: a
    yosys assertion is the tool's own bug; a place and route failure may be a design that
    does not fit; otherwise the tool's log has the rest."""
    kept = error.log is not None and pathlib.Path(error.log).exists()
    message = _one_line(f"{error.tool} failed: {error.reason}" if not kept else error)
    if "Assert" in error.reason:
        return (f"{message}: an internal error of the tool (a bug, not a fit problem); "
                f"another --lanes, --reuse or format set makes a different netlist")
    if error.tool.startswith("nextpnr") and not isinstance(error, ToolTimeout):
        return (f"{message}; the design may not fit the device: try fewer --lanes or another "
                f"--device")
    if kept:
        return f"{message}; the log has the rest"
    return (f"{message}; the tools' logs were in a temporary folder (dwconv synth --build-dir "
            f"DIR keeps them)" if error.log else f"{message}; see dwconv --help")


def run_synth(args):
    import json

    from .flows.synth import DEVICES, format_synth_table

    report_path = _output_path(args.report, ".json") if args.report else None
    if args.device is not None and args.device not in DEVICES[args.target]:
        raise UsageError(f"--device {args.device!r} is not a {args.target} device; use one of "
                         f"{', '.join(DEVICES[args.target])}")
    design = load_design(args, target=False)
    result = design.synth(args.target, device=args.device, seeds=args.seeds,
                          dsp=not args.no_dsp, seed_timeout=args.seed_timeout,
                          build_dir=args.build_dir, progress=_progress(args))
    print(format_synth_table([result]))
    if report_path:
        text = json.dumps(result, indent=2) + "\n"
        atomic_write(report_path, lambda file: file.write(text.encode()))


# ---------------------------------------------------------------------------------------------
# build

def add_build_args(parser):
    from .flows.board import BOARDS

    add_layer_args(parser)
    parser.add_argument("--board", required=True, choices=sorted(BOARDS), help="target board")
    add_format_args(parser)
    add_lanes_arg(parser)
    add_reuse_arg(parser)
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="build folder (design files, logs, bitstream)")
    parser.add_argument("--simulate-netlist", action="store_true",
                        help="then simulate the synthesized netlist the bitstream is made "
                             "from (Icarus, with the cells' models) until its pass or fail "
                             "LED lights; exit code 1 if it fails")
    add_config_arg(parser)


def run_build(args):
    from .flows.board import BOARD_NETLIST, build_board
    from .flows.postsynth import run_board_netlist
    from .flows.tools import tool_path

    design = load_design(args)
    if design.kind.name != "depthwise":
        raise UsageError(f"build makes its self-checking board design for depthwise layers "
                         f"only; layer {design.name!r} is a {design.layer_kind}: use dwconv "
                         f"verilog, vectors or synth for it")
    layer, formats, lanes, reuse = design.layer, design.formats, design.lanes, design.reuse
    if args.simulate_netlist and not (tool_path("iverilog") and tool_path("vvp")):
        raise UsageError("--simulate-netlist needs Icarus Verilog (iverilog, vvp), which is "
                         "not installed; install it (e.g. apt-get install iverilog) or leave "
                         "the option out")
    bitstream = build_board(layer, formats, lanes, args.board, args.output, reuse=reuse)
    print(f"wrote {bitstream}: self-checking {args.board} design (LEDs show pass / fail)")
    if args.simulate_netlist:
        spec = layer.spec
        beats = spec.height * spec.width * spec.channels // lanes
        result = run_board_netlist(pathlib.Path(args.output) / BOARD_NETLIST, args.board,
                                   pathlib.Path(args.output) / "netlist_sim",
                                   max_cycles=8 * beats * reuse + 20000)
        verdict = [line for line in result.log.splitlines()
                   if line.startswith(("PASS", "FAIL"))]
        if not result.passed:
            print(f"dwconv: netlist simulation failed: "
                  f"{verdict[-1] if verdict else result.log[-500:]}",
                  file=sys.stderr)
            return 1
        print(f"netlist simulation: pass LED lit after {verdict[-1].split()[1]} cycles "
              f"(every output beat equal to the golden model's)")


# ---------------------------------------------------------------------------------------------
# config

def add_config_command_args(parser):
    add_layer_args(parser)
    parser.add_argument("--all", action="store_true",
                        help="an entry for every depthwise layer of the model (nested ones too)")
    add_config_arg(parser, "an existing configuration to extend: its defaults and entries "
                           "are kept, entries for new layers added")
    parser.add_argument("-o", "--output", required=True, metavar="CONFIG.json",
                        help="configuration file to write: defaults and one entry per layer "
                             "(formats, lanes, reuse, weights, target)")


def _chosen_layers(args, fuse, verb):
    """``{id: layer}``: every layer with --all, else the one LAYER / --layer names."""
    from .loading import load, load_all

    if args.all:
        if args.layer_name is not None:
            raise UsageError(f"--all {verb} every layer: drop --layer NAME, or drop --all")
        return load_all(args.layer, fuse)
    layer = load(args.layer, args.layer_name, fuse)
    return {layer.layer_id or layer.name: layer}


def run_config(args):
    from .config import Config, config_for_layers

    output = _output_path(args.output, ".json")
    base = _config(args)
    fuse = args.fuse or (base is not None and base.fuse)
    layers = _chosen_layers(args, fuse, "configures")
    made = config_for_layers(layers, model=pathlib.Path(args.layer).name, fuse=fuse)
    if base is not None:
        # an existing file keeps its defaults and entries; new layers are added
        base.check_layers(layers)
        made = Config({**made.defaults, **base.defaults}, {**made.layers, **base.layers},
                      model=made.model, fuse=fuse)
    for layer_id, layer in layers.items():         # every entry fits its layer
        design_for(argparse.Namespace(), layer, made)
    made.write(output)
    print(f"wrote {output}: {len(made.layers)} layer(s): {', '.join(made.layers)}")


# ---------------------------------------------------------------------------------------------
# profile

def add_profile_args(parser):
    add_layer_args(parser)
    parser.add_argument("-i", "--input", required=True, metavar="CALIB.npy",
                        help="calibration input: an array for the layer (its data_format), "
                             "the model's input (Keras then computes each layer's input), or "
                             "an .npz with one array per layer id")
    parser.add_argument("--width", type=_positive_int, default=8, metavar="W",
                        help="total bits of every format (default 8)")
    parser.add_argument("--all", action="store_true",
                        help="every depthwise layer of the model or export tree")
    add_config_arg(parser, "configuration (made by dwconv config) whose entries get the "
                           "chosen formats; its fuse and other formats are used")
    parser.add_argument("-o", "--output", metavar="DIR",
                        help="export folder (a tree with --all) holding the chosen formats")
    add_quiet_arg(parser)


def run_profile(args):
    from .calibration import calibration_inputs
    from .profile import profile_layer

    if args.output is None and args.config is None:
        raise UsageError("profile writes its formats somewhere: give -o DIR (an export "
                         "folder) or --config CONFIG.json (its entries are updated)")
    if not 2 <= args.width <= 32:
        raise UsageError(f"--width {args.width} must be from 2 to 32 bits")
    config = _config(args)
    fuse = args.fuse or (config is not None and config.fuse)
    layers = _chosen_layers(args, fuse, "profiles")
    _depthwise_only(layers)
    if config is not None:
        config.check_layers(layers)
    inputs = calibration_inputs(args.input, args.layer, layers)
    profiles = {}
    with _progress(args)(len(layers), "profile") as bar:
        for layer_id, layer in layers.items():
            base = design_for(argparse.Namespace(), layer, config).formats.to_dict()
            profiles[layer_id] = profile_layer(layer, inputs[layer_id], args.width,
                                               base_formats=base)
            bar.step(layer_id)
    for layer_id, found in profiles.items():
        print("\n".join(found.lines()))
    if args.output is not None:
        _write_profiled(args, layers, profiles)
    if config is not None:
        updated = config
        for layer_id, found in profiles.items():
            updated = updated.with_entry(layer_id, formats=found.formats)
        updated.write(args.config)
        print(f"updated {args.config}: formats of {len(profiles)} layer(s)")


def _depthwise_only(layers):
    """profile chooses the formats of depthwise layers; any other kind is refused."""
    from .kinds import DEPTHWISE, kind_of

    other = {layer_id: kind_of(layer).layer_kind(layer) for layer_id, layer in layers.items()
             if kind_of(layer) is not DEPTHWISE}
    if other:
        named = ", ".join(f"{layer_id!r} ({kind})" for layer_id, kind in list(other.items())[:3])
        more = f" and {len(other) - 3} more" if len(other) > 3 else ""
        raise UsageError(f"profile chooses the formats of depthwise layers only, not of "
                         f"{named}{more}; give a separable block's formats with the FORMATS "
                         f"options (an int8 .tflite layer's are its model's)")


def _write_profiled(args, layers, profiles):
    from .models.export import export_layer, export_tree

    if args.all:
        export_tree(args.output, [(layer_id, layer, profiles[layer_id].formats)
                                  for layer_id, layer in layers.items()],
                    model=pathlib.Path(args.layer).name)
    else:
        (layer_id, layer), = layers.items()
        export_layer(args.output, layer, profiles[layer_id].formats)
    print(f"wrote {args.output}: {len(profiles)} layer(s) with the chosen formats")


# ---------------------------------------------------------------------------------------------
# demo

def add_demo_args(parser):
    from .demo import DEFAULT_OUTPUT, DEMO_FRAMES

    parser.add_argument("-o", "--output", default=str(DEFAULT_OUTPUT), metavar="DIR",
                        help=f"folder for everything the demo writes (default {DEFAULT_OUTPUT})")
    parser.add_argument("--frames", type=_positive_int, default=DEMO_FRAMES, metavar="N",
                        help=f"random frames streamed back to back (default {DEMO_FRAMES})")


def run_demo(args):
    from .demo import run_demo as demo

    summary = demo(args.output, frames=args.frames)
    return 1 if summary["mismatches"] else 0


# ---------------------------------------------------------------------------------------------
# The command table.  Later commands (simulate, verilog, synth, build, demo) add their
# Command(...) entries below, in the order `dwconv --help` should list them.

COMMANDS = {c.name: c for c in [
    Command("export", "write a layer's layer.json and weights.npz", add_export_args,
            run_export),
    Command("golden", "run the golden model (fixed point, or --float) on an array",
            add_golden_args, run_golden),
    Command("vectors", "write golden vectors (npy, npz, $readmemh hex) for a testbench",
            add_vectors_args, run_vectors),
    Command("simulate", "simulate the engine on an array and compare it with the golden model",
            add_simulate_args, run_simulate),
    Command("verilog", "write the engine as Verilog with AXI4-Stream ports",
            add_verilog_args, run_verilog),
    Command("config", "write a per-layer configuration (formats, lanes, reuse, weights, "
            "target) that every command takes with --config", add_config_command_args,
            run_config),
    Command("profile", "choose formats from calibration data: ranges, formats, error vs "
            "float", add_profile_args, run_profile),
    # ---- add new commands here ----
    Command("synth", "synthesize, place and route the engine (iCE40 or ECP5): resources "
            "and Fmax", add_synth_args, run_synth),
    Command("build", "build a self-checking bitstream for a board (amaranth-boards)",
            add_build_args, run_build),
    Command("demo", "the whole flow on the built-in seed layer: Keras, golden models, "
            "simulations, Verilog, vectors, figure", add_demo_args, run_demo),
]}


# ---------------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: bad arguments are bad input like any other."""

    def error(self, message):
        raise UsageError(f"{message}; run '{self.prog} --help' for the arguments")


def build_parser():
    parser = _Parser(prog="dwconv", description="Streaming fixed-point DepthwiseConv2D "
                     "engine: Keras layer in, golden model, vectors and Verilog out.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for command in COMMANDS.values():
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def _one_line(message):
    return " ".join(str(message).split())


#: What to do, for errors whose message says only what is wrong.
_ADVICE = (
    (LayerError, "change that option of the layer in the model (or in the exported "
                 "layer.json) to one the engine supports, see README"),
    (ModelFileError, "fix the file or export the layer again with dwconv export"),
)


def _with_advice(error):
    """The error's message on one line, with what to do after '; ' when it has none."""
    message = _one_line(error)
    if "; " not in message:
        advice = next((text for kind, text in _ADVICE if isinstance(error, kind)),
                      "see dwconv --help")
        message = f"{message}; {advice}"
    return message


def main(argv=None):
    """Run the command line; returns the exit code (the console script exits with it).

    User errors, and a tool that is missing or fails (``flows.tools``: MissingToolError,
    ToolError, with the tool's own message), are exit code 2; every other exception is an
    internal error, exit code 1."""
    try:
        args = build_parser().parse_args(argv)
        code = args.run(args)
        return 0 if code is None else code
    except ToolError as error:
        print(f"dwconv: error: {_tool_failure(error)}", file=sys.stderr)
        return 2
    except USER_ERRORS as error:
        print(f"dwconv: error: {_with_advice(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dwconv: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except Exception as error:
        if os.environ.get("DWCONV_DEBUG"):
            raise
        print(f"dwconv: internal error: {type(error).__name__}: {_one_line(error)}; please "
              f"report it (DWCONV_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
