"""golden/fixed.py: format parsing and printing, and every rounding and overflow mode checked
bit for bit against the ap_fixed C++ headers that hls4ml ships (compiled with g++)."""

import pathlib
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dwconv.golden.fixed import (FormatError, MAX_ACCUM_WIDTH, OVERFLOW_MODES, QFormat,
                                 ROUNDING_MODES, accumulator_format)


# ---------------------------------------------------------------------------------------------
# Parsing and printing

@pytest.mark.parametrize("text, expected", [
    ("fixed<16,6>", QFormat(True, 16, 6)),
    ("ap_fixed<8,3,AP_RND,AP_SAT>", QFormat(True, 8, 3, "RND", "SAT")),
    ("ufixed<8,0,RND_CONV>", QFormat(False, 8, 0, "RND_CONV")),
    (" fixed < 12 , 4 , trn_zero , sat_sym > ", QFormat(True, 12, 4, "TRN_ZERO", "SAT_SYM")),
    ("ap_ufixed<4,4,AP_TRN,AP_WRAP,0>", QFormat(False, 4, 4)),
])
def test_parse(text, expected):
    assert QFormat.parse(text) == expected


@pytest.mark.parametrize("q", ROUNDING_MODES)
@pytest.mark.parametrize("o", OVERFLOW_MODES)
@pytest.mark.parametrize("kind", ["fixed", "ufixed"])
def test_str_round_trip(kind, q, o):
    fmt = QFormat.parse(f"{kind}<10,3,{q},{o}>")
    assert QFormat.parse(str(fmt)) == fmt
    assert str(QFormat.parse(f"{kind}<10,3>")) == f"{kind}<10,3>"


@pytest.mark.parametrize("text", [
    "fixed<16>", "fixed<16,17>", "fixed<16,-1>", "fixed<0,0>", "fixed<1,1>", "fixed<33,3>",
    "fixed<8,3,RND_HALF>", "fixed<8,3,RND,CLAMP>", "float<8,3>", "", "fixed<8,3,,SAT>",
])
def test_parse_rejects(text):
    with pytest.raises(FormatError):
        QFormat.parse(text)


def test_parse_rejects_non_string():
    with pytest.raises(FormatError, match="string"):
        QFormat.parse(16)


def test_quantize_rejects_nan():
    with pytest.raises(FormatError, match="NaN"):
        QFormat.parse("fixed<8,3>").quantize([0.5, np.nan])


@given(st.integers(2, 20), st.data())
@settings(max_examples=40, deadline=None)
def test_accumulator_is_exact(width, data):
    """The exact accumulator holds the extreme sums, and not one bit less would do."""
    ix = QFormat(True, width, data.draw(st.integers(0, width)))
    wx = QFormat(data.draw(st.booleans()), data.draw(st.integers(2, 16)), 2)
    bias_width = data.draw(st.integers(2, 24))
    bx = QFormat(True, bias_width, data.draw(st.integers(0, min(8, bias_width))))
    taps = data.draw(st.integers(1, 49))
    acc = accumulator_format(ix, wx, bx, taps)
    pf = ix.frac + wx.frac
    assert acc.frac == max(pf, bx.frac)
    corners = [a * b for a in (ix.raw_min, ix.raw_max) for b in (wx.raw_min, wx.raw_max)]
    lo = (taps * min(corners) << (acc.frac - pf)) + (bx.raw_min << (acc.frac - bx.frac))
    hi = (taps * max(corners) << (acc.frac - pf)) + (bx.raw_max << (acc.frac - bx.frac))
    assert acc.raw_min <= lo and hi <= acc.raw_max
    assert acc.width <= MAX_ACCUM_WIDTH


# ---------------------------------------------------------------------------------------------
# ap_fixed oracle: one C++ program holds every conversion as a template instance; it reads
# raw source values (or doubles in hex notation, which scanf reads exactly) from stdin and
# prints the destination's raw bits, sign-extended.

