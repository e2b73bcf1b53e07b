// Test utilities for the adapters tests: small deterministic adapters and scratch
// directories.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "attune/adapters/adapter.h"
#include "attune/adapters/gate.h"

namespace attune::adapters::testing {

inline BaseModelInfo TinyBase(const std::string& fingerprint = std::string(64, 'a')) {
  BaseModelInfo b;
  b.fingerprint = fingerprint;
  b.arch = "llama";
  b.n_layers = 2;
  b.dims[static_cast<int>(LoraTarget::kQ)] = {16, 16};
  b.dims[static_cast<int>(LoraTarget::kK)] = {16, 8};
  b.dims[static_cast<int>(LoraTarget::kV)] = {16, 8};
  b.dims[static_cast<int>(LoraTarget::kO)] = {16, 16};
  b.dims[static_cast<int>(LoraTarget::kGate)] = {16, 32};
  b.dims[static_cast<int>(LoraTarget::kUp)] = {16, 32};
  b.dims[static_cast<int>(LoraTarget::kDown)] = {32, 16};
  return b;
}

// A valid adapter over `base` with random (seeded) weights.
inline Adapter MakeAdapter(uint32_t seed, const BaseModelInfo& base = TinyBase(),
                           std::vector<LoraTarget> targets = {LoraTarget::kQ, LoraTarget::kV}, int64_t rank = 2) {
  Adapter a;
  a.base_fingerprint = base.fingerprint;
  a.arch = base.arch;
  a.n_layers = base.n_layers;
  a.rank = rank;
  a.alpha = 2.0 * rank;
  a.targets = targets;
  for (LoraTarget t : targets) a.base_dims[static_cast<int>(t)] = base.dims[static_cast<int>(t)];
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  a.layers.resize(static_cast<size_t>(base.n_layers));
  for (auto& layer : a.layers) {
    for (LoraTarget t : targets) {
      const TargetDims& d = base.dims[static_cast<int>(t)];
      LoraPair& p = layer[static_cast<int>(t)];
      p.a.shape = {rank, d.in};
      p.b.shape = {d.out, rank};
      p.a.data.resize(static_cast<size_t>(rank * d.in));
      p.b.data.resize(static_cast<size_t>(d.out * rank));
      for (float& x : p.a.data) x = dist(rng);
      for (float& x : p.b.data) x = dist(rng);
    }
  }
  a.training_config["steps"] = std::to_string(100 + seed);
  a.metrics["train.loss"] = 1.0 + seed * 0.01;
  a.lineage = {"e-" + std::to_string(seed), "e-100..e-199"};
  a.created_unix_ms = 1'700'000'000'000 + seed;
  return a;
}

// A gate report that passes the default gate, measured against `active`.
inline GateInput PassingInput(const std::string& active = "") {
  GateInput in;
  in.new_loss = 1.0;
  in.new_loss_parent = 2.0;
  in.replay_loss = 1.5;
  in.replay_loss_active = 1.5;
  in.forgetting_kl = 0.01;
  in.active_version = active;
  return in;
}

// A fresh directory under $TEST_TMPDIR or /tmp, removed when the object dies.
class ScratchDir {
 public:
  ScratchDir() {
    const char* base = getenv("TEST_TMPDIR");
    std::string tmpl = std::string(base ? base : "/tmp") + "/attune_adapters_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    path_ = mkdtemp(buf.data());
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace attune::adapters::testing
