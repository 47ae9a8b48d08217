"""The int8 engine top: AXI4-Stream video in, an int8 DEPTHWISE_CONV_2D, AXI4-Stream video out."""

from .axi import AxiStreamTop
from .int8_core import Int8Core
from .int8_plan import INT8_ROUNDINGS, Int8Plan, layer_arguments

__all__ = ["Int8Engine", "INT8_ROUNDINGS"]

#: The plan's figures that the engine shows as its own attributes.
_FIGURES = ("spec", "lanes", "rounding", "weights", "reuse", "target", "groups", "out_lanes",
            "formats", "latency", "queue_depth", "multipliers", "real_multipliers",
            "line_buffer_words", "store", "load_words", "load_width")


class Int8Engine(AxiStreamTop):
    """The Verilog top of a full-integer int8 DEPTHWISE_CONV_2D: ``Int8Core`` with flat
    AXI4-Stream video ports.

    The core's streams become ``s_axis_*`` (``i``), ``m_axis_*`` (``o``) and ``w_axis_*``
    (``w``): ``tdata`` is the lanes' array (lane 0 in the least significant bits), ``tuser``
    the beat's ``first``, ``tlast`` its ``last``.  Nothing else happens here, so cycle
    counts and results are the core's.  The figures are those of ``plan``, an
    ``Int8Plan``; the core is built when the engine is elaborated (``core()`` gives a fresh
    one, for Amaranth designs).

    Parameters
    ----------
    spec, lanes, kernel, bias, input_zero_point, output_zero_point, multipliers, shifts,
    scales, act_min, act_max, rounding, weights, reuse, target
        As ``Int8Plan``'s.

    Members
    -------
    plan : Int8Plan
        Also the source of the attributes ``spec``, ``lanes``, ``rounding``, ``weights``,
        ``reuse``, ``target``, ``groups``, ``out_lanes``, ``formats`` (int8 at the ports),
        ``latency``, ``queue_depth``, ``multipliers``, ``real_multipliers``,
        ``line_buffer_words``, ``store``, ``load_words`` and ``load_width``.
    s_axis_tdata, s_axis_tvalid, s_axis_tuser, s_axis_tlast : In; s_axis_tready : Out
        P int8 lanes, lane 0 in the least significant bits.
    m_axis_tdata, m_axis_tvalid, m_axis_tuser, m_axis_tlast : Out; m_axis_tready : In
        P*M int8 lanes; lane q of the beat for channel group g is output channel
        g*P*M + q.
    w_axis_tdata, w_axis_tvalid, w_axis_tlast : In; w_axis_tready : Out
        Weight loads, with ``weights="port"`` only: ``load_values`` gives them.
    error : Out
        Sticky until reset: a malformed input frame or weight load was seen.
    """

    def __init__(self, spec, lanes, kernel, bias, **kwargs):
        self.plan = plan = Int8Plan(spec, lanes, kernel, bias, **kwargs)
        self._arguments, self._options = (spec, lanes, kernel, bias), kwargs
        for name in _FIGURES:
            setattr(self, name, getattr(plan, name))
        super().__init__(lanes * 8, plan.out_lanes * 8,
                         plan.load_width if plan.weights == "port" else None)

    @classmethod
    def from_layer(cls, layer, lanes=1, rounding="fp32", **kwargs):
        """From a ``golden.int8_ref.Int8Layer``: its float32 scales, or M0/shift for the
        double and single roundings (``int8_plan.layer_arguments``)."""
        (spec, kernel, bias), options = layer_arguments(layer, rounding)
        return cls(spec, lanes, kernel, bias, **options, **kwargs)

    def core(self):
        """A fresh ``Int8Core`` of this engine's plan (stream ports, for Amaranth designs)."""
        return Int8Core(self.plan)

    def load_values(self, weights):
        """The weight port's values of one load: ``Int8Plan.load_values``.  (The simulators'
        ``loads`` take them as ``{frame: (load_values(...), ())}``.)"""
        return self.plan.load_values(weights)

    def retargeted(self, target):
        """The same engine with its multipliers built for ``target``."""
        if target == self.target:
            return self
        return Int8Engine(*self._arguments, **dict(self._options, target=target))
