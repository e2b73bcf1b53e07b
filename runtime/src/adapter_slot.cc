#include "attune/runtime/adapter_slot.h"

#include <ATen/ATen.h>

#include "attune/runtime/scope.h"

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
  RETURN_IF_ERROR(CheckAdapterFits(base, adapter, version));
  auto out = std::make_shared<ActiveAdapter>();
  out->version = std::move(version);
  out->scope = adapter.scope;
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
