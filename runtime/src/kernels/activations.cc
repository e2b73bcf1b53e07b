#include "runtime/src/kernels/activations.h"

#include <cmath>
#include <cstring>

#include "runtime/src/kernels/quant_blocks.h"
#include "runtime/src/kernels/quant_dot.h"

// Built with -fno-trapping-math (CMakeLists.txt): the clamp's selects only
// vectorize on AVX2 and the baseline without it.
namespace attune::runtime::kernels {
namespace {

// e^x in float: 2^n e^r with n = round(x log2 e), |r| <= ln 2 / 2, r = x -
// n ln 2 in two parts (Cody-Waite), e^r from Cephes' expf polynomial. n is
// rounded by adding 1.5 * 2^23 (branch-free, so the loops vectorize) and 2^n
// is built in the exponent bits. Within 2 ulp for |x| <= 87.3. Below, it
// is 0 (where e^x would be subnormal, and e^-inf); above
// 88.4 it is infinite (n = 128 makes 2^n infinity), so g / (1 + e^-g) is 0
// for g < -88.4, as in exact arithmetic. NaN stays NaN.
[[gnu::always_inline]] inline float Exp(float x_in) {
  float x = x_in < -87.3f ? -87.3f : x_in;
  x = x > 88.8f ? 88.8f : x;
  const float t = x * 1.44269504088896341f + 12582912.0f;
  const float n = t - 12582912.0f;
  uint32_t ti;
  std::memcpy(&ti, &t, sizeof(ti));
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const uint32_t bits = (ti - 0x4B400000u + 127u) << 23;  // unsigned: NaN's bits wrap harmlessly
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x_in < -87.3f ? 0.0f : p * scale;
}

[[gnu::always_inline]] inline void ForwardBody(const float* g, const float* u, int64_t n, float* y) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = g[i] / (1.0f + Exp(-g[i])) * u[i];
}

[[gnu::always_inline]] inline void BackwardBody(const float* g, const float* u, const float* dy, int64_t n, float* dg,
                                                float* du) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float s = 1.0f / (1.0f + Exp(-g[i]));
    const float gs = g[i] * s;
    dg[i] = dy[i] * u[i] * (s + gs * (1.0f - s));
    du[i] = dy[i] * gs;
  }
}

// The same from bf16 inputs (the kept products of a checkpointed pass).
[[gnu::always_inline]] inline void ForwardBf16Body(const uint16_t* gb, const uint16_t* ub, int64_t n, float* y) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float g = Bf16ToF32(gb[i]);
    y[i] = g / (1.0f + Exp(-g)) * Bf16ToF32(ub[i]);
  }
}

[[gnu::always_inline]] inline void BackwardBf16Body(const uint16_t* gb, const uint16_t* ub, const float* dy, int64_t n,
                                                    float* dg, float* du) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float g = Bf16ToF32(gb[i]), u = Bf16ToF32(ub[i]);
    const float s = 1.0f / (1.0f + Exp(-g));
    const float gs = g * s;
    dg[i] = dy[i] * u * (s + gs * (1.0f - s));
    du[i] = dy[i] * gs;
  }
}

// Sums over 16 lanes (element j into lane j % 16), then the lanes in order:
// the same bits whatever the vector width.
constexpr int kLanes = 16;
[[gnu::always_inline]] inline float SumLanes(const float* acc) {
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

// f(j, lane) for j in [0, n), lane = j % 16, in blocks of 16 (which
// vectorize whatever the vector width) and a tail.
template <typename F>
[[gnu::always_inline]] inline void ForLanes(int64_t n, F f) {
  int64_t j0 = 0;
  for (; j0 + kLanes <= n; j0 += kLanes) {
    for (int l = 0; l < kLanes; ++l) f(j0 + l, l);
  }
  for (int l = 0; j0 + l < n; ++l) f(j0 + l, l);
}

// The largest of x[0, n) (NaNs skipped), over the 16 lanes.
[[gnu::always_inline]] inline float MaxOf(const float* x, int64_t n) {
  float lane_max[kLanes];
  for (int l = 0; l < kLanes; ++l) lane_max[l] = -INFINITY;
  ForLanes(n, [&](int64_t j, int l) { lane_max[l] = x[j] > lane_max[l] ? x[j] : lane_max[l]; });
  float mx = -INFINITY;
  for (int l = 0; l < kLanes; ++l) mx = lane_max[l] > mx ? lane_max[l] : mx;
  return mx;
}

// Σ f(j) for j in [0, n), added in order (the order the logit rows' bits
// have always had), the terms computed 16 at a time (which vectorizes).
template <typename F>
[[gnu::always_inline]] inline float SumInOrder(int64_t n, F f) {
  float sum = 0.0f, t[kLanes];
  int64_t j0 = 0;
  for (; j0 + kLanes <= n; j0 += kLanes) {
    for (int l = 0; l < kLanes; ++l) t[l] = f(j0 + l);
    for (int l = 0; l < kLanes; ++l) sum += t[l];
  }
  for (; j0 < n; ++j0) sum += f(j0);
  return sum;
}

// log Σ e^x over a row: its maximum, then one pass of exponentials.
[[gnu::always_inline]] inline float LogSumExp(const float* x, int64_t n) {
  const float mx = MaxOf(x, n);
  return mx + std::log(SumInOrder(n, [&](int64_t j) { return Exp(x[j] - mx); }));
}

[[gnu::always_inline]] inline float LogSoftmaxAtBody(float* x, int64_t n, int64_t target, bool grad) {
  const float lse = LogSumExp(x, n);
  const float value = x[target] - lse;
  if (grad) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) x[j] = -Exp(x[j] - lse);
    x[target] += 1.0f;
  }
  return value;
}

