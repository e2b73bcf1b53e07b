// A random LoRA adapter on every target of a base model, for runtime tests.
#pragma once

#include <random>

#include "attune/adapters/adapter.h"

namespace attune::testing {

// Rank `rank`, A and B drawn from N(0, stddev) with `seed`: large enough to
// change the tiny models' replies.
inline adapters::Adapter RandomAdapter(const adapters::BaseModelInfo& base, uint32_t seed, int64_t rank = 2,
                                       float stddev = 0.5f, double alpha = 4) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, stddev);
  adapters::Adapter a;
  a.base_fingerprint = base.fingerprint;
  a.arch = base.arch;
  a.n_layers = base.n_layers;
  a.rank = rank;
  a.alpha = alpha;
  a.layers.resize(size_t(a.n_layers));
  for (int t = 0; t < adapters::kNumLoraTargets; ++t) {
    const auto target = adapters::LoraTarget(t);
    const auto& d = base.dims[size_t(t)];
    a.targets.push_back(target);
    a.base_dims[size_t(t)] = d;
    for (auto& layer : a.layers) {
      layer[size_t(t)].a = adapters::Matrix{{a.rank, d.in}, std::vector<float>(size_t(a.rank * d.in))};
      layer[size_t(t)].b = adapters::Matrix{{d.out, a.rank}, std::vector<float>(size_t(d.out * a.rank))};
      for (float& v : layer[size_t(t)].a.data) v = n(rng);
      for (float& v : layer[size_t(t)].b.data) v = n(rng);
    }
  }
  return a;
}

}  // namespace attune::testing
