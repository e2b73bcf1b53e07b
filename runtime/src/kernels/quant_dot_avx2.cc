// The AVX2 + FMA + F16C kernels (built with those flags; chosen at run time).
#include "runtime/src/kernels/quant_dot_simd.inc"
