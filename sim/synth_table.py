"""Regenerates the README's synthesis table: ``python -m dwconv.sim.synth_table -o FILE.json``.

``--boards DIR`` also builds the seed layer's self-checking bitstreams (iCEBreaker at P=1,
ULX3S at P=C), a few minutes each.  The seed layer (16x12x6, 3x5, valid) and a 32x32x8 3x3 same layer, at P=1 and P=C, 8-bit
formats, constant and port weights, on ECP5 (LFE5U-85F) and iCE40 (UP5K, else HX8K where
it fits).  Sequential runs, about a minute each (nextpnr dominates).
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..golden.fixed_ref import quantize_weights
from ..golden.formats import LayerFormats
from ..golden.layer import Layer
from ..golden.spec import LayerSpec
from ..hw.engine import DepthwiseEngine
from .board import build_board
from .synth import format_synth_table, run_synth

__all__ = ["LAYERS", "FORMATS", "synth_matrix", "main"]

FORMATS = dict(input="fixed<8,3>", weight="fixed<8,1>", bias="fixed<8,3>",
               output="fixed<8,3,RND,SAT>")
LAYERS = {
    "seed 16x12x6 3x5 valid": LayerSpec(input_shape=(16, 12, 6), kernel_size=(3, 5)),
    "32x32x8 3x3 same": LayerSpec(input_shape=(32, 32, 8), kernel_size=(3, 3), padding="same"),
}
#: iCE40 devices tried in order until one fits
ICE40_DEVICES = ("up5k", "hx8k")


def _layer(spec):
    rng = np.random.default_rng(0)
    return Layer(spec, rng.normal(scale=0.5, size=spec.kernel_shape).astype(np.float32),
                 rng.normal(scale=0.5, size=spec.out_channels).astype(np.float32))


def _engine(spec, lanes, weights):
    formats = LayerFormats.from_strings(**FORMATS)
    kernel_raw, bias_raw = quantize_weights(_layer(spec), formats)
    return DepthwiseEngine(spec, formats, lanes, kernel_raw, bias_raw, weights=weights)


def synth_matrix(targets=("ecp5", "ice40"), progress=print):
    """Every (layer, lanes, weights, target) of the table; results in order."""
    results = []
    for name, spec in LAYERS.items():
        for lanes in sorted({1, spec.channels}):
            for weights in ("const", "port"):
                for target in targets:
                    devices = ICE40_DEVICES if target == "ice40" else ("85k",)
                    for device in devices:
                        progress(f"== {name}, P={lanes}, {weights} weights, {target} {device}")
                        with tempfile.TemporaryDirectory(prefix="dwconv-synth-") as temp:
                            try:
                                result = run_synth(_engine(spec, lanes, weights), target,
                                                   device=device, build_dir=temp,
                                                   progress=progress)
                            except RuntimeError as error:
                                result = {"target": target, "device": device, "lanes": lanes,
                                          "weights": weights,
                                          "error": str(error).splitlines()[0]}
                        result["layer"] = name
                        results.append(result)
                        if "error" not in result:
                            break
    return results


#: board builds of the seed layer: (board, lanes)
BOARD_BUILDS = (("icebreaker", 1), ("ulx3s", 6))


def board_builds(out_dir, progress=print):
    """Build the seed layer's self-checking bitstreams; returns their paths."""
    spec = LAYERS["seed 16x12x6 3x5 valid"]
    formats = LayerFormats.from_strings(**FORMATS)
    layer = _layer(spec)
    built = []
    for board, lanes in BOARD_BUILDS:
        progress(f"== building the {board} self-check bitstream (P={lanes})")
        built.append(build_board(layer, formats, lanes, board, Path(out_dir) / board))
        progress(f"wrote {built[-1]}")
    return built


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, help="write the results JSON here")
    parser.add_argument("--target", choices=("ecp5", "ice40"), action="append",
                        help="only this target (repeatable)")
    parser.add_argument("--boards", type=Path, metavar="DIR",
                        help="also build the seed layer's board bitstreams here")
    args = parser.parse_args(argv)
    results = synth_matrix(tuple(args.target or ("ecp5", "ice40")),
                           progress=lambda line: print(line, file=sys.stderr, flush=True))
    if args.output:
        args.output.write_text(json.dumps(results, indent=1) + "\n")
    print(format_synth_table([r for r in results if "error" not in r],
                             label=("layer", lambda r: r["layer"])))
    for r in results:
        if "error" in r:
            print(f"{r['layer']} P={r['lanes']} {r['weights']} {r['target']} {r['device']}: "
                  f"{r['error']}")
    if args.boards:
        for path in board_builds(args.boards, progress=lambda line: print(line, file=sys.stderr)):
            print(f"bitstream: {path}")


if __name__ == "__main__":
    main()