[[gnu::always_inline]] inline float KlFromBaseBody(float* x, const float* b, int64_t n, bool grad) {
  const float lse = LogSumExp(x, n);
  if (grad) {
    return SumInOrder(n, [&](int64_t j) {
      const float pb = Exp(b[j]);
      const float term = pb * (b[j] - (x[j] - lse));
      x[j] = Exp(x[j] - lse) - pb;
      return term;
    });
  }
  return SumInOrder(n, [&](int64_t j) { return Exp(b[j]) * (b[j] - (x[j] - lse)); });
}

[[gnu::always_inline]] inline void AttentionSoftmaxBody(const uint16_t* s, int64_t valid, int64_t n, float scale,
                                                        float* p, uint16_t* pb) {
  for (int64_t j = 0; j < valid; ++j) p[j] = Bf16ToF32(s[j]) * scale;
  const float mx = MaxOf(p, valid);
  float acc[kLanes] = {};
  ForLanes(valid, [&](int64_t j, int l) {
    p[j] = Exp(p[j] - mx);
    acc[l] += p[j];
  });
  const float inv = 1.0f / SumLanes(acc);
  for (int64_t j = 0; j < valid; ++j) {
    p[j] *= inv;
    pb[j] = F32ToBf16(p[j]);
  }
  for (int64_t j = valid; j < n; ++j) pb[j] = 0;
}

[[gnu::always_inline]] inline void AttentionSoftmaxBackwardBody(const float* p, const uint16_t* dp, int64_t valid,
                                                                int64_t n, float scale, uint16_t* ds) {
  float acc[kLanes] = {};
  ForLanes(valid, [&](int64_t j, int l) { acc[l] += p[j] * Bf16ToF32(dp[j]); });
  const float dot = SumLanes(acc);
  for (int64_t j = 0; j < valid; ++j) ds[j] = F32ToBf16(p[j] * (Bf16ToF32(dp[j]) - dot) * scale);
  for (int64_t j = valid; j < n; ++j) ds[j] = 0;
}

#define ATTUNE_ACTIVATIONS(SUFFIX, ATTRS)                                                                             \
  ATTRS void AttentionSoftmax##SUFFIX(const uint16_t* s, int64_t valid, int64_t n, float scale, float* p,       \
                                      uint16_t* pb) {                                                           \
    AttentionSoftmaxBody(s, valid, n, scale, p, pb);                                                            \
  }                                                                                                             \
  ATTRS void AttentionSoftmaxBackward##SUFFIX(const float* p, const uint16_t* dp, int64_t valid, int64_t n,     \
                                              float scale, uint16_t* ds) {                                      \
    AttentionSoftmaxBackwardBody(p, dp, valid, n, scale, ds);                                                   \
  }                                                                                                             \
  ATTRS void Forward##SUFFIX(const float* g, const float* u, int64_t n, float* y) { ForwardBody(g, u, n, y); }  \
  ATTRS void Backward##SUFFIX(const float* g, const float* u, const float* dy, int64_t n, float* dg, float* du) { \
    BackwardBody(g, u, dy, n, dg, du);                                                                          \
  }                                                                                                             \
  ATTRS void ForwardBf16##SUFFIX(const uint16_t* g, const uint16_t* u, int64_t n, float* y) {                  \
    ForwardBf16Body(g, u, n, y);                                                                                \
  }                                                                                                             \
  ATTRS void BackwardBf16##SUFFIX(const uint16_t* g, const uint16_t* u, const float* dy, int64_t n, float* dg,  \
                                  float* du) {                                                                  \
    BackwardBf16Body(g, u, dy, n, dg, du);                                                                      \
  }                                                                                                             \
  ATTRS float LogSoftmaxAt##SUFFIX(float* x, int64_t n, int64_t target, bool grad) {                           \
    return LogSoftmaxAtBody(x, n, target, grad);                                                                \
  }                                                                                                             \
  ATTRS float KlFromBase##SUFFIX(float* x, const float* b, int64_t n, bool grad) {                             \
    return KlFromBaseBody(x, b, n, grad);                                                                       \
  }