def _ap_types():
    hls4ml = pytest.importorskip("hls4ml")
    path = pathlib.Path(hls4ml.__file__).parent / "templates" / "vivado" / "ap_types"
    if not (path / "ap_fixed.h").exists():
        pytest.skip("hls4ml ships no ap_types headers")
    if shutil.which("g++") is None:
        pytest.skip("g++ is needed for the ap_fixed oracle")
    return path


#: ap_fixed, stdio and ``signed_raw<W, S>(bits)``: a value's raw bits, sign-extended.
AP_HEADER = r"""
#include <ap_fixed.h>
#include <cstdio>

template <int W, bool S>
long long signed_raw(unsigned long long bits) {
  bits &= (W >= 64) ? ~0ULL : ((1ULL << W) - 1);
  if (S && W < 64 && ((bits >> (W - 1)) & 1)) bits |= ~0ULL << W;
  return (long long)bits;
}
"""

_PRELUDE = AP_HEADER + r"""

template <int SW, int SI, bool SS, int DW, int DI, bool DS, ap_q_mode Q, ap_o_mode O>
void convert() {
  int n; if (scanf("%d", &n) != 1) return;
  for (int i = 0; i < n; i++) {
    long long raw; if (scanf("%lld", &raw) != 1) return;
    ap_fixed_base<SW, SI, SS, AP_TRN, AP_WRAP, 0> src;
    src.setBits((unsigned long long)raw);
    ap_fixed_base<DW, DI, DS, Q, O, 0> dst = src;
    printf("%lld ", signed_raw<DW, DS>(dst.bits_to_uint64()));
  }
  printf("\n");
}

template <int DW, int DI, bool DS, ap_q_mode Q, ap_o_mode O>
void quantize() {
  int n; if (scanf("%d", &n) != 1) return;
  for (int i = 0; i < n; i++) {
    double x; if (scanf("%la", &x) != 1) return;
    ap_fixed_base<DW, DI, DS, Q, O, 0> dst = x;
    printf("%lld ", signed_raw<DW, DS>(dst.bits_to_uint64()));
  }
  printf("\n");
}

int main() {
"""


def _cxx_args(fmt):
    return (f"{fmt.width}, {fmt.int_bits}, {'true' if fmt.signed else 'false'}, "
            f"AP_{fmt.rounding}, AP_{fmt.overflow}")


def run_ap_fixed(cases, workdir):
    """Run conversions through ap_fixed.

    ``cases`` is a list of ``("convert", src QFormat, dst QFormat, raw ints)`` and
    ``("quantize", None, dst QFormat, floats)``; returns one int64 array per case.
    """
    include = _ap_types()
    calls, stdin = [], []
    for kind, src, dst, values in cases:
        if kind == "convert":
            calls.append(f"  convert<{src.width}, {src.int_bits}, "
                         f"{'true' if src.signed else 'false'}, {_cxx_args(dst)}>();")
            stdin.append(f"{len(values)} " + " ".join(str(int(v)) for v in values))
        else:
            calls.append(f"  quantize<{_cxx_args(dst)}>();")
            stdin.append(f"{len(values)} " + " ".join(float(v).hex() for v in values))
    return run_oracle(_PRELUDE, calls, stdin, workdir, include)


