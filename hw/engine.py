"""The engine top: AXI4-Stream video in, depthwise convolution, AXI4-Stream video out."""

from .axi import AxiStreamTop
from .core import DepthwiseCore
from .plan import SCAN_DELAY, EnginePlan

__all__ = ["DepthwiseEngine", "SCAN_DELAY"]

#: The plan's figures that the engine shows as its own attributes.
_FIGURES = ("spec", "formats", "lanes", "weights", "reuse", "target", "store", "groups",
            "out_lanes", "accumulator", "latency", "mac_latency", "multipliers",
            "real_multipliers", "line_buffer_words", "counter_width", "frames_in_flight",
            "queue_depth")


class DepthwiseEngine(AxiStreamTop):
    """The Verilog top: ``DepthwiseCore`` with flat AXI4-Stream video ports.

    The core's streams become ``s_axis_*`` (``i``), ``m_axis_*`` (``o``) and ``w_axis_*``
    (``w``): ``tdata`` is the lanes' array (lane 0 in the least significant bits), ``tuser``
    the beat's ``first``, ``tlast`` its ``last``.  Nothing else happens here, so cycle counts
    and results are the core's.  The figures (``latency``, ``multipliers``, ...) are those
    of ``plan``, an ``EnginePlan``; the core is built when the engine is elaborated.

    Parameters
    ----------
    spec : LayerSpec
    formats : LayerFormats
    lanes : int
        P, input channels per beat; must divide C.  Output beats carry P*M lanes.
    kernel_raw, bias_raw : ndarray of int
        Quantized weights (kh, kw, C, M) and bias (C*M,), from the golden model.
    weights : "const" or "port"
        Built-in constants, or run-time loads through ``w_axis_*`` (Keras order, one raw
        value per beat, sign-extended to the wider of the weight and bias formats).
    target : None, "ecp5" or "ice40"
        FPGA family whose DSP blocks the multipliers use (``hw.multiplier``); None is
        portable Verilog.  Cycle counts and results are the same for every target.
    reuse : int
        R, 1 to kh*kw: one input beat every R cycles, each output's kh*kw products on
        ceil(kh*kw/R) multipliers (``FoldedMacArray``) instead of kh*kw (``MacArray``).

    Members
    -------
    plan : EnginePlan
        Also the source of the attributes ``spec``, ``formats``, ``lanes``, ``weights``,
        ``reuse``, ``target``, ``store`` (a ``WeightPlan``), ``groups``, ``out_lanes``,
        ``accumulator``, ``latency``, ``mac_latency``, ``multipliers``,
        ``real_multipliers``, ``line_buffer_words``, ``counter_width``,
        ``frames_in_flight`` and ``queue_depth``.
    s_axis_tdata, s_axis_tvalid, s_axis_tuser, s_axis_tlast : In; s_axis_tready : Out
        P lanes of the input format, lane 0 in the least significant bits.  ``tuser`` marks
        the first beat of a frame, ``tlast`` the last beat of each row.
    m_axis_tdata, m_axis_tvalid, m_axis_tuser, m_axis_tlast : Out; m_axis_tready : In
        P*M lanes of the output format; lane q of the beat for channel group g is output
        channel g*P*M + q (Keras order).
    w_axis_tdata, w_axis_tvalid, w_axis_tlast : In; w_axis_tready : Out
        Weight loads, with ``weights="port"`` only.
    error : Out
        Sticky until reset: a malformed input frame or weight load was seen.
    """

    def __init__(self, spec, formats, lanes, kernel_raw, bias_raw, *, weights="const",
                 reuse=1, target=None):
        self.plan = plan = EnginePlan(spec, formats, lanes, kernel_raw, bias_raw,
                                      weights=weights, reuse=reuse, target=target)
        for name in _FIGURES:
            setattr(self, name, getattr(plan, name))
        self.in_width = formats.input.width
        super().__init__(lanes * formats.input.width, plan.out_lanes * formats.output.width,
                         plan.store.load_width if weights == "port" else None)

    def core(self):
        """A new stream-native ``DepthwiseCore`` of this engine's plan."""
        return DepthwiseCore(self.plan)
