// The SwiGLU product silu(g) * u and its gradient over plain buffers, for
// the lean decode pass and the training op (runtime/src/swiglu.h). Built for
// AVX-512, AVX2 and the baseline, chosen as the quantized kernels are
// (ActiveIsa, ATTUNE_KERNELS). No fused multiply-add, so every build gives
// the same bits. The exponential is our own (below): within a few ulp of
// silu in float, not bit-equal to libm's or LibTorch's.
//
// Thread safety: reentrant.
#pragma once

#include <cstdint>

namespace attune::runtime::kernels {

// y = g / (1 + e^-g) * u over n elements (y may alias g or u).
void SwiGlu(const float* g, const float* u, int64_t n, float* y);

// The gradients of y = silu(g) * u given dy: with s = sigmoid(g),
// dg = dy u s (1 + g (1 - s)), du = dy g s.
void SwiGluBackward(const float* g, const float* u, const float* dy, int64_t n, float* dg, float* du);

}  // namespace attune::runtime::kernels
