"""Smoke test of the benchmark: the quick subset runs and writes well-formed results.

Not a timed test: it checks the structure of bench.json and BENCH.md, that the simulated
design matched the golden model, and the peers' formulas on hand-computed cases.
"""

import io
import json

from dwconv.golden.spec import LayerSpec
from dwconv.campaigns.bench import peer_cycles, run_bench
from support.shared_build import native_build_root


def test_quick_bench_writes_json_and_markdown(tmp_path):
    log = io.StringIO()
    data = run_bench(tmp_path, quick=True, work=tmp_path / "work",
                     build_root=native_build_root(), stream=log)
    assert "wrote" in log.getvalue()
    assert json.loads((tmp_path / "bench.json").read_text()) == data
    [row] = data["layers"]
    assert row["layer"] == "seed_dw" and row["lanes"] == 6
    simulation = row["simulation"]
    assert simulation["mismatches"] == 0 and simulation["framing_errors"] == 0
    assert simulation["frames"] >= 2
    assert simulation["ideal_cycles"] == simulation["frames"] * 16 * 12
    assert simulation["cycles"] == simulation["ideal_cycles"] + simulation["overhead_cycles"]
    assert row["line_buffer_words"] >= row["line_buffer_min_words"] == (2 * 12 + 4 + 1) * 6
    assert row["multipliers"] == 15 * 6
    assert set(row["peers_per_frame"]) == {"input_bound", "hls4ml", "finn_matched",
                                           "finn_default"}
    errors = row["quantization"]["fixed_vs_keras"]
    assert 0 < errors["16"]["max_abs_error"] < errors["8"]["max_abs_error"] < 0.2
    assert row["quantization"]["float_vs_keras"] < 1e-5
    for name, run in data["speed"]["simulators"].items():
        assert "skipped" in run or (run["mismatches"] == 0 and run["cycles_per_second"] > 0)
    assert data["synthesis"] == {"skipped": "not run (--quick or --no-synth)"}

    text = (tmp_path / "BENCH.md").read_text()
    for heading in ("## Cycles and efficiency (simulated)", "## Against the input-bound limit",
                    "## Storage and multipliers", "## Quantization error against Keras",
                    "## Simulation speed", "## Synthesis"):
        assert heading in text
    assert "| seed | seed_dw | 16x12x6 | 3x5 valid | 6 |" in text
    # BENCH.md is the one place for the figures: the bench writes nothing else (no README)
    assert {p.name for p in tmp_path.iterdir()} == {"bench.json", "BENCH.md", "work"}


def test_peer_formulas_on_hand_computed_layers():
    # 32x32x8, 3x3 same, P=8: padded 34x34, one channel group
    same = peer_cycles(LayerSpec(input_shape=(32, 32, 8), kernel_size=(3, 3),
                                 padding="same"), 8)
    assert same["input_bound"] == 32 * 32
    assert same["hls4ml"] == 34 * 34
    assert same["finn_matched"] == 34 * 34 + 2          # the parallel window's 2 extra
    # default style: buffer (2*34+3)... + 32 rows * max(32*9, 34), VVAU 9*32*32
    assert same["finn_default"] == max(34 * 34, (2 * 34 + 2 + 1) + 32 * 32 * 9, 9 * 32 * 32)
    # 16x12x6, 3x5 valid, P=3: two channel groups, nothing padded
    valid = peer_cycles(LayerSpec(input_shape=(16, 12, 6), kernel_size=(3, 5),
                                  padding="valid"), 3)
    assert valid["input_bound"] == valid["hls4ml"] == 16 * 12 * 2
    assert valid["finn_matched"] == 16 * 12 * 2 + 2


def test_synthesis_tables_show_reuse_seeds_paths_and_board_netlists():
    from dwconv.campaigns.bench_report import _synthesis_section

    run = {"configuration": "seed_dw", "target": "ice40", "device": "up5k",
           "part": "iCE40UP5K-SG48", "lanes": 1, "reuse": 2, "weights": "port",
           "multipliers": 8, "real_multipliers": 8, "line_buffer_words": 40, "luts": 1385,
           "ffs": 1740, "engine_ffs": 1600, "dsps": 8, "brams": 4, "fmax_mhz": 39.13,
           "fmax_median_mhz": 38.5, "fmax_seeds_mhz": [37.0, 38.5, 39.13],
           "critical_path": {"delay_ns": 25.6, "logic_ns": 9.1,
                             "cells": ["engine.scanner.row_base_SB_DFF", "engine.fire_SB_LUT4"]}}
    stopped = dict(run, target="ecp5", device="85k", part="LFE5U-85F-CABGA381", lanes=6,
                   reuse=1, fmax_mhz=182.15, fmax_median_mhz=178.75,
                   fmax_seeds_mhz=[175.35, 182.15], seeds_unfinished=[1], seed_timeout_s=900)
    synthesis = {"results": [run, stopped, {"configuration": "seed_dw", "target": "ice40",
                                   "device": "up5k", "lanes": 6, "reuse": 1,
                                   "weights": "const", "error": "did not place"}],
                 "boards": [{"configuration": "seed_dw", "board": "icebreaker", "lanes": 1,
                             "reuse": 2, "exit_code": 0, "error": None, "seconds": 170.2,
                             "netlist_cycles": 2508, "bitstream_bytes": 104090},
                            {"configuration": "seed_dw", "board": "ulx3s", "lanes": 6,
                             "reuse": 1, "exit_code": 0, "error": None, "seconds": 700.0,
                             "simulated": True, "netlist_simulator": "verilator",
                             "netlist_seconds": 501.4, "netlist_cycles": 246,
                             "bitstream_bytes": 2000000}]}
    bench = _synthesis_section(synthesis)
    assert "| seed_dw | iCE40UP5K-SG48 | 1 | 2 | port | 8 | 40 | 1385 | 1740 | 1600 | 8 | 4 |" \
        in bench
    assert "39.13 / 38.5 (3 seeds) |" in bench
    assert "182.15 / 178.75 (2 seeds); seed 1 stopped after 900 s" in bench
    assert "scanner.row_base -> fire: 25.6 ns (9.1 logic, 2 cells)" in bench
    assert "at P=6, R=1: did not place" in bench
    assert "--lanes 1 --reuse 2 --simulate-netlist" in bench
    assert "lit the pass LED after 2508 cycles" in bench
    assert "--board ulx3s --lanes 6 --reuse 1` " in bench
    assert "its netlist, simulated (Verilator, 501 s with its build), lit the pass LED after " \
        "246 cycles" in bench
