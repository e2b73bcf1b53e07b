// Trainable LoRA tensors over the shared, frozen base model.
//
// For each layer and each targeted linear map W [out, in]: A [r, in] and
// B [out, r], initialised as PEFT does (A Kaiming-uniform with a = sqrt(5),
// i.e. U(-1/sqrt(in), 1/sqrt(in)); B zero), so a fresh adapter changes
// nothing. The forward pass adds scale * B(A x) (runtime::LoraScale).
// The base weights are never copied.
//
// Thread safety: not thread-safe; one trainer owns one LoraParams.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "attune/core/result.h"
#include "attune/runtime/model.h"
#include "attune/trainer/trainer_options.h"

namespace attune::trainer {

// LoraConfig lives in trainer_options.h.

// Parses "q,k,v,o,gate,up,down" (any subset, any order) into a target mask.
// InvalidArgument names an unknown target.
Result<std::array<bool, runtime::kNumLoraTargets>> ParseTargets(const std::string& list);
std::string TargetsToString(const std::array<bool, runtime::kNumLoraTargets>& targets);

class LoraParams {
 public:
  // Fresh PEFT-style initialisation, deterministic for `seed`.
  static LoraParams Init(const runtime::Model& model, const LoraConfig& config, uint64_t seed);

  const LoraConfig& config() const { return config_; }
  // The tensors that require grad, in a fixed order (layer, target, A then B).
  const std::vector<at::Tensor>& parameters() const { return params_; }
  // The view the forward pass takes. `training` enables dropout.
  runtime::LoraWeights Weights(bool training) const;
  // Overwrites every tensor with `values` (same order and shapes).
  // InvalidArgument on a mismatch; nothing changes then.
  Status Assign(const std::vector<at::Tensor>& values);
  // Detached copies of the current values.
  std::vector<at::Tensor> Snapshot() const;
  // "layers.3.q.a" style names, parallel to parameters().
  const std::vector<std::string>& names() const { return names_; }
  // The tensors of one layer's target (undefined when it is not adapted).
  const runtime::LoraWeights::Pair& pair(size_t layer, int target) const { return layers_[layer][size_t(target)]; }
  size_t num_layers() const { return layers_.size(); }

 private:
  LoraConfig config_;
  std::vector<std::array<runtime::LoraWeights::Pair, runtime::kNumLoraTargets>> layers_;
  std::vector<at::Tensor> params_;
  std::vector<std::string> names_;
};

}  // namespace attune::trainer
