#include "runtime/src/bf16.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstring>

namespace attune::runtime {
namespace {

// Elements per thread's share below which a conversion stays on one thread.
constexpr int64_t kGrain = int64_t(1) << 15;

void ToBf16Serial(const float* src, int64_t n, uint16_t* dst) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, &src[i], sizeof(u));
    const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    dst[i] = nan ? uint16_t((u >> 16) | 0x40u) : uint16_t(rounded);
  }
}

void FromBf16Serial(const uint16_t* src, int64_t n, float* dst, bool accumulate, float scale) {
  if (accumulate) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t u = uint32_t(src[i]) << 16;
      float f;
      std::memcpy(&f, &u, sizeof(f));
      dst[i] += f * scale;
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t u = uint32_t(src[i]) << 16;
      float f;
      std::memcpy(&f, &u, sizeof(f));
      dst[i] = f * scale;
    }
  }
}

const uint16_t* Bf16Data(const at::Tensor& t) { return reinterpret_cast<const uint16_t*>(t.data_ptr()); }
uint16_t* Bf16Data(at::Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr()); }

struct CastBf16Fn : public torch::autograd::Function<CastBf16Fn> {
  static at::Tensor forward(torch::autograd::AutogradContext*, const at::Tensor& t) { return Bf16Copy(t); }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*, torch::autograd::variable_list g) {
    return {Fp32Copy(g[0])};
  }
};

struct CastFp32Fn : public torch::autograd::Function<CastFp32Fn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& t, double scale) {
    ctx->saved_data["scale"] = scale;
    return Fp32Copy(t, float(scale));
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list g) {
    const double scale = ctx->saved_data["scale"].toDouble();
    return {Bf16Copy(scale == 1.0 ? g[0] : g[0] * scale), at::Tensor()};
  }
};

}  // namespace

void ToBf16(const float* src, int64_t n, uint16_t* dst) {
  at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) { ToBf16Serial(src + b, e - b, dst + b); });
}

void FromBf16(const uint16_t* src, int64_t n, float* dst, bool accumulate, float scale) {
  at::parallel_for(0, n, kGrain,
                   [&](int64_t b, int64_t e) { FromBf16Serial(src + b, e - b, dst + b, accumulate, scale); });
}

at::Tensor Bf16Copy(const at::Tensor& t) {
  const at::Tensor src = t.to(at::kFloat).contiguous();
  at::Tensor out = at::empty(src.sizes(), at::kBFloat16);
  ToBf16(src.data_ptr<float>(), src.numel(), Bf16Data(out));
  return out;
}

at::Tensor Fp32Copy(const at::Tensor& t, float scale) {
  if (t.scalar_type() != at::kBFloat16) return scale == 1.0f ? t.to(at::kFloat) : t.to(at::kFloat) * scale;
  const at::Tensor src = t.contiguous();
  at::Tensor out = at::empty(src.sizes(), at::kFloat);
  FromBf16(Bf16Data(src), src.numel(), out.data_ptr<float>(), /*accumulate=*/false, scale);
  return out;
}

at::Tensor CastBf16(const at::Tensor& t) {
  if (t.scalar_type() == at::kBFloat16) return t;
  return t.requires_grad() ? CastBf16Fn::apply(t) : Bf16Copy(t);
}

at::Tensor CastFp32(const at::Tensor& t, double scale) {
  if (t.scalar_type() != at::kBFloat16) return scale == 1.0 ? t.to(at::kFloat) : t.to(at::kFloat) * scale;
  if (t.requires_grad()) return CastFp32Fn::apply(t, scale);
  return Fp32Copy(t, float(scale));
}

}  // namespace attune::runtime
