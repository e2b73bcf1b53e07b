// AdamW (Loshchilov & Hutter 2019) on the LoRA tensors only, computed
// exactly as torch.optim.AdamW (single-tensor, non-fused path):
//   p -= lr * wd * p
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// Its whole state (m, v, step) is exposed for checkpoints.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "attune/trainer/trainer_options.h"

namespace attune::trainer {

// AdamWOptions lives in trainer_options.h.

class AdamW {
 public:
  AdamW(std::vector<at::Tensor> params, const AdamWOptions& options);
  // One update from the params' .grad() (params without a grad are skipped).
  // `lr` overrides options.lr for this step (schedules).
  void Step(double lr);
  void ZeroGrad();
  int64_t step() const { return step_; }

  // State for checkpoints: exp_avg and exp_avg_sq per param, and the step.
  std::vector<at::Tensor>& exp_avg() { return m_; }
  std::vector<at::Tensor>& exp_avg_sq() { return v_; }
  void set_step(int64_t step) { step_ = step; }

 private:
  std::vector<at::Tensor> params_, m_, v_;
  AdamWOptions o_;
  int64_t step_ = 0;
};

}  // namespace attune::trainer
