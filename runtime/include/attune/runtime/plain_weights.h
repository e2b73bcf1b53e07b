// The model's weights, a LoRA adapter's and a KV cache as plain pointers:
// what the lean forward pass (decode and the LibTorch-free prefill) reads.
// Both the LibTorch Model and the LibTorch-free LeanModel (lean_model.h)
// hand out these views of what they own; the views never own anything.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "attune/adapters/adapter.h"
#include "attune/core/result.h"
#include "attune/runtime/lora_target.h"
#include "attune/runtime/model_config.h"
#include "attune/runtime/quant_matrix.h"

namespace attune::runtime {

struct PlainLayer {
  const float* attn_norm = nullptr;  // [hidden]
  const float* ffn_norm = nullptr;   // [hidden]
  std::array<const QuantMatrix*, kNumLoraTargets> proj{};  // indexed by LoraTarget
  const float *q_bias = nullptr, *k_bias = nullptr, *v_bias = nullptr;  // null unless qkv_bias
};

struct PlainWeights {
  ModelConfig config;
  const QuantMatrix* embed = nullptr;   // [vocab, hidden]
  const QuantMatrix* output = nullptr;  // [vocab, hidden]
  const float* out_norm = nullptr;      // [hidden]
  std::vector<PlainLayer> layers;
  const float *rope_cos = nullptr, *rope_sin = nullptr;  // [context, head_dim / 2]
};

// An unmerged LoRA adapter: y += scale · B (A x) per adapted projection.
struct PlainLora {
  struct Pair {
    const float* a = nullptr;  // [rank, in], row-major
    const float* b = nullptr;  // [out, rank], row-major
    int64_t rank = 0;
  };
  double scale = 1.0;
  std::vector<std::array<Pair, kNumLoraTargets>> layers;  // a == nullptr: not adapted
};

// Keys and values of one sequence: per layer [n_kv_heads, capacity, head_dim].
struct PlainCache {
  std::vector<float*> k, v;
  int64_t length = 0, capacity = 0;
};

// The one place the LoRA scale is computed: alpha / r, or alpha / sqrt(r)
// with rsLoRA (Kalajdzievski 2023).
double LoraScale(double alpha, int64_t rank, bool rslora);

// FailedPrecondition naming what differs when `scope` cannot be read from a
// model of `hidden`-wide hidden states and `n_layers` layers; Ok for an
// empty scope.
Status CheckScopeFits(const adapters::Scope& scope, int64_t hidden, int64_t n_layers);

// Cuts a text's ids to what a scope reads: the model's context (2048 when
// the model does not say).
void TruncateScopeIds(const ModelConfig& config, std::vector<int32_t>* ids);

// Checks that `adapter` fits the model `base` describes (fingerprint,
// architecture, layers, every present pair's shapes and buffer sizes, and
// its scope's width and layer), so that no view of it can read past a
// buffer. FailedPrecondition naming the tensor. Values are not checked: a
// NaN must reach the health watch.
Status CheckAdapterFits(const adapters::BaseModelInfo& base, const adapters::Adapter& adapter, const std::string& version);

// A view of `adapter`'s buffers. REQUIRES: CheckAdapterFits passed.
PlainLora PlainLoraOf(const adapters::Adapter& adapter);

}  // namespace attune::runtime
