"""The five fixed-point formats of one layer's datapath, with documented defaults."""

from dataclasses import dataclass

from .fixed import MAX_ACCUM_WIDTH, QFormat, accumulator_format

__all__ = ["LayerFormats", "DEFAULT_FORMATS"]

#: Defaults are hls4ml's (ap_fixed<16,6>), so a default hls4ml project gives the same numbers;
#: the accumulator defaults to exact (None).
DEFAULT_FORMATS = {
    "input": "fixed<16,6>",
    "weight": "fixed<16,6>",
    "bias": "fixed<16,6>",
    "accum": None,
    "output": "fixed<16,6>",
}


@dataclass(frozen=True)
class LayerFormats:
    """Formats of the input, weight, bias, accumulator and output of the datapath.

    Members
    -------
    input, weight, bias, output : QFormat
    accum : QFormat or None
        None means exact: wide enough that no sum of products and bias ever overflows.
    """

    input: QFormat
    weight: QFormat
    bias: QFormat
    accum: QFormat | None
    output: QFormat

    @classmethod
    def from_strings(cls, input=None, weight=None, bias=None, accum=None, output=None):
        """Parse format strings; None takes the default."""
        given = {"input": input, "weight": weight, "bias": bias, "accum": accum,
                 "output": output}
        parsed = {}
        for role, text in given.items():
            text = DEFAULT_FORMATS[role] if text is None else text
            if text is None or (role == "accum" and str(text).lower() == "exact"):
                parsed[role] = None
            else:
                limit = MAX_ACCUM_WIDTH if role == "accum" else None
                parsed[role] = (QFormat.parse(text, max_width=limit) if limit
                                else QFormat.parse(text))
        return cls(**parsed)

    def exact_accumulator(self, taps):
        """The exact accumulator for ``taps`` products per output."""
        return accumulator_format(self.input, self.weight, self.bias, taps)

    def to_dict(self):
        return {"input": str(self.input), "weight": str(self.weight), "bias": str(self.bias),
                "accum": "exact" if self.accum is None else str(self.accum),
                "output": str(self.output)}