def run_oracle(prelude, calls, stdin, workdir, include, *, optimize="-O0"):
    """Compile ``prelude`` + a main() making ``calls`` against ap_fixed, feed it ``stdin``
    (one entry per call) and return each call's printed line as an int64 array."""
    workdir = pathlib.Path(workdir)
    (workdir / "oracle.cpp").write_text(prelude + "\n".join(calls) + "\n  return 0;\n}\n")
    subprocess.run(["g++", optimize, "-std=c++14", "-w", f"-I{include}", "oracle.cpp", "-o",
                    "oracle"], cwd=workdir, check=True, capture_output=True)
    result = subprocess.run([str(workdir / "oracle")], input="\n".join(stdin) + "\n",
                            capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert len(lines) == len(calls)
    return [np.array([int(v) for v in line.split()], dtype=np.int64) for line in lines]


def _all_raw(fmt):
    return np.arange(fmt.raw_min, fmt.raw_max + 1, dtype=np.int64)


# Sources cover every raw value of small formats, so each mode sees every round bit, sticky
# and sign combination; destinations drop 0, 1, 2 and 3 fractional bits, add some, lose
# integer bits (so overflow happens) and change signedness.
_SOURCES = ["fixed<8,4>", "ufixed<7,3>"]
_DESTS = ["fixed<5,3,{q},{o}>", "ufixed<4,2,{q},{o}>", "fixed<6,5,{q},{o}>",
          "fixed<12,6,{q},{o}>", "ufixed<6,3,{q},{o}>", "fixed<4,1,{q},{o}>"]


def _doubles():
    rng = np.random.default_rng(1)
    grid = np.arange(-80, 81) / 16.0            # ties, near ties at 4 fractional bits
    near = np.concatenate([grid + 2.0 ** -30, grid - 2.0 ** -30])
    wide = rng.normal(0, 40, 200)
    tiny = np.array([2.0 ** -40, -2.0 ** -40, 0.0, -0.0, 1e-300, -1e-300])
    huge = np.array([1e6, -1e6, 2.0 ** 40 + 0.5, -(2.0 ** 40) - 0.5, 1e18, -1e18,
                     2.0 ** 52 + 1, -(2.0 ** 52) - 1, 1e300, -1e300])
    return np.concatenate([grid, near, wide, tiny, huge])


@pytest.mark.hls4ml
@pytest.mark.parametrize("q", ROUNDING_MODES)
def test_modes_match_ap_fixed(q, tmp_path):
    """Every overflow mode with rounding mode ``q``: convert and quantize, bit for bit."""
    cases = []
    for o in OVERFLOW_MODES:
        for dst_text in _DESTS:
            dst = QFormat.parse(dst_text.format(q=q, o=o))
            for src_text in _SOURCES:
                src = QFormat.parse(src_text)
                cases.append(("convert", src, dst, _all_raw(src)))
            cases.append(("quantize", None, dst, _doubles()))
    # a wide accumulator-like source into a narrow output
    wide = QFormat(True, 44, 20, max_width=MAX_ACCUM_WIDTH)
    raws = np.random.default_rng(2).integers(-(1 << 43), 1 << 43, 400, dtype=np.int64)
    raws = np.concatenate([raws, raws >> 20, (raws >> 30) << 10, [wide.raw_min, wide.raw_max]])
    for o in OVERFLOW_MODES:
        cases.append(("convert", wide, QFormat.parse(f"fixed<16,6,{q},{o}>"), raws))
        cases.append(("convert", wide, QFormat.parse(f"fixed<16,6,{q},{o}>"), raws >> 17))
    # a wide integer source moved far to the left: the shifted value leaves int64
    integral = QFormat(True, 44, 44, max_width=MAX_ACCUM_WIDTH)
    for o in OVERFLOW_MODES:
        for dst in (f"fixed<32,0,{q},{o}>", f"ufixed<32,2,{q},{o}>", f"fixed<20,8,{q},{o}>"):
            cases.append(("convert", integral, QFormat.parse(dst),
                          np.concatenate([raws, raws >> 30, raws >> 40, [0, 1, -1]])))
    expected = run_ap_fixed(cases, tmp_path)
    failures = []
    for (kind, src, dst, values), want in zip(cases, expected):
        got = dst.convert(values, src.frac) if kind == "convert" else dst.quantize(values)
        bad = np.flatnonzero(got != want)
        if bad.size:
            i = bad[0]
            failures.append(f"{kind} {src} -> {dst}: {bad.size} differ, e.g. {values[i]!r} "
                            f"gives {got[i]}, ap_fixed {want[i]}")
    assert not failures, "\n".join(failures)
