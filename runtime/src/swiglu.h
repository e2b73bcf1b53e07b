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

}  // namespace attune::runtime