#if defined(__x86_64__)
ATTUNE_ACTIVATIONS(Avx512, __attribute__((target("avx512f,avx512bw"), optimize("fp-contract=off"))))
ATTUNE_ACTIVATIONS(Avx2, __attribute__((target("avx2"), optimize("fp-contract=off"))))
#endif
ATTUNE_ACTIVATIONS(Scalar, __attribute__((optimize("fp-contract=off"))))
#undef ATTUNE_ACTIVATIONS

}  // namespace

void AttentionSoftmaxBf16(const uint16_t* s, int64_t valid, int64_t n, float scale, float* p32, uint16_t* pb) {
  switch (ActiveIsa()) {
#if defined(__x86_64__)
    case Isa::kAvx512: return AttentionSoftmaxAvx512(s, valid, n, scale, p32, pb);
    case Isa::kAvx2: return AttentionSoftmaxAvx2(s, valid, n, scale, p32, pb);
#endif
    default: return AttentionSoftmaxScalar(s, valid, n, scale, p32, pb);
  }
}

void AttentionSoftmaxBf16Backward(const float* p32, const uint16_t* dp, int64_t valid, int64_t n, float scale,
                                  uint16_t* ds) {
  switch (ActiveIsa()) {
#if defined(__x86_64__)
    case Isa::kAvx512: return AttentionSoftmaxBackwardAvx512(p32, dp, valid, n, scale, ds);
    case Isa::kAvx2: return AttentionSoftmaxBackwardAvx2(p32, dp, valid, n, scale, ds);
#endif
    default: return AttentionSoftmaxBackwardScalar(p32, dp, valid, n, scale, ds);
  }
}

void SwiGlu(const float* g, const float* u, int64_t n, float* y) {
  switch (ActiveIsa()) {
#if defined(__x86_64__)
    case Isa::kAvx512: return ForwardAvx512(g, u, n, y);
    case Isa::kAvx2: return ForwardAvx2(g, u, n, y);
#endif
    default: return ForwardScalar(g, u, n, y);
  }
}

void SwiGluBackward(const float* g, const float* u, const float* dy, int64_t n, float* dg, float* du) {
  switch (ActiveIsa()) {
#if defined(__x86_64__)
    case Isa::kAvx512: return BackwardAvx512(g, u, dy, n, dg, du);
    case Isa::kAvx2: return BackwardAvx2(g, u, dy, n, dg, du);
#endif
    default: return BackwardScalar(g, u, dy, n, dg, du);
  }
}

void SwiGluBf16(const uint16_t* g, const uint16_t* u, int64_t n, float* y) {
  switch (ActiveIsa()) {
#if defined(__x86_64__)
    case Isa::kAvx512: return ForwardBf16Avx512(g, u, n, y);
    case Isa::kAvx2: return ForwardBf16Avx2(g, u, n, y);
#endif
    default: return ForwardBf16Scalar(g, u, n, y);
  }
}

void SwiGluBf16Backward(const uint16_t* g, const uint16_t* u, const float* dy, int64_t n, float* dg, float* du) {
  switch (ActiveIsa()) {
#if defined(__x86_64__)
    case Isa::kAvx512: return BackwardBf16Avx512(g, u, dy, n, dg, du);
    case Isa::kAvx2: return BackwardBf16Avx2(g, u, dy, n, dg, du);
#endif
    default: return BackwardBf16Scalar(g, u, dy, n, dg, du);
  }
}

float LogSoftmaxAt(float* x, int64_t n, int64_t target, bool grad) {
  switch (ActiveIsa()) {
#if defined(__x86_64__)
    case Isa::kAvx512: return LogSoftmaxAtAvx512(x, n, target, grad);
    case Isa::kAvx2: return LogSoftmaxAtAvx2(x, n, target, grad);
#endif
    default: return LogSoftmaxAtScalar(x, n, target, grad);
  }
}

float KlFromBase(float* x, const float* b, int64_t n, bool grad) {
  switch (ActiveIsa()) {
#if defined(__x86_64__)
    case Isa::kAvx512: return KlFromBaseAvx512(x, b, n, grad);
    case Isa::kAvx2: return KlFromBaseAvx2(x, b, n, grad);
#endif
    default: return KlFromBaseScalar(x, b, n, grad);
  }
}

}  // namespace attune::runtime::kernels
