"""The DS-CNN entry of the bench: its engine's figures and the parse of a failed fit
(no simulation, no synthesis: those run in ``python -m dwconv.campaigns.bench --dscnn-only``)."""

from dwconv.models.tflite_io import load_tflite_layer
from dwconv.hw.int8 import Int8Engine
from dwconv.campaigns import bench


def test_dscnn_engine_figures():
    layer = load_tflite_layer(bench.DSCNN_MODEL)
    assert layer.spec.input_shape == (25, 5, 64) and layer.spec.kernel_size == (3, 3)
    engine = Int8Engine.from_layer(layer, 16)
    # 3x3 taps on 16 lanes, and per requantizer lane a 32 x 31-bit product in four
    # 18 x 18 partial products
    assert engine.multipliers == 9 * 16 + 4 * 16
    assert engine.target is None
    placed = engine.retargeted("ecp5")
    assert placed.target == "ecp5" and placed.lanes == 16
    assert placed.line_buffer_words == engine.line_buffer_words > 0


def test_fit_figures_from_a_nextpnr_log(tmp_path):
    (tmp_path / "nextpnr.log").write_text(
        "Info: Device utilisation:\n"
        "Info: \t         ICESTORM_LC: 12345/  5280   233%\n"
        "Info: \t        ICESTORM_RAM:     4/    30    13%\n"
        "ERROR: Unable to place cell 'x', no BELs remaining to implement cell type "
        "'ICESTORM_LC'\n")
    assert bench._fit_figures(tmp_path) == {"ICESTORM_LC": [12345, 5280],
                                            "ICESTORM_RAM": [4, 30]}
    assert bench._fit_figures(tmp_path / "none") == {}
