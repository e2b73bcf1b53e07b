// fp32 <-> bf16 conversions for the bf16 products (Bf16Products): plain
// loops over contiguous buffers, split across LibTorch's intra-op threads.
// The bf16 training step converts every product's operands and result, and
// LibTorch 1.13's own dtype-converting copy took a quarter of that step.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace attune::runtime {

// The elements of a bf16 tensor (contiguous where the caller needs it).
inline const uint16_t* Bf16Data(const at::Tensor& t) { return reinterpret_cast<const uint16_t*>(t.data_ptr()); }
inline uint16_t* Bf16Data(at::Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr()); }

// fp32 -> bf16 of src * scale, rounding to nearest even as LibTorch does;
// NaN stays NaN.
void ToBf16(const float* src, int64_t n, uint16_t* dst, float scale = 1.0f);
// bf16 -> fp32: dst = src * scale, or dst += src * scale with accumulate.
void FromBf16(const uint16_t* src, int64_t n, float* dst, bool accumulate = false, float scale = 1.0f);

// A bf16 copy of t * scale, and an fp32 copy of t * scale + mask (mask
// [R, S] added to every R rows of t's last axis S; undefined: none), both
// contiguous, no autograd.
at::Tensor Bf16Copy(const at::Tensor& t, float scale = 1.0f);
at::Tensor Fp32Copy(const at::Tensor& t, float scale = 1.0f, const at::Tensor& mask = {});

// Differentiable casts: t.to(kBFloat16), and t.to(kFloat) * scale + mask
// (a product's scale and the attention mask folded into its conversion),
// with the loops above, forward and backward. CastBf16 returns t itself
// when it is bf16 already; CastFp32 of a tensor that is not bf16 is plain
// LibTorch.
at::Tensor CastBf16(const at::Tensor& t);
at::Tensor CastFp32(const at::Tensor& t, double scale = 1.0, const at::Tensor& mask = {});

}  // namespace attune::runtime
