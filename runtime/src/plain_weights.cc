#include "attune/runtime/plain_weights.h"

#include <cmath>

namespace attune::runtime {

double LoraScale(double alpha, int64_t rank, bool rslora) {
  return rslora ? alpha / std::sqrt(double(rank)) : alpha / double(rank);
}

Status CheckScopeFits(const adapters::Scope& scope, int64_t hidden, int64_t n_layers) {
  if (scope.empty()) return Status::Ok();
  if (int64_t(scope.weight.size()) != hidden || scope.mean.size() != scope.weight.size() ||
      scope.scale.size() != scope.weight.size()) {
    return FailedPreconditionError("the scope is " + std::to_string(scope.weight.size()) +
                                   " wide, the model's hidden states " + std::to_string(hidden));
  }
  if (scope.layer < 1 || scope.layer > n_layers) {
    return FailedPreconditionError("the scope reads layer " + std::to_string(scope.layer) + ", the model has " +
                                   std::to_string(n_layers));
  }
  return Status::Ok();
}

void TruncateScopeIds(const ModelConfig& config, std::vector<int32_t>* ids) {
  const int64_t limit = config.context_length > 0 ? config.context_length : 2048;
  if (int64_t(ids->size()) > limit) ids->resize(size_t(limit));
}

Status CheckAdapterFits(const adapters::BaseModelInfo& base, const adapters::Adapter& adapter, const std::string& version) {
  RETURN_IF_ERROR(adapter.CheckCompatible(base));
  if (int64_t(adapter.layers.size()) != base.n_layers) {
    return FailedPreconditionError("adapter '" + version + "' has " + std::to_string(adapter.layers.size()) + " layers, the model " +
                                   std::to_string(base.n_layers));
  }
  for (size_t l = 0; l < adapter.layers.size(); ++l) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      const adapters::LoraPair& p = adapter.layers[l][size_t(t)];
      if (p.empty()) continue;
      const auto& d = base.dims[size_t(t)];
      const std::vector<int64_t> want_a = {adapter.rank, d.in}, want_b = {d.out, adapter.rank};
      if (p.a.shape != want_a || p.b.shape != want_b || int64_t(p.a.data.size()) != adapter.rank * d.in ||
          int64_t(p.b.data.size()) != d.out * adapter.rank) {
        return FailedPreconditionError("adapter '" + version + "': tensor " +
                                       adapters::TensorName(int64_t(l), static_cast<adapters::LoraTarget>(t), false) +
                                       " or its B has the wrong shape or size for this model");
      }
    }
  }
  // The scope reads the states the query projection takes in.
  return CheckScopeFits(adapter.scope, base.dims[kQ].in, base.n_layers).WithContext("adapter '" + version + "'");
}

PlainLora PlainLoraOf(const adapters::Adapter& adapter) {
  PlainLora out;
  out.scale = LoraScale(adapter.alpha, adapter.rank, adapter.rslora);
  out.layers.resize(adapter.layers.size());
  for (size_t l = 0; l < adapter.layers.size(); ++l) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      const adapters::LoraPair& p = adapter.layers[l][size_t(t)];
      if (p.empty()) continue;
      out.layers[l][size_t(t)] = {p.a.data.data(), p.b.data.data(), adapter.rank};
    }
  }
  return out;
}

}  // namespace attune::runtime
