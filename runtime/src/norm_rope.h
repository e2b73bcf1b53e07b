// RMSNorm and rotate-half RoPE as one LibTorch op each, forward and
// backward: plain loops over rows split across LibTorch's intra-op threads,
// where the composite versions dispatched five to eight elementwise ops (and
// as many again for their gradients) over the whole activation.
#pragma once

#include <ATen/core/Tensor.h>

namespace attune::runtime {

// x * rsqrt(mean(x², last axis) + eps) * w (transformers' LlamaRMSNorm), fp32.
// Differentiable in x and w.
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& w, double eps);

// Rotate-half RoPE of x [B, T, H, D] (fp32, contiguous in its last three
// axes) with cos/sin [T, D/2]: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin),
// returned as [B, H, T, D], contiguous (the transpose to heads-first fused
// in). Differentiable in x.
at::Tensor Rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace attune::runtime
