#include "attune/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

namespace attune::runtime {

Sampler::Sampler(const SamplingOptions& options) : o_(options), rng_(options.seed) {}

int32_t Sampler::Sample(float* logits, int64_t vocab, const std::vector<int32_t>& history) {
  if (o_.repetition_penalty != 1.0f) {
    // Keskar et al. 2019 (CTRL), as transformers' RepetitionPenaltyLogitsProcessor.
    std::unordered_set<int32_t> seen(history.begin(), history.end());
    for (int32_t id : seen) {
      if (id < 0 || id >= vocab) continue;
      float& l = logits[id];
      l = l > 0 ? l / o_.repetition_penalty : l * o_.repetition_penalty;
    }
  }
  if (o_.temperature <= 0.0f) return int32_t(std::max_element(logits, logits + vocab) - logits);

  std::vector<int32_t> idx(static_cast<size_t>(vocab));
  std::iota(idx.begin(), idx.end(), 0);
  size_t keep = size_t(vocab);
  if (o_.top_k > 0 && o_.top_k < vocab) keep = size_t(o_.top_k);
  std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  idx.resize(keep);
  const float max_l = logits[idx[0]];
  std::vector<double> p(keep);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += p[i] = std::exp(double(logits[idx[i]] - max_l) / o_.temperature);
  if (o_.top_p < 1.0f) {
    double cum = 0;
    size_t n = 0;
    while (n < keep) {
      cum += p[n++] / sum;
      if (cum >= o_.top_p) break;
    }
    p.resize(n);
    idx.resize(n);
  }
  std::discrete_distribution<size_t> dist(p.begin(), p.end());
  return idx[dist(rng_)];
}

}  // namespace attune::runtime
