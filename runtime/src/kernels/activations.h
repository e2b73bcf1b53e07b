// Activations over plain buffers: the SwiGLU product silu(g) * u and its
// gradient, for the lean decode pass and the training op
// (runtime/src/swiglu.h), and the log-probability reductions of the output
// head's rows for the training loss (attune/runtime/logit_rows.h). Built for
// AVX-512, AVX2 and the baseline, chosen as the quantized kernels are
// (ActiveIsa, ATTUNE_KERNELS). No fused multiply-add, so every build gives
// the same bits. The exponential is our own (activations.cc): within 2 ulp,
// not bit-equal to libm's or LibTorch's.
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

// The same two from bf16 g and u (bits as LibTorch's bfloat16), widened
// exactly: the values equal SwiGlu's on the widened inputs.
void SwiGluBf16(const uint16_t* g, const uint16_t* u, int64_t n, float* y);
void SwiGluBf16Backward(const uint16_t* g, const uint16_t* u, const float* dy, int64_t n, float* dg, float* du);

// log softmax(x)[target] over one row of n logits (log Σ e^x from the row's
// maximum). With grad, x becomes that value's derivative with respect to
// the logits: onehot(target) - softmax(x). REQUIRES: 0 <= target < n.
float LogSoftmaxAt(float* x, int64_t n, int64_t target, bool grad);

// KL(base || softmax(x)) = Σ e^b (b - log softmax(x)) for one row of n
// logits x and base log-probabilities b. With grad, x becomes its
// derivative with respect to the logits: softmax(x) - e^b.
float KlFromBase(float* x, const float* b, int64_t n, bool grad);

// One row of causal attention probabilities from its bf16 scores s (the
// scores product's output, as autocast rounds it): x_j = s_j · scale for
// j < valid, p = softmax(x) (the keys at and beyond `valid` are masked: 0).
// Writes p into p32 (valid floats) and, rounded to bf16 (nearest even),
// into pb (n entries, zeros from `valid`). Sums run over 16 fixed lanes,
// so every instruction set gives the same bits. REQUIRES: 1 <= valid <= n.
void AttentionSoftmaxBf16(const uint16_t* s, int64_t valid, int64_t n, float scale, float* p32, uint16_t* pb);

// That row's gradient with respect to its scores: given p32 from
// AttentionSoftmaxBf16 and dL/dp in bf16 (dp, n entries),
// ds_j = p_j (dp_j - Σ_k p_k dp_k) · scale, rounded to bf16 into ds (n
// entries, zeros from `valid`; ds may be dp).
void AttentionSoftmaxBf16Backward(const float* p32, const uint16_t* dp, int64_t valid, int64_t n, float scale,
                                  uint16_t* ds);

}  // namespace attune::runtime::kernels
