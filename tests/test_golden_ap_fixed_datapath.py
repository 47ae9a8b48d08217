"""The whole fixed datapath against ap_fixed, on random format sets drawn like the fuzzer's.

Each case's datapath is a C++ template instance on hls4ml's ap_fixed headers: the input,
kernel and bias quantized from doubles to their ap_fixed types (each with its own Q/O),
products summed in an exact ap_fixed accumulator, the bias added, the sum converted once to
the given accumulator type (if any), relu/relu6 in that type, and the conversion to the
output type.  The convolution's geometry (stride, dilation, padding) is plain loops in the
same program.  Every raw output must equal ``fixed_forward_raw`` exactly.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings

from dwconv.golden.fixed_ref import fixed_forward_raw
from dwconv.campaigns.fuzz import fuzz_cases

from test_golden_fixed import AP_HEADER, _ap_types, run_oracle

CASES = 24

_PRELUDE = AP_HEADER + r"""
#include <vector>

// Reads the geometry, the float input (N, H, W, C), kernel (kh, kw, C, M) and bias (C*M);
// prints the raw output (N, oh, ow, C*M) in raster order.
template <class In, class Wt, class Bias, class Exact, class Acc, class Out, int OW, bool OS>
void layer(int activation) {
  int n, h, w, c, m, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow;
  if (scanf("%d %d %d %d %d %d %d %d %d %d %d %d %d %d %d", &n, &h, &w, &c, &m, &kh, &kw,
            &sh, &sw, &dh, &dw, &pt, &pl, &oh, &ow) != 15) return;
  std::vector<In> x(n * h * w * c);
  std::vector<Wt> k(kh * kw * c * m);
  std::vector<Bias> b(c * m);
  double v;
  for (auto &e : x) { if (scanf("%la", &v) != 1) return; e = v; }
  for (auto &e : k) { if (scanf("%la", &v) != 1) return; e = v; }
  for (auto &e : b) { if (scanf("%la", &v) != 1) return; e = v; }
  for (int f = 0; f < n; f++)
    for (int oy = 0; oy < oh; oy++)
      for (int ox = 0; ox < ow; ox++)
        for (int ch = 0; ch < c; ch++)
          for (int mm = 0; mm < m; mm++) {
            Exact sum = 0;
            for (int i = 0; i < kh; i++)
              for (int j = 0; j < kw; j++) {
                int y = oy * sh + i * dh - pt, xx = ox * sw + j * dw - pl;
                if (y < 0 || y >= h || xx < 0 || xx >= w) continue;   // padding: zero
                sum += x[((f * h + y) * w + xx) * c + ch] * k[((i * kw + j) * c + ch) * m + mm];
              }
            sum += b[ch * m + mm];
            Acc acc = sum;
            if (activation >= 1 && acc < 0) acc = 0;
            if (activation == 2 && acc > 6) acc = 6;
            Out out = acc;
            printf("%lld ", signed_raw<OW, OS>(out.bits_to_uint64()));
          }
  printf("\n");
}

int main() {
"""


def _type(fmt, *, default=None):
    fmt = fmt or default
    return (f"ap_fixed_base<{fmt.width}, {fmt.int_bits}, {'true' if fmt.signed else 'false'}, "
            f"AP_{fmt.rounding}, AP_{fmt.overflow}, 0>")


def _float_input(case, rng):
    """Input doubles on a quarter-LSB grid across 1.5 times the input range, so input
    quantization rounds ties, near-ties and overflows."""
    fmt = case.formats.input
    quarters = 4 * case.frames_raw + rng.integers(-2, 3, size=case.frames_raw.shape)
    quarters = np.where(rng.random(quarters.shape) < 0.1, quarters * 3 // 2, quarters)
    return quarters.astype(np.float64) * (fmt.lsb / 4)


def _stdin(case, x):
    spec = case.layer.spec
    (h, w, c), (kh, kw) = spec.input_shape, spec.kernel_size
    numbers = [len(x), h, w, c, spec.depth_multiplier, kh, kw, *spec.strides,
               *spec.dilation_rate, spec.pad_top, spec.pad_left,
               spec.out_height, spec.out_width]
    values = np.concatenate([x.ravel(), case.layer.kernel.astype(np.float64).ravel(),
                             case.layer.bias.astype(np.float64).ravel()])
    return " ".join(map(str, numbers)) + "\n" + " ".join(float(v).hex() for v in values)


def _draw_cases():
    """CASES draws spread over a longer run: hypothesis' later draws are often mutations of
    earlier ones, so every tenth is kept."""
    cases = []

    @seed(90210)
    @settings(max_examples=10 * CASES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(fuzz_cases(max_side=5))
    def collect(case):
        cases.append(case)

    collect()
    return cases[::10][:CASES]


@pytest.mark.hls4ml
def test_datapath_matches_ap_fixed(tmp_path):
    include = _ap_types()
    cases = _draw_cases()
    assert len(cases) >= 20
    rng = np.random.default_rng(3)
    calls, stdin, expected = [], [], []
    for case in cases:
        f, spec = case.formats, case.layer.spec
        exact = f.exact_accumulator(spec.taps)
        calls.append(f"  layer<{_type(f.input)}, {_type(f.weight)}, {_type(f.bias)}, "
                     f"{_type(exact)}, {_type(f.accum, default=exact)}, {_type(f.output)}, "
                     f"{f.output.width}, {'true' if f.output.signed else 'false'}>"
                     f"({('linear', 'relu', 'relu6').index(spec.activation)});")
        x = _float_input(case, rng)
        stdin.append(_stdin(case, x))
        expected.append(fixed_forward_raw(case.layer, f, f.input.quantize(x)).ravel())
    outputs = run_oracle(_PRELUDE, calls, stdin, tmp_path, include, optimize="-O1")
    modes, inner, values = set(), 0, 0
    for case, got, want in zip(cases, outputs, expected):
        np.testing.assert_array_equal(got, want, err_msg=case.describe())
        f = case.formats
        modes |= {(fmt.rounding, fmt.overflow) for fmt in (f.input, f.weight, f.bias, f.output)}
        inner += np.count_nonzero((want != 0) & (want != f.output.raw_min)
                                  & (want != f.output.raw_max))
        values += want.size
    # the draw really spread over the modes, and outputs are not mostly saturated or zero
    assert len(modes) >= 15
    assert inner >= values // 4
