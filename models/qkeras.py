"""QKeras quantizers read from a model file, as fixed-point formats and quantized weights.

QKeras (qkeras-v3, for Keras 3) is never imported: its layers' configurations are plain
JSON in the model file.  A quantizer is saved as ``{"class_name": "quantized_bits",
"config": {"bits", "integer", "symmetric", "keep_negative", "alpha", ...}}`` (older files,
and layer activations, may hold the call as a string, ``"quantized_relu(4,0)"``).

What QKeras computes, and what it is here (checked bit for bit against qkeras-v3 1.2.1):

``quantized_bits(bits, integer, symmetric, keep_negative, alpha=1)``
    ``clip(round_half_even(x * 2**(bits-k-integer)), lo, hi)`` with k = keep_negative:
    ``fixed<bits, integer+1, RND_CONV, SAT>`` (``SAT_SYM`` when symmetric), or
    ``ufixed<bits, integer, RND_CONV, SAT>`` without keep_negative.
``quantized_relu(bits, integer)``
    relu, then ``ufixed<bits, integer, RND_CONV, SAT>``.
``quantized_bits(..., alpha="auto_po2")`` (what ``alpha=None`` becomes on a kernel)
    a power-of-two scale per slice, recomputed from the float tensor at every call by five
    rounds of least squares; the values are ``scale * 2**integer * z`` with integer
    ``|z| <= 2**(bits-1) - 1``.  The quantized kernel is computed here the same way, in
    float32 like QKeras, and the weight format is the narrowest that holds every value.

Every quantizer returns ``x + (xq - x)`` in float32 (its straight-through estimator); that
is reproduced too, so the rare values where float32 rounds it are rounded alike.  The
scale of auto_po2 needs ``log``: a slice whose scale lies within float32 rounding of a
power-of-two midpoint could round the other way than TensorFlow's ``log`` does.
"""

import ast
import math
from dataclasses import dataclass

import numpy as np

from ..golden.fixed import MAX_WIDTH, FormatError, QFormat, accumulator_format
from ..golden.spec import LayerError

__all__ = ["Quantizer", "parse_quantizer", "parse_activation", "quantize_tensor",
           "holding_format", "QUANTIZED_DEPTHWISE", "QACTIVATION", "qkeras_formats"]

QUANTIZED_DEPTHWISE = "QDepthwiseConv2D"
QACTIVATION = "QActivation"
#: keras.backend.epsilon(), which QKeras adds inside its auto_po2 scale search.
_EPSILON = np.float32(1e-7)
#: Parameters whose default is all the engine can reproduce.
_QUANTIZED_BITS_DEFAULTS = {"qnoise_factor": 1.0, "use_ste": True, "use_variables": False,
                            "post_training_scale": None, "elements_per_scale": None,
                            "min_po2_exponent": None, "max_po2_exponent": None}
_QUANTIZED_RELU_DEFAULTS = {"use_sigmoid": 0, "negative_slope": 0.0, "qnoise_factor": 1.0,
                            "use_ste": True, "use_variables": False}
_POSITIONAL = {"quantized_bits": ("bits", "integer", "symmetric", "keep_negative", "alpha"),
               "quantized_relu": ("bits", "integer", "use_sigmoid", "negative_slope")}


