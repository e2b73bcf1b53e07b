#include "attune/trainer/lora_params.h"

#include <ATen/ATen.h>

#include <cmath>
#include <sstream>

namespace attune::trainer {

using runtime::kNumLoraTargets;

Result<std::array<bool, kNumLoraTargets>> ParseTargets(const std::string& list) {
  std::array<bool, kNumLoraTargets> all;
  all.fill(true);
  const std::string choose = " (choose from " + TargetsToString(all) + ")";
  std::array<bool, kNumLoraTargets> out{};
  std::stringstream ss(list);
  std::string item;
  bool any = false;
  while (std::getline(ss, item, ',')) {
    auto t = adapters::ParseLoraTarget(item);
    if (!t.ok()) return InvalidArgumentError("unknown LoRA target '" + item + "'" + choose);
    out[size_t(*t)] = any = true;
  }
  if (!any) return InvalidArgumentError("no LoRA targets given" + choose);
  return out;
}

std::string TargetsToString(const std::array<bool, kNumLoraTargets>& targets) {
  std::string s;
  for (int t = 0; t < kNumLoraTargets; ++t) {
    if (!targets[size_t(t)]) continue;
    if (!s.empty()) s += ",";
    s += runtime::LoraTargetName(t);
  }
  return s;
}

LoraParams LoraParams::Init(const runtime::Model& model, const LoraConfig& config, uint64_t seed) {
  LoraParams p;
  p.config_ = config;
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const auto& layers = model.layers();
  p.layers_.resize(layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      if (!config.targets[size_t(t)]) continue;
      const auto& w = layers[l].proj[size_t(t)];
      const double bound = 1.0 / std::sqrt(double(w.in_features()));
      at::Tensor a = at::empty({config.rank, w.in_features()}, at::kFloat).uniform_(-bound, bound, gen);
      at::Tensor b = at::zeros({w.out_features(), config.rank}, at::kFloat);
      a.set_requires_grad(true);
      b.set_requires_grad(true);
      p.layers_[l][size_t(t)] = {a, b};
      std::string base = "layers." + std::to_string(l) + "." + runtime::LoraTargetName(t);
      p.params_.push_back(a);
      p.names_.push_back(base + ".a");
      p.params_.push_back(b);
      p.names_.push_back(base + ".b");
    }
  }
  return p;
}

runtime::LoraWeights LoraParams::Weights(bool training) const {
  runtime::LoraWeights w;
  w.scale = runtime::LoraScale(config_.alpha, config_.rank, config_.rslora);
  w.dropout = config_.dropout;
  w.training = training;
  w.layers = layers_;
  return w;
}

Status LoraParams::Assign(const std::vector<at::Tensor>& values) {
  if (values.size() != params_.size()) {
    return InvalidArgumentError("LoRA state has " + std::to_string(values.size()) + " tensors, this configuration has " +
                                std::to_string(params_.size()));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i].sizes() != params_[i].sizes()) return InvalidArgumentError("LoRA tensor '" + names_[i] + "' has the wrong shape");
  }
  at::NoGradGuard ng;
  for (size_t i = 0; i < values.size(); ++i) params_[i].copy_(values[i]);
  return Status::Ok();
}

std::vector<at::Tensor> LoraParams::Snapshot() const {
  std::vector<at::Tensor> out;
  for (const auto& p : params_) out.push_back(p.detach().clone());
  return out;
}

}  // namespace attune::trainer
