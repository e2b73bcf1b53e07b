// Counters behind GET /metrics, rendered in the Prometheus text format
// (https://prometheus.io/docs/instrumenting/exposition_formats/). Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace attune::service {

struct Gauges {
  int in_flight = 0, queued = 0;
  bool training = false;
  int64_t training_step = 0;
  uint64_t training_pauses = 0;
  std::string active_label;
  uint64_t prompt_cache_lookups = 0, prompt_cache_hits = 0, prompt_cache_reused_tokens = 0, prompt_cache_bytes = 0;
};

class Metrics {
 public:
  void CountRequest(const std::string& route, int status);
  void CountGeneration(int completion_tokens, double seconds);
  void CountPromotion() { promotions_++; }
  void CountRollback() { rollbacks_++; }
  void CountTrainingSteps(int64_t steps) { training_steps_ += steps; }
  void CountWindow() { windows_++; }
  std::string Render(const Gauges& g) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  uint64_t tokens_ = 0;
  double generation_seconds_ = 0;
  double last_tokens_per_second_ = 0;
  std::atomic<uint64_t> promotions_{0}, rollbacks_{0}, windows_{0};
  std::atomic<int64_t> training_steps_{0};
};

}  // namespace attune::service
