// Null-space constraint on LoRA A: the adapter may not read the directions
// in which the base model's inputs to a projection vary on general prompts.
//
// As AlphaEdit (Fang et al., ICLR 2025) constrains a weight edit to the null
// space of the keys it must preserve: for a projection W with input x, the
// adapter adds s·B·A·x; when A·u = 0 for every preserved direction u, the
// change vanishes on inputs inside their span, whatever B learns. The
// preserved directions are the top eigenvectors of Σ x xᵀ over the base
// model's inputs to that projection on general prompts, as many as hold
// `energy` of its trace. docs/trainer.md says what it did to learning.
//
// Thread safety: not thread-safe; one window owns one NullSpace.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <vector>

#include "attune/runtime/model.h"
#include "attune/trainer/lora_params.h"

namespace attune::trainer::internal {

class NullSpace {
 public:
  // The preserved directions of every targeted projection's input over
  // `sequences` (token ids, each run alone through the base model).
  // energy in (0, 1): the fraction of each input's second moment whose
  // directions A may not read.
  static NullSpace Measure(const runtime::Model& model, const std::array<bool, runtime::kNumLoraTargets>& targets,
                           const std::vector<std::vector<int64_t>>& sequences, double energy);

  // A ← A − (A U) Uᵀ for every adapted projection (U: its preserved
  // directions, orthonormal columns). Idempotent.
  void Apply(const LoraParams& params) const;

  // The preserved directions of (layer, target): [in, k], or undefined.
  const at::Tensor& directions(size_t layer, int target) const { return keep_[layer][size_t(target)]; }
  // Mean number of preserved directions over the adapted projections, and
  // their mean input size, for the report's notes.
  double mean_directions() const { return mean_k_; }
  double mean_inputs() const { return mean_in_; }
  // Bytes the directions hold (shared ones counted once).
  int64_t bytes() const { return bytes_; }

 private:
  std::vector<std::array<at::Tensor, runtime::kNumLoraTargets>> keep_;
  double mean_k_ = 0, mean_in_ = 0;
  int64_t bytes_ = 0;
};

}  // namespace attune::trainer::internal
