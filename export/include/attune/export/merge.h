// Merging LoRA adapters of one base model (what `attune merge` and sync use
// to combine what several devices learned). With ΔWᵢ = sᵢ·Bᵢ·Aᵢ (sᵢ the
// adapter's scale, alpha/r or alpha/sqrt(r)) per layer and target:
//   kCat     exact: ΔW = Σ wᵢ·ΔWᵢ, as one adapter of rank Σ rᵢ
//            (A stacked, B side by side, alpha = rank so the scale is 1);
//   kLinear  PEFT's "linear" add_weighted_adapter (peft 0.21): with
//            cᵢ = wᵢ·sᵢ, A = Σ sign(cᵢ)·√|cᵢ|·Aᵢ, B = Σ √|cᵢ|·Bᵢ, scale 1
//            (same ranks and targets required; not ΔW-exact: cross terms);
//   kSvd     Σ wᵢ·ΔWᵢ truncated to rank R by SVD (Eckart–Young: the best
//            rank-R approximation in the Frobenius norm), B = U_R·S_R,
//            A = V_Rᵀ, alpha = R. Each pair's relative Frobenius error is
//            reported.
// The SVD runs on the factors (QR of the stacked B and Aᵀ, then an SVD of a
// small Σrᵢ x Σrᵢ matrix), never on a dense out x in matrix.
//
// Thread safety: free functions without shared state.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "attune/adapters/adapter.h"
#include "attune/core/result.h"

namespace attune::export_ {

enum class MergeMethod { kCat, kLinear, kSvd };
// "cat", "linear", "svd"; InvalidArgument for anything else.
Result<MergeMethod> ParseMergeMethod(const std::string& name);

struct MergeOptions {
  MergeMethod method = MergeMethod::kCat;  // Default: kCat
  // One weight per input. Default: empty, meaning 1/n each (the average).
  std::vector<double> weights;
  // Target rank for kSvd. Default: 0, meaning the largest input rank.
  int64_t rank = 0;
};

struct MergeInput {
  const adapters::Adapter* adapter = nullptr;  // not owned
  std::string version_id;                      // recorded as lineage; may be empty
};

struct MergeReport {
  // kSvd: relative Frobenius error ‖ΔW − BA‖/‖ΔW‖ per pair, keyed like
  // adapters::TensorName without the matrix ("layer 3 target v").
  std::map<std::string, double> relative_error;
  double max_relative_error = 0;
};

// Merges two or more adapters. InvalidArgument: fewer than two inputs, a
// weight count that differs from the input count, a rank out of range, or (kLinear) ranks or targets that differ.
// FailedPrecondition: inputs for different base models. The result is valid
// (Adapter::Validate), a candidate whose parent is the first input, with the
// union of the inputs' lineage and the merge recorded in training_config.
Result<adapters::Adapter> Merge(const std::vector<MergeInput>& inputs, const MergeOptions& options,
                                MergeReport* report = nullptr);

}  // namespace attune::export_
