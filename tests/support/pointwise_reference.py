"""A raw-integer reference of the pointwise stage's datapath, written apart from the
hardware and from golden's separable model, for the stage's and the block's tests.

Per pixel and filter f: the exact sum of ``mid[k] * kernel[k, f]`` at the binary point of
the mid and pointwise formats' product, the bias shifted to the accumulator's binary point
``max(Fmid + Fpw, Fb)`` and added, then the accumulator format (if given), the activation,
the output format.  Sums use Python integers, so no width can overflow here.
"""

import numpy as np


def pointwise_reference(mid_raw, kernel_raw, bias_raw, *, mid, pointwise, bias, accum, output,
                        activation):
    """Raw output (..., F) of the output format for raw ``mid_raw`` (..., C*M)."""
    mid_raw = np.asarray(mid_raw, dtype=np.int64)
    kernel = np.asarray(kernel_raw, dtype=np.int64).astype(object)
    product_frac = mid.frac + pointwise.frac
    frac = max(product_frac, bias.frac)
    sums = mid_raw.astype(object) @ kernel          # exact: Python integers
    sums = sums * (1 << (frac - product_frac)) + np.asarray(
        [int(b) << (frac - bias.frac) for b in np.asarray(bias_raw)], dtype=object)
    sums = np.asarray(sums, dtype=np.int64)
    if accum is not None:
        sums = accum.convert(sums, frac)
        frac = accum.frac
    if activation == "relu":
        sums = np.maximum(sums, 0)
    elif activation == "relu6":
        sums = np.minimum(np.maximum(sums, 0), 6 << frac)
    return output.convert(sums, frac)
