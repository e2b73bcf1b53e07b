// The AVX-512 kernels: the AVX2 algorithms with VNNI byte dot products
// (built with AVX-512 flags; chosen at run time).
#define ATTUNE_KERNELS_VNNI 1
#include "runtime/src/kernels/quant_dot_simd.inc"
