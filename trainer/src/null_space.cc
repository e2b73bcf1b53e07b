#include "null_space.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <functional>

namespace attune::trainer::internal {

using runtime::kNumLoraTargets;

namespace {

// Projections that read the same tensor share their statistics: q, k and v
// read the attention norm's output, gate and up the MLP norm's.
int InputOf(int target) {
  if (target == runtime::kK || target == runtime::kV) return runtime::kQ;
  if (target == runtime::kUp) return runtime::kGate;
  return target;
}

}  // namespace

NullSpace NullSpace::Measure(const runtime::Model& model, const std::array<bool, kNumLoraTargets>& targets,
                             const std::vector<std::vector<int64_t>>& sequences, double energy) {
  at::NoGradGuard ng;
  const size_t n_layers = model.layers().size();
  std::array<bool, kNumLoraTargets> wanted{};
  for (int t = 0; t < kNumLoraTargets; ++t) {
    if (targets[size_t(t)]) wanted[size_t(InputOf(t))] = true;
  }

  // Batches of similar lengths, padded on the right (runtime::PadInBatches).
  // The positions every sequence of a batch begins with (the chat
  // template's system turn) run once (runtime::SharedPrefix), their rows
  // counted once per sequence in the moments. `valid` (the rows that are not
  // padding) keeps the padding out of the moments; `scale` (undefined when
  // nothing is shared) is each valid row's square-rooted count.
  struct Batch {
    at::Tensor x, valid, scale;
    runtime::AttentionContext ctx;
    runtime::SharedPrefix shared;
  };
  std::vector<Batch> batches;
  for (const runtime::PaddedBatch& pb : runtime::PadInBatches(sequences, 16)) {
    Batch batch;
    const int64_t P = runtime::CommonPrefixLength(pb.tokens), T = pb.length;
    std::vector<int64_t> rows;
    std::vector<float> scale;
    if (P > 0) {
      batch.shared = runtime::MakeSharedPrefix(model, int64_t(pb.members.size()), P, T);
      batch.x = runtime::EmbedShared(model, pb.tokens, batch.shared);
      for (int64_t t = 0; t < P; ++t) {
        int64_t count = 0;  // the sequences this position is not padding of
        for (size_t m : pb.members) count += int64_t(sequences[m].size()) > t ? 1 : 0;
        if (count == 0) continue;
        rows.push_back(t);
        scale.push_back(std::sqrt(float(count)));
      }
      for (size_t b = 0; b < pb.members.size(); ++b) {
        for (int64_t t = P; t < int64_t(sequences[pb.members[b]].size()); ++t) {
          rows.push_back(P + int64_t(b) * (T - P) + (t - P));
          scale.push_back(1.f);
        }
      }
      batch.scale = at::tensor(scale).unsqueeze(1);
    } else {
      batch.x = runtime::EmbedTokens(model, pb.tokens);
      batch.ctx = runtime::MakeAttentionContext(model, 0, T);
      for (size_t b = 0; b < pb.members.size(); ++b) {
        for (size_t t = 0; t < sequences[pb.members[b]].size(); ++t) rows.push_back(int64_t(b) * T + int64_t(t));
      }
    }
    batch.valid = at::tensor(rows, at::kLong);
    batches.push_back(std::move(batch));
  }

  // A layer at a time over every batch, so that only one layer's moments
  // (Σ x xᵀ per input) are held: all layers' would be 400 MB for SmolLM2.
  NullSpace ns;
  ns.keep_.resize(n_layers);
  std::array<at::Tensor, kNumLoraTargets> moments;
  const Batch* current = nullptr;
  const std::function<void(size_t, int, const at::Tensor&)> observe = [&](size_t, int target, const at::Tensor& x) {
    if (!wanted[size_t(target)] || InputOf(target) != target) return;
    at::Tensor rows = x.reshape({-1, x.size(-1)}).index_select(0, current->valid).to(at::kFloat);
    if (current->scale.defined()) rows.mul_(current->scale);
    at::Tensor& m = moments[size_t(target)];
    if (m.defined()) m.addmm_(rows.t(), rows);
    else m = rows.t().mm(rows);
  };
  runtime::LoraWeights probe;
  probe.layers.resize(n_layers);
  probe.observe = &observe;
  double sum_k = 0, sum_in = 0;
  int64_t count = 0;
  for (size_t l = 0; l < n_layers; ++l) {
    for (auto& m : moments) m = at::Tensor();
    for (Batch& b : batches) {
      current = &b;
      b.x = b.scale.defined() ? runtime::LayerForwardShared(model, &probe, l, b.x, b.shared)
                              : runtime::LayerForward(model, &probe, l, b.x, b.ctx, nullptr);
    }
    std::array<at::Tensor, kNumLoraTargets> by_input;
    for (int t = 0; t < kNumLoraTargets; ++t) {
      if (!moments[size_t(t)].defined()) continue;
      // eigh: ascending eigenvalues; the preserved directions are the
      // largest ones holding `energy` of the trace.
      auto [values, vectors] = at::linalg_eigh(moments[size_t(t)]);
      at::Tensor desc = values.clamp_min(0).flip({0});
      at::Tensor cum = desc.cumsum(0);
      const double total = cum[-1].item<double>();
      int64_t k = 0;
      if (total > 0) k = (cum < energy * total).sum().item<int64_t>() + 1;
      k = std::min<int64_t>(k, desc.size(0));
      by_input[size_t(t)] = vectors.flip({1}).narrow(1, 0, k).contiguous();
    }
    for (const auto& u : by_input) {
      if (u.defined()) ns.bytes_ += u.numel() * int64_t(u.element_size());
    }
    for (int t = 0; t < kNumLoraTargets; ++t) {
      if (!targets[size_t(t)]) continue;
      ns.keep_[l][size_t(t)] = by_input[size_t(InputOf(t))];
      if (!ns.keep_[l][size_t(t)].defined()) continue;
      sum_k += double(ns.keep_[l][size_t(t)].size(1));
      sum_in += double(ns.keep_[l][size_t(t)].size(0));
      ++count;
    }
  }
  if (count > 0) ns.mean_k_ = sum_k / double(count), ns.mean_in_ = sum_in / double(count);
  return ns;
}

void NullSpace::Apply(const LoraParams& params) const {
  at::NoGradGuard ng;
  for (size_t l = 0; l < params.num_layers() && l < keep_.size(); ++l) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      const at::Tensor& u = keep_[l][size_t(t)];
      const at::Tensor& a = params.pair(l, t).a;
      if (!u.defined() || !a.defined() || u.size(1) == 0) continue;
      at::Tensor ad = a.detach();
      ad.sub_(ad.mm(u).mm(u.t()));
    }
  }
}

}  // namespace attune::trainer::internal
