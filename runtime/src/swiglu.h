// The SwiGLU product silu(gate) * up as one LibTorch op, forward and
// backward: one pass over the activations each way (kernels/activations.h),
// where LibTorch's silu and multiply took two passes forward and three
// backward, and kept silu(gate) for backward.
#pragma once

#include <ATen/core/Tensor.h>

namespace attune::runtime {

// silu(gate) * up for fp32 tensors of one shape; differentiable in both.
// Within a few ulp of at::silu(gate) * up (the exponential differs).
at::Tensor SwiGlu(const at::Tensor& gate, const at::Tensor& up);

// silu(gate) * up from bf16 gate and up, in fp32, without autograd (the
// checkpointed trainer's first pass, which keeps these two for the second).
at::Tensor SwiGluOfBf16(const at::Tensor& gate_bf16, const at::Tensor& up_bf16);

// The same value, differentiable in `gate` and `up`: graph nodes whose
// values gate_bf16 and up_bf16 hold (their own values are not read, and
// may be unspecified). Backward computes from the bf16 values.
at::Tensor SwiGluOfKept(const at::Tensor& gate, const at::Tensor& up, const at::Tensor& gate_bf16,
                        const at::Tensor& up_bf16);

}  // namespace attune::runtime
