// Helpers shared by export tests: a base model shaped like the tiny test
// model and seeded random adapters for it.
#pragma once

#include <random>
#include <string>

#include "attune/adapters/adapter.h"
#include "attune/export/base_model.h"

namespace attune::export_::testing {

// tests/fixtures/models/tiny_llama: hidden 64, 4 heads, 2 KV heads of 16,
// intermediate 128, 2 layers.
inline BaseModel TinyBase(const std::string& fingerprint = std::string(64, 'a')) {
  BaseModel b;
  b.info.fingerprint = fingerprint;
  b.info.arch = "llama";
  b.info.n_layers = 2;
  b.info.dims = {{{64, 64}, {64, 32}, {64, 32}, {64, 64}, {64, 128}, {64, 128}, {128, 64}}};
  b.n_heads = 4;
  b.n_kv_heads = 2;
  b.name_or_path = "tiny_llama";
  return b;
}

inline adapters::Matrix RandomMatrix(int64_t rows, int64_t cols, std::mt19937& rng, float scale) {
  std::normal_distribution<float> n(0.0f, scale);
  adapters::Matrix m{{rows, cols}, std::vector<float>(size_t(rows * cols))};
  for (float& v : m.data) v = n(rng);
  return m;
}

// All seven targets in every layer (or only `targets`), both matrices random.
inline adapters::Adapter RandomAdapter(const BaseModel& base, int64_t rank, uint32_t seed,
                                       std::vector<adapters::LoraTarget> targets = {}) {
  if (targets.empty()) {
    for (int t = 0; t < adapters::kNumLoraTargets; ++t) targets.push_back(adapters::LoraTarget(t));
  }
  std::mt19937 rng(seed);
  adapters::Adapter a;
  a.base_fingerprint = base.info.fingerprint;
  a.arch = base.info.arch;
  a.n_layers = base.info.n_layers;
  a.rank = rank;
  a.alpha = 2.0 * double(rank);
  a.targets = targets;
  a.layers.resize(size_t(a.n_layers));
  for (auto t : targets) {
    const auto& d = base.info.dims[size_t(t)];
    a.base_dims[size_t(t)] = d;
    for (auto& layer : a.layers) {
      layer[size_t(t)].a = RandomMatrix(rank, d.in, rng, 0.2f);
      layer[size_t(t)].b = RandomMatrix(d.out, rank, rng, 0.2f);
    }
  }
  a.created_unix_ms = 1700000000000;
  return a;
}

}  // namespace attune::export_::testing
