// Adapter: one LoRA adapter as a plain value (no LibTorch), and the check that
// it fits a loaded base model.
//
// A LoRA pair for one layer and one target is A [rank, in] and B [out, rank],
// row-major float32; the runtime adds scale * B (A x) to the output of the
// targeted linear map (Hu et al. 2021, "LoRA", eq. 3). The scale itself is
// computed by the runtime (runtime::LoraScale), in one place only.
//
// Thread safety: a value type; distinct objects need no synchronisation, and
// a const object may be read from many threads.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "attune/core/result.h"
#include "attune/core/status.h"

namespace attune::adapters {

// LoRA targets, in the order used everywhere (runtime indexes its per-layer
// arrays by these values: runtime/lora_target.h).
enum class LoraTarget : int { kQ = 0, kK, kV, kO, kGate, kUp, kDown };
inline constexpr int kNumLoraTargets = 7;

// "q", "k", "v", "o", "gate", "up", "down".
std::string_view LoraTargetName(LoraTarget target);
// InvalidArgument for an unknown name (the message lists the known ones).
Result<LoraTarget> ParseLoraTarget(std::string_view name);

// Width of one targeted linear map: y [out] = W [out, in] x [in].
struct TargetDims {
  int64_t in = 0;
  int64_t out = 0;
  bool operator==(const TargetDims&) const = default;
};

// What an adapter must match in the model it is applied to. The runtime fills
// it from the loaded Model.
struct BaseModelInfo {
  std::string fingerprint;  // Model::fingerprint(): SHA-256 hex of names + bytes
  std::string arch;         // "llama", "qwen2", "mistral", ...
  int64_t n_layers = 0;
  std::array<TargetDims, kNumLoraTargets> dims{};  // indexed by LoraTarget
};

// A row-major float32 matrix.
struct Matrix {
  std::vector<int64_t> shape;  // {rows, cols}; empty when absent
  std::vector<float> data;     // rows * cols values
  bool empty() const { return shape.empty(); }
  bool operator==(const Matrix&) const = default;
};

// The LoRA pair of one layer and one target. Both empty: not adapted.
struct LoraPair {
  Matrix a;  // [rank, in]
  Matrix b;  // [out, rank]
  bool empty() const { return a.empty() && b.empty(); }
  bool operator==(const LoraPair&) const = default;
};

// Limits checked by Validate() (and so by every reader).
inline constexpr int64_t kMaxRank = 4096;
inline constexpr int64_t kMaxLayers = 1024;
inline constexpr int64_t kMaxDim = 1 << 20;
inline constexpr size_t kMaxLineageEntries = 1 << 20;
inline constexpr size_t kMaxMapEntries = 4096;

// The requests an adapter answers (docs/adapters.md, "Scope"): a linear
// probe on the base model's hidden states, fitted when the adapter is
// trained. A request's last user message is embedded as the mean, over its
// tokens after the first, of the base model's hidden state after `layer`
// layers, x; the adapter answers when
// weight . ((x - mean) * scale) + bias > 0, and the base model otherwise.
// Empty (no weight): the adapter answers every request.
struct Scope {
  int64_t layer = 0;                       // in [1, n_layers]
  std::vector<float> mean, scale, weight;  // [hidden] each
  double bias = 0.0;
  // Fitting figures, for reports: the texts it was fitted on, in and out of
  // scope, and how many of them it puts on the wrong side.
  int64_t fitted_in = 0, fitted_out = 0, misplaced = 0;
  bool empty() const { return weight.empty(); }
  // weight . ((x - mean) * scale) + bias for features x [weight.size()].
  double Logit(const float* x) const;
  bool operator==(const Scope&) const = default;
};

struct Adapter {
  // --- the base model it was trained for
  std::string base_fingerprint;
  std::string arch;
  int64_t n_layers = 0;
  std::array<TargetDims, kNumLoraTargets> base_dims{};  // zero for targets not adapted

  // --- LoRA hyper-parameters
  int64_t rank = 0;
  double alpha = 0.0;
  bool rslora = false;              // scale alpha/sqrt(r) instead of alpha/r
  std::vector<LoraTarget> targets;  // distinct, in any order

  // layers[l][target]: n_layers entries. A target in `targets` may be absent
  // (both matrices empty) in some layers, like PEFT's layers_to_transform;
  // a target not in `targets` is absent everywhere.
  std::vector<std::array<LoraPair, kNumLoraTargets>> layers;

  // --- provenance
  std::map<std::string, std::string> training_config;
  std::map<std::string, double> metrics;  // see gate.h for the keys the gate reads
  std::vector<std::string> lineage;       // event ids or ranges "FIRST..LAST"
  std::string parent_version;             // full version id (64 hex), or empty
  int64_t created_unix_ms = 0;

  // --- the requests it answers (empty: all)
  Scope scope;

  bool HasTarget(LoraTarget t) const;

  // Checks internal consistency: ranges, distinct targets, every present
  // pair's shapes ([rank, in] and [out, rank] from base_dims), buffer sizes,
  // finite values, at least one pair. InvalidArgument naming the tensor
  // ("layer 3 target v matrix b") otherwise.
  Status Validate() const;

  // Checks that the adapter fits `base`: fingerprint, architecture, layer
  // count and the dims of every adapted target. FailedPrecondition naming the
  // first mismatch and a hint, e.g. "adapter was trained for base model
  // 1a2b3c4d5e6f (llama), this is 9f8e7d6c5b4a (llama) (hint: maybe wrong
  // base model?)".
  Status CheckCompatible(const BaseModelInfo& base) const;

  // Number of float parameters over all present pairs.
  size_t ParameterCount() const;

  bool operator==(const Adapter&) const = default;
};

// "layer 3 target v matrix b": how messages name one tensor.
std::string TensorName(int64_t layer, LoraTarget target, bool is_b);

}  // namespace attune::adapters
