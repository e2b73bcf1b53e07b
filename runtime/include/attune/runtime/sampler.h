// Token sampling from logits: greedy, temperature, top-k, top-p, repetition
// penalty, seeded. Torch-free; one Sampler per generation (not thread-safe).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace attune::runtime {

struct SamplingOptions {
  float temperature = 0.0f;         // 0: greedy. Default: 0
  int top_k = 0;                    // 0: off. Default: 0
  float top_p = 1.0f;               // 1: off. Default: 1
  float repetition_penalty = 1.0f;  // 1: off (CTRL paper's penalty). Default: 1
  uint64_t seed = 0;                // Default: 0
};

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options);
  // Picks the next token from `logits` (modified in place) given the tokens
  // so far (prompt and generated), which the repetition penalty looks at.
  int32_t Sample(float* logits, int64_t vocab, const std::vector<int32_t>& history);

 private:
  SamplingOptions o_;
  std::mt19937_64 rng_;
};

}  // namespace attune::runtime
