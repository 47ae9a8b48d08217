"""The numerics: fixed-point formats, layer specifications, and the golden models (float,
fixed point, separable blocks, TFLite int8)."""
