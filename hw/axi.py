"""The Verilog top of every engine: a stream core behind flat AXI4-Stream video ports."""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AxiStreamTop"]


class AxiStreamTop(wiring.Component):
    """A core's streams as ``s_axis_*`` (``i``), ``m_axis_*`` (``o``) and ``w_axis_*`` (``w``):
    ``tdata`` is the lanes' array (lane 0 in the least significant bits), ``tuser`` the beat's
    ``first``, ``tlast`` its ``last``.  Nothing else happens here, so cycle counts and results
    are the core's.  A subclass gives ``core()``, a fresh stream core, built only when the top
    is elaborated.

    Parameters
    ----------
    in_width, out_width : int
        Bits of an input and an output beat's ``tdata``.
    load_width : int or None
        Bits of a weight-port beat; None: no weight port.

    Members
    -------
    built_core : Component
        After elaboration, the core it holds (the formal invariants read its parts).
    """

    # A top holds its plan and port names only; an engine made for its figures alone (the
    # command line and sim/ retarget portable engines and ask them for DSP counts) leaves no
    # forgotten hardware behind, and is no unused elaboratable.
    _MustUse__silence = True

    def __init__(self, in_width, out_width, load_width=None):
        members = {
            "s_axis_tdata": In(in_width), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "s_axis_tuser": In(1), "s_axis_tlast": In(1),
            "m_axis_tdata": Out(out_width), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_axis_tuser": Out(1), "m_axis_tlast": Out(1),
            "error": Out(1),
        }
        if load_width is not None:
            members.update({"w_axis_tdata": In(load_width), "w_axis_tvalid": In(1),
                            "w_axis_tready": Out(1), "w_axis_tlast": In(1)})
        super().__init__(members)

    def core(self):
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.built_core = self.core()
        m.d.comb += [
            core.i.payload.data.eq(self.s_axis_tdata),
            core.i.payload.first.eq(self.s_axis_tuser),
            core.i.payload.last.eq(self.s_axis_tlast),
            core.i.valid.eq(self.s_axis_tvalid), self.s_axis_tready.eq(core.i.ready),
            self.m_axis_tdata.eq(core.o.payload.data),
            self.m_axis_tuser.eq(core.o.payload.first),
            self.m_axis_tlast.eq(core.o.payload.last),
            self.m_axis_tvalid.eq(core.o.valid), core.o.ready.eq(self.m_axis_tready),
            self.error.eq(core.error),
        ]
        if "w_axis_tdata" in self.signature.members:
            m.d.comb += [
                core.w.payload.value.eq(self.w_axis_tdata),
                core.w.payload.last.eq(self.w_axis_tlast),
                core.w.valid.eq(self.w_axis_tvalid), self.w_axis_tready.eq(core.w.ready),
            ]
        return m