@dataclass(frozen=True)
class Quantizer:
    """A QKeras ``quantized_bits`` or ``quantized_relu`` as read from a model file.

    Members
    -------
    kind : "quantized_bits" or "quantized_relu"
    bits, integer : int
    symmetric, keep_negative : bool
        quantized_bits only (quantized_relu keeps no negative values).
    alpha : None, float or "auto_po2"
    """

    kind: str
    bits: int
    integer: int
    symmetric: bool = False
    keep_negative: bool = True
    alpha: object = None

    def __str__(self):
        if self.kind == "quantized_relu":
            return f"quantized_relu({self.bits},{self.integer})"
        alpha = f",alpha={self.alpha!r}" if self.alpha is not None else ""
        negative = "" if self.keep_negative else ",keep_negative=False"
        return f"quantized_bits({self.bits},{self.integer},{int(self.symmetric)}{negative}{alpha})"

    @property
    def is_relu(self):
        return self.kind == "quantized_relu"

    @property
    def is_po2(self):
        return self.alpha == "auto_po2"

    def fixed_format(self):
        """The ap_fixed-style format equal to this quantizer with a scale of 1.

        Raises LayerError when it has a run-time scale or no such format exists.
        """
        if self.is_po2 or self.alpha not in (None, 1):
            raise LayerError(f"{self} scales its input by a factor found at run time (alpha "
                             f"{self.alpha!r}), which no fixed-point format equals; use alpha=1 "
                             f"on activations")
        if self.is_relu or not self.keep_negative:
            text = f"ufixed<{self.bits},{self.integer},RND_CONV,SAT>"
        else:
            if self.bits < 2:
                raise LayerError(f"{self} is a 1-bit sign quantizer, which the engine does "
                                 f"not do; use at least 2 bits")
            overflow = "SAT_SYM" if self.symmetric else "SAT"
            text = f"fixed<{self.bits},{self.integer + 1},RND_CONV,{overflow}>"
        try:
            return QFormat.parse(text)
        except FormatError as error:
            raise LayerError(f"{self} is {text}, which the engine cannot hold ({error}); use "
                             f"0 <= integer < bits") from None


def _literal(node, where):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        if isinstance(node, ast.Name) and node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        raise LayerError(f"{where}: cannot read the quantizer argument "
                         f"{ast.unparse(node)!r}; save the model again") from None


