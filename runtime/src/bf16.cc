#include "runtime/src/bf16.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstring>

#include "runtime/src/kernels/quant_dot.h"

namespace attune::runtime {
namespace {

// Elements per thread's share below which a conversion stays on one thread.
constexpr int64_t kGrain = int64_t(1) << 15;

[[gnu::always_inline]] inline void ToBf16Body(const float* src, int64_t n, uint16_t* dst, float scale) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] = c10::detail::round_to_nearest_even(src[i] * scale);
}

[[gnu::always_inline]] inline float Bf16ToFloat(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// dst = src * scale (+ add, when given), or dst += src * scale. One loop
// per case, so that each vectorizes.
[[gnu::always_inline]] inline void FromBf16Body(const uint16_t* src, int64_t n, float* dst, bool accumulate,
                                                float scale, const float* add) {
  if (accumulate) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) dst[i] += Bf16ToFloat(src[i]) * scale;
  } else if (add) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToFloat(src[i]) * scale + add[i];
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToFloat(src[i]) * scale;
  }
}

// The loops built for AVX-512, AVX2 and the baseline (the rest of this
// LibTorch code is built for the baseline), chosen as the quantized kernels
// are (kernels::ActiveIsa, ATTUNE_KERNELS). No fused multiply-add, so that
// every build rounds alike.
#define ATTUNE_CONVERSIONS(SUFFIX, ATTRS)                                                                \
  ATTRS void ToBf16##SUFFIX(const float* src, int64_t n, uint16_t* dst, float scale) {                 \
    ToBf16Body(src, n, dst, scale);                                                                     \
  }                                                                                                     \
  ATTRS void FromBf16##SUFFIX(const uint16_t* src, int64_t n, float* dst, bool accumulate, float scale, \
                              const float* add) {                                                       \
    FromBf16Body(src, n, dst, accumulate, scale, add);                                                  \
  }
ATTUNE_CONVERSIONS(Avx512, __attribute__((target("avx512f,avx512bw"), optimize("fp-contract=off"))))
ATTUNE_CONVERSIONS(Avx2, __attribute__((target("avx2"), optimize("fp-contract=off"))))
ATTUNE_CONVERSIONS(Scalar, __attribute__((optimize("fp-contract=off"))))
#undef ATTUNE_CONVERSIONS

void ToBf16Serial(const float* src, int64_t n, uint16_t* dst, float scale) {
  switch (kernels::ActiveIsa()) {
    case kernels::Isa::kAvx512: return ToBf16Avx512(src, n, dst, scale);
    case kernels::Isa::kAvx2: return ToBf16Avx2(src, n, dst, scale);
    default: return ToBf16Scalar(src, n, dst, scale);
  }
}

void FromBf16Serial(const uint16_t* src, int64_t n, float* dst, bool accumulate, float scale, const float* add) {
  switch (kernels::ActiveIsa()) {
    case kernels::Isa::kAvx512: return FromBf16Avx512(src, n, dst, accumulate, scale, add);
    case kernels::Isa::kAvx2: return FromBf16Avx2(src, n, dst, accumulate, scale, add);
    default: return FromBf16Scalar(src, n, dst, accumulate, scale, add);
  }
}

struct CastBf16Fn : public torch::autograd::Function<CastBf16Fn> {
  static at::Tensor forward(torch::autograd::AutogradContext*, const at::Tensor& t) { return Bf16Copy(t); }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*, torch::autograd::variable_list g) {
    return {Fp32Copy(g[0])};
  }
};

struct CastFp32Fn : public torch::autograd::Function<CastFp32Fn> {
  // mask: the address of a tensor, read only here (it is no input of the
  // graph; an undefined one could not be).
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& t, double scale, int64_t mask) {
    ctx->saved_data["scale"] = scale;
    return Fp32Copy(t, float(scale), *reinterpret_cast<const at::Tensor*>(mask));
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list g) {
    return {Bf16Copy(g[0], float(ctx->saved_data["scale"].toDouble())), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

void ToBf16(const float* src, int64_t n, uint16_t* dst, float scale) {
  at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) { ToBf16Serial(src + b, e - b, dst + b, scale); });
}

void FromBf16(const uint16_t* src, int64_t n, float* dst, bool accumulate, float scale) {
  at::parallel_for(0, n, kGrain,
                   [&](int64_t b, int64_t e) { FromBf16Serial(src + b, e - b, dst + b, accumulate, scale, nullptr); });
}

at::Tensor Bf16Copy(const at::Tensor& t, float scale) {
  const at::Tensor src = t.to(at::kFloat).contiguous();
  at::Tensor out = at::empty(src.sizes(), at::kBFloat16);
  ToBf16(src.data_ptr<float>(), src.numel(), Bf16Data(out), scale);
  return out;
}

at::Tensor Fp32Copy(const at::Tensor& t, float scale, const at::Tensor& mask) {
  if (t.scalar_type() != at::kBFloat16) {
    at::Tensor out = scale == 1.0f ? t.to(at::kFloat) : t.to(at::kFloat) * scale;
    return mask.defined() ? out + mask : out;
  }
  const at::Tensor src = t.contiguous();
  at::Tensor out = at::empty(src.sizes(), at::kFloat);
  if (!mask.defined()) {
    FromBf16(Bf16Data(src), src.numel(), out.data_ptr<float>(), /*accumulate=*/false, scale);
    return out;
  }
  // The mask [R, S] repeats over the leading axes: row i takes mask row i % R.
  const at::Tensor m = mask.to(at::kFloat).contiguous();
  const int64_t cols = src.size(-1), rows = src.numel() / cols, mask_rows = m.numel() / cols;
  const uint16_t* sd = Bf16Data(src);
  const float* md = m.data_ptr<float>();
  float* od = out.data_ptr<float>();
  at::parallel_for(0, rows, std::max<int64_t>(1, kGrain / cols), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      FromBf16Serial(sd + i * cols, cols, od + i * cols, false, scale, md + (i % mask_rows) * cols);
    }
  });
  return out;
}

at::Tensor CastBf16(const at::Tensor& t) {
  if (t.scalar_type() == at::kBFloat16) return t;
  return t.requires_grad() ? CastBf16Fn::apply(t) : Bf16Copy(t);
}

at::Tensor CastFp32(const at::Tensor& t, double scale, const at::Tensor& mask) {
  if (t.scalar_type() != at::kBFloat16) return Fp32Copy(t, float(scale), mask);
  if (t.requires_grad()) return CastFp32Fn::apply(t, scale, reinterpret_cast<int64_t>(&mask));
  return Fp32Copy(t, float(scale), mask);
}

}  // namespace attune::runtime
