#include "attune/runtime/adapter_slot.h"

#include <ATen/ATen.h>

namespace attune::runtime {

adapters::BaseModelInfo BaseInfo(const Model& model) {
  adapters::BaseModelInfo info;
  info.fingerprint = model.fingerprint();
  info.arch = model.config().arch_name;
  info.n_layers = model.config().n_layers;
  const auto& L = model.layers().at(0);
  for (int t = 0; t < kNumLoraTargets; ++t) {
    info.dims[size_t(t)] = {L.proj[size_t(t)].in_features(), L.proj[size_t(t)].out_features()};
  }
  return info;
}

Result<std::shared_ptr<const ActiveAdapter>> MakeActiveAdapter(const Model& model, const adapters::Adapter& adapter,
                                                               std::string version) {
  const adapters::BaseModelInfo base = BaseInfo(model);
  RETURN_IF_ERROR(adapter.CheckCompatible(base));
  if (int64_t(adapter.layers.size()) != base.n_layers) {
    return FailedPreconditionError("adapter '" + version + "' has " + std::to_string(adapter.layers.size()) + " layers, the model " +
                                   std::to_string(base.n_layers));
  }
  // Shapes and buffer sizes, so that no tensor view can read past a buffer.
  // (Values are not checked: a NaN must reach the health watch, not hide here.)
  for (size_t l = 0; l < adapter.layers.size(); ++l) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      const adapters::LoraPair& p = adapter.layers[l][size_t(t)];
      if (p.empty()) continue;
      const auto& d = base.dims[size_t(t)];
      const std::vector<int64_t> want_a = {adapter.rank, d.in}, want_b = {d.out, adapter.rank};
      if (p.a.shape != want_a || p.b.shape != want_b || int64_t(p.a.data.size()) != adapter.rank * d.in ||
          int64_t(p.b.data.size()) != d.out * adapter.rank) {
        return FailedPreconditionError("adapter '" + version + "': tensor " + adapters::TensorName(int64_t(l), static_cast<adapters::LoraTarget>(t), false) +
                                       " or its B has the wrong shape or size for this model");
      }
    }
  }
  auto out = std::make_shared<ActiveAdapter>();
  out->version = std::move(version);
  out->weights.scale = LoraScale(adapter.alpha, adapter.rank, adapter.rslora);
  out->weights.layers.resize(adapter.layers.size());
  for (size_t l = 0; l < adapter.layers.size(); ++l) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      const adapters::LoraPair& p = adapter.layers[l][size_t(t)];
      if (p.empty()) continue;
      // clone(): the snapshot owns its memory, independent of `adapter`.
      out->weights.layers[l][size_t(t)].a = at::from_blob(const_cast<float*>(p.a.data.data()), p.a.shape, at::kFloat).clone();
      out->weights.layers[l][size_t(t)].b = at::from_blob(const_cast<float*>(p.b.data.data()), p.b.shape, at::kFloat).clone();
    }
  }
  return std::shared_ptr<const ActiveAdapter>(std::move(out));
}

}  // namespace attune::runtime