def _from_call_text(text, where):
    """``"quantized_bits(8, 2, alpha=1)"`` to (class name, config dict)."""
    try:
        call = ast.parse(text.strip()[:1000], mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        call = None
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise LayerError(f"{where}: cannot read the quantizer {text!r}; use quantized_bits "
                         f"or quantized_relu")
    name = call.func.id
    positional = _POSITIONAL.get(name, ())
    if len(call.args) > len(positional):
        raise LayerError(f"{where}: cannot read the quantizer {text!r}; use quantized_bits "
                         f"or quantized_relu")
    config = {key: _literal(arg, where) for key, arg in zip(positional, call.args)}
    config.update((kw.arg, _literal(kw.value, where)) for kw in call.keywords)
    return name, config


def _check_defaults(name, config, defaults, where):
    for key, default in defaults.items():
        value = config.get(key, default)
        if value != default and not (value is None and default is None):
            raise LayerError(f"{where}: {name} with {key}={value!r} is not supported by the "
                             f"engine; keep {key}={default!r}")


def parse_quantizer(value, where):
    """A Quantizer from a serialized QKeras quantizer (dict or call text), or None.

    None, "linear" and "" mean no quantizer.  Raises LayerError for any other quantizer
    (po2, ternary, binary, ...) or option the engine cannot reproduce exactly.
    """
    if value is None or value in ("", "linear", "None"):
        return None
    if isinstance(value, dict):
        name = value.get("class_name")
        if isinstance(name, str):
            name = name.rpartition(">")[2]        # legacy .h5: "qkeras>quantized_bits"
        config = value.get("config")
        if isinstance(config, str) and config in ("linear", "relu"):
            raise LayerError(f"{where}: expected a quantizer, found the activation "
                             f"{config!r}")
        if not isinstance(name, str) or not isinstance(config, dict):
            raise LayerError(f"{where}: the quantizer {value!r} is malformed; save the "
                             f"model again")
    elif isinstance(value, str):
        name, config = _from_call_text(value, where)
    else:
        raise LayerError(f"{where}: the quantizer {value!r} is malformed; save the model again")
    if name not in _POSITIONAL:
        raise LayerError(f"{where}: QKeras quantizer {name} is not supported; use "
                         f"quantized_bits or quantized_relu")
    try:
        bits, integer = int(config.get("bits", 8)), int(config.get("integer", 0))
    except (TypeError, ValueError, OverflowError):
        raise LayerError(f"{where}: {name} has bits {config.get('bits')!r} and integer "
                         f"{config.get('integer')!r}; they must be whole numbers") from None
    if not 1 <= bits <= MAX_WIDTH or not -64 <= integer <= 64:
        raise LayerError(f"{where}: {name}({bits},{integer}) is outside what the engine holds; "
                         f"use 1 <= bits <= {MAX_WIDTH}")
    if name == "quantized_relu":
        _check_defaults(name, config, _QUANTIZED_RELU_DEFAULTS, where)
        bound = config.get("relu_upper_bound")
        if bound is not None and not config.get("is_quantized_clip", True):
            top = 2.0 ** integer * (1 - 2.0 ** -bits)
            if float(bound) < top:
                raise LayerError(f"{where}: quantized_relu with relu_upper_bound={bound} below "
                                 f"its largest value {top} is not supported; drop the bound")
        return Quantizer(name, bits, integer)
    _check_defaults(name, config, _QUANTIZED_BITS_DEFAULTS, where)
    alpha = config.get("alpha")
    if isinstance(alpha, str):
        if alpha != "auto_po2":
            raise LayerError(f"{where}: quantized_bits with alpha={alpha!r} uses a float "
                             f"scale, which fixed point cannot hold; use alpha=1 or "
                             f"'auto_po2'")
    elif alpha is not None:
        if isinstance(alpha, (list, dict)) or not _finite(alpha):
            raise LayerError(f"{where}: quantized_bits with alpha={alpha!r} is not supported; "
                             f"use alpha=1 or 'auto_po2'")
        alpha = float(alpha)
        if alpha <= 0 or math.frexp(alpha)[0] != 0.5:
            raise LayerError(f"{where}: quantized_bits with alpha={alpha!r} scales by a number "
                             f"that is not a power of two, which fixed point cannot hold "
                             f"exactly; use alpha=1 or 'auto_po2'")
        alpha = 1 if alpha == 1 else alpha
    symmetric = bool(config.get("symmetric", False)) or isinstance(alpha, str)
    return Quantizer(name, bits, integer, symmetric, bool(config.get("keep_negative", True)),
                     alpha)


def _finite(value):
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def parse_activation(value, where):
    """(activation name, output Quantizer or None) of a layer's ``activation`` entry.

    A plain activation ("linear", "relu", "relu6", None) has no quantizer; a QKeras
    quantizer gives its Quantizer, with "relu" for quantized_relu.
    """
    if value is None:
        return "linear", None
    if isinstance(value, str) and "(" not in value:
        return value, None
    if isinstance(value, dict) and value.get("class_name") in ("function", "Function") \
            and isinstance(value.get("config"), str):
        return value["config"], None      # Keras' serialized plain activation
    quantizer = parse_quantizer(value, where)
    if quantizer is None:
        return "linear", None
    return ("relu" if quantizer.is_relu else "linear"), quantizer


# ---------------------------------------------------------------------------------------------
# Weights: the float32 arithmetic of quantized_bits

def _scaling_axes(ndim):
    # QKeras' default (no scale_axis, which is not saved in the file anyway): every axis but
    # the last with channels_last, so one scale per depth-multiplier index of a kernel.
    return tuple(range(ndim - 1)) if ndim > 1 else (0,)


def _po2(scale):
    with np.errstate(divide="ignore"):
        exponent = np.round(np.log(scale + _EPSILON) / np.float32(np.log(2.0)))
    return np.power(np.float32(2.0), exponent.astype(np.float32)).astype(np.float32)


def _auto_po2(q, x):
    """quantized_bits with alpha auto_po2 on float32 ``x``: (values, scales)."""
    m_i = np.float32(2.0 ** q.integer)
    xs = x / m_i
    levels = np.float32((2 ** (q.bits - 1) - 1) * 2)       # auto_po2 is always symmetric
    axes = _scaling_axes(x.ndim)
    scale = (np.max(np.abs(xs), axis=axes, keepdims=True) * np.float32(2)) / levels
    scale = _po2(scale.astype(np.float32))

    def integers(scale):
        v = np.floor(np.abs(xs) / scale + np.float32(0.5))
        return np.sign(xs) * np.where(v < levels / 2, v, levels / 2)

    for _ in range(5):
        z = integers(scale)
        if x.ndim > 1:
            qx = np.mean(xs * z, axis=axes, keepdims=True, dtype=np.float32)
            qq = np.mean(z * z, axis=axes, keepdims=True, dtype=np.float32)
        else:
            qx, qq = xs * z, z * z       # QKeras takes one scale per element of a vector
        scale = _po2((qx / (qq + _EPSILON)).astype(np.float32))
    z = integers(scale)
    m = np.float32(2.0 ** (q.bits - int(q.keep_negative)))
    xq = (scale * m) * (m_i * z / m)
    return xq.astype(np.float32), scale


def _scaled(q, x):
    """quantized_bits with a fixed alpha (1 or another number) on float32 ``x``."""
    unsigned_bits = q.bits - int(q.keep_negative)
    if unsigned_bits <= 0:
        raise LayerError(f"{q} is a sign-only quantizer, which the engine does not do; use "
                         f"more bits")
    m = np.float32(2.0 ** unsigned_bits)
    m_i = np.float32(2.0 ** q.integer)
    p = x * m / m_i
    low = np.float32(-m + int(q.symmetric)) if q.keep_negative else np.float32(0)
    xq = m_i * np.clip(np.round(p), low, m - np.float32(1)) / m
    return (np.float32(1.0 if q.alpha is None else q.alpha) * xq).astype(np.float32)


def _relu(q, x):
    """quantized_relu on float32 ``x``: (the clipped relu, the quantized values)."""
    m = np.float32(2.0 ** q.bits)
    m_i = np.float32(2.0 ** q.integer)
    top = m_i - np.float32(2.0 ** (q.integer - q.bits))
    x_u = np.where(x <= top, np.maximum(x, np.float32(0)), top).astype(np.float32)
    xq = m_i * np.clip(np.round(x * m / m_i) / m, np.float32(0), np.float32(1) - 1 / m)
    return x_u, xq.astype(np.float32)


def quantize_tensor(quantizer, x):
    """What QKeras' quantizer returns for the float tensor ``x``, as float32.

    Values too large for float32 come out as NaN or Inf, as in QKeras.
    """
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(all="ignore"):
        if quantizer.is_relu:
            x, xq = _relu(quantizer, x)
        else:
            xq = _auto_po2(quantizer, x)[0] if quantizer.is_po2 else _scaled(quantizer, x)
        # the straight-through estimator's float32 arithmetic, rounding included
        return (x + (xq - x)).astype(np.float32)


def holding_format(values, signed, what):
    """The narrowest ``fixed``/``ufixed`` format that holds every value exactly.

    Raises LayerError (naming ``what``) when that takes more than MAX_WIDTH bits.
    """
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise LayerError(f"{what} holds NaN or Inf (QKeras' float32 arithmetic overflows on "
                         f"values this large); use smaller weights")
    nonzero = values[values != 0]
    frac = 0
    if nonzero.size:
        # frexp: value = mantissa * 2**exponent; float32 mantissas have 24 bits
        mantissa, exponent = np.frexp(nonzero)
        raw = np.ldexp(mantissa, 24).astype(np.int64)
        trailing = np.array([(int(r) & -int(r)).bit_length() - 1 for r in np.abs(raw)])
        frac = max(0, int(np.max(24 - exponent - trailing)))
    raw = np.round(values * 2.0 ** frac)
    if frac > 64 or not np.array_equal(raw * 2.0 ** -frac, values):
        raise LayerError(f"{what} needs more than 64 fraction bits; the engine cannot hold "
                         f"it exactly")
    high = int(np.max(raw, initial=0))
    low = int(np.min(raw, initial=0))
    if signed:
        width = max(high.bit_length() + 1, (-low - 1).bit_length() + 1, 2, frac)
    else:
        width = max(high.bit_length(), 1, frac)
    if width > MAX_WIDTH:
        raise LayerError(f"{what} needs a {width}-bit format to be held exactly (values from "
                         f"{values.min():g} to {values.max():g} on a grid of 2^-{frac}), more "
                         f"than the engine's {MAX_WIDTH}; use fewer bits or alpha=1")
    kind = "fixed" if signed else "ufixed"
    return QFormat.parse(f"{kind}<{width},{width - frac},RND_CONV,SAT>")


def _weight_format(quantizer, values, what):
    """The quantizer's own format when it holds the values, else the narrowest one."""
    if quantizer.alpha in (None, 1):
        try:
            nominal = quantizer.fixed_format()
        except LayerError:
            nominal = None
        if nominal is not None and not np.any(nominal.overflows(values)) and \
                np.array_equal(nominal.to_float(nominal.quantize(values)), values):
            return nominal
    return holding_format(values, bool(np.any(values < 0)) or quantizer.keep_negative, what)


def qkeras_formats(where, kernel, bias, use_bias, taps, depthwise_quantizer=None,
                   bias_quantizer=None, input_quantizer=None, output_quantizer=None):
    """(kernel, bias, formats dict) of a layer with QKeras quantizers around it.

    The kernel and bias come back quantized as QKeras quantizes them (float32, exact in
    the returned weight and bias formats); roles without a quantizer are left out of the
    dict, except the output: without an output quantizer the layer's float output is the
    exact sum, so the output format is the exact accumulator when the input is quantized
    and it fits.
    """
    formats = {}
    for what, array in (("kernel", kernel), ("bias", bias)):
        if array is not None and not np.all(np.isfinite(np.asarray(array, np.float64))):
            raise LayerError(f"{where}: its {what} holds NaN or Inf; save the model with "
                             f"finite weights")
    for role, quantizer in (("depthwise", depthwise_quantizer), ("bias", bias_quantizer)):
        if quantizer is not None and quantizer.is_relu:
            raise LayerError(f"{where}: its {role}_quantizer is {quantizer}, an activation "
                             f"quantizer; use quantized_bits for weights")
    if depthwise_quantizer is not None:
        kernel = quantize_tensor(depthwise_quantizer, kernel)
        formats["weight"] = str(_weight_format(
            depthwise_quantizer, kernel, f"{where}: the kernel quantized by "
                                         f"{depthwise_quantizer}"))
    if bias_quantizer is not None and use_bias:
        bias = quantize_tensor(bias_quantizer, bias)
        formats["bias"] = str(_weight_format(
            bias_quantizer, bias, f"{where}: the bias quantized by {bias_quantizer}"))
    if input_quantizer is not None:
        formats["input"] = str(input_quantizer.fixed_format())
    if output_quantizer is not None:
        formats["output"] = str(output_quantizer.fixed_format())
    elif "input" in formats and "weight" in formats and ("bias" in formats or not use_bias):
        bias_format = QFormat.parse(formats.get("bias", "fixed<2,1>"))
        exact = accumulator_format(QFormat.parse(formats["input"]),
                                   QFormat.parse(formats["weight"]), bias_format, taps)
        if exact.width <= MAX_WIDTH:
            formats["output"] = f"fixed<{exact.width},{exact.int_bits}>"
    return kernel, bias, formats
