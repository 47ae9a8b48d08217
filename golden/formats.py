"""The fixed-point formats of one layer's datapath, with documented defaults.

Five roles serve every layer (input, weight, bias, accum, output); a separable block adds
two: ``pointwise`` (its pointwise kernel) and ``mid`` (the value between the depthwise and
the pointwise stage).
"""

from dataclasses import dataclass

from .fixed import MAX_ACCUM_WIDTH, QFormat, accumulator_format

__all__ = ["LayerFormats", "DEFAULT_FORMATS", "SEPARABLE_ROLES"]

#: Defaults are hls4ml's (ap_fixed<16,6>), so a default hls4ml project gives the same numbers;
#: the accumulator defaults to exact (None).  For a separable block hls4ml gives its
#: pointwise weights and its depthwise result (our ``mid``) the same default, ap_fixed<16,6>.
DEFAULT_FORMATS = {
    "input": "fixed<16,6>",
    "weight": "fixed<16,6>",
    "bias": "fixed<16,6>",
    "accum": None,
    "output": "fixed<16,6>",
    "pointwise": "fixed<16,6>",
    "mid": "fixed<16,6>",
}
#: The roles only a separable block uses.
SEPARABLE_ROLES = ("pointwise", "mid")


@dataclass(frozen=True)
class LayerFormats:
    """Formats of the input, weight, bias, accumulator and output of the datapath.

    Members
    -------
    input, weight, bias, output : QFormat
    accum : QFormat or None
        None means exact: wide enough that no sum of products and bias ever overflows.
        In a separable block it applies to the pointwise sum.
    pointwise : QFormat
        A separable block's pointwise kernel (default ``DEFAULT_FORMATS["pointwise"]``).
    mid : QFormat
        A separable block's depthwise result, the pointwise stage's input.
    """

    input: QFormat
    weight: QFormat
    bias: QFormat
    accum: QFormat | None
    output: QFormat
    pointwise: QFormat = QFormat.parse(DEFAULT_FORMATS["pointwise"])
    mid: QFormat = QFormat.parse(DEFAULT_FORMATS["mid"])

    @classmethod
    def from_strings(cls, input=None, weight=None, bias=None, accum=None, output=None,
                     pointwise=None, mid=None):
        """Parse format strings; None takes the default."""
        given = {"input": input, "weight": weight, "bias": bias, "accum": accum,
                 "output": output, "pointwise": pointwise, "mid": mid}
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

    def exact_pointwise_accumulator(self, channels):
        """The exact accumulator of a pointwise sum over ``channels`` mid values."""
        return accumulator_format(self.mid, self.pointwise, self.bias, channels)

    def to_dict(self, separable=False):
        """Format strings by role; the separable roles only when ``separable``."""
        roles = {"input": str(self.input), "weight": str(self.weight), "bias": str(self.bias),
                 "accum": "exact" if self.accum is None else str(self.accum),
                 "output": str(self.output)}
        if separable:
            roles.update(pointwise=str(self.pointwise), mid=str(self.mid))
        return roles
