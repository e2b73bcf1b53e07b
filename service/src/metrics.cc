#include "service/src/metrics.h"

#include <sstream>

namespace attune::service {

void Metrics::CountRequest(const std::string& route, int status) {
  std::lock_guard<std::mutex> l(mu_);
  requests_[{route, status}]++;
}

void Metrics::CountGeneration(int completion_tokens, double seconds) {
  std::lock_guard<std::mutex> l(mu_);
  tokens_ += completion_tokens;
  generation_seconds_ += seconds;
  if (seconds > 0) last_tokens_per_second_ = completion_tokens / seconds;
}

namespace {
void Head(std::ostringstream& o, const char* name, const char* type, const char* help) {
  o << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
}
}  // namespace

std::string Metrics::Render(const Gauges& g) const {
  std::ostringstream o;
  {
    std::lock_guard<std::mutex> l(mu_);
    Head(o, "attune_http_requests_total", "counter", "HTTP requests by route and status.");
    for (const auto& [k, n] : requests_) {
      o << "attune_http_requests_total{route=\"" << k.first << "\",code=\"" << k.second << "\"} " << n << "\n";
    }
    Head(o, "attune_generated_tokens_total", "counter", "Completion tokens generated.");
    o << "attune_generated_tokens_total " << tokens_ << "\n";
    Head(o, "attune_generation_seconds_total", "counter", "Time spent generating.");
    o << "attune_generation_seconds_total " << generation_seconds_ << "\n";
    Head(o, "attune_tokens_per_second", "gauge", "Decode speed of the last completed request.");
    o << "attune_tokens_per_second " << last_tokens_per_second_ << "\n";
  }
  Head(o, "attune_requests_in_flight", "gauge", "Generations running now.");
  o << "attune_requests_in_flight " << g.in_flight << "\n";
  Head(o, "attune_queue_depth", "gauge", "Requests waiting for a generation slot.");
  o << "attune_queue_depth " << g.queued << "\n";
  Head(o, "attune_training_active", "gauge", "1 while a training window runs.");
  o << "attune_training_active " << (g.training ? 1 : 0) << "\n";
  Head(o, "attune_training_step", "gauge", "Optimizer step of the current or last window.");
  o << "attune_training_step " << g.training_step << "\n";
  Head(o, "attune_training_steps_total", "counter", "Optimizer steps of finished windows.");
  o << "attune_training_steps_total " << training_steps_.load() << "\n";
  Head(o, "attune_training_windows_total", "counter", "Training windows run.");
  o << "attune_training_windows_total " << windows_.load() << "\n";
  Head(o, "attune_training_pauses_total", "counter", "Times training paused for requests.");
  o << "attune_training_pauses_total " << g.training_pauses << "\n";
  Head(o, "attune_promotions_total", "counter", "Adapter versions promoted.");
  o << "attune_promotions_total " << promotions_.load() << "\n";
  Head(o, "attune_rollbacks_total", "counter", "Rollbacks (manual and automatic).");
  o << "attune_rollbacks_total " << rollbacks_.load() << "\n";
  Head(o, "attune_prompt_cache_lookups_total", "counter", "Generations that looked for a cached prompt prefix.");
  o << "attune_prompt_cache_lookups_total " << g.prompt_cache_lookups << "\n";
  Head(o, "attune_prompt_cache_hits_total", "counter", "Generations that restored a cached prompt prefix.");
  o << "attune_prompt_cache_hits_total " << g.prompt_cache_hits << "\n";
  Head(o, "attune_prompt_cache_reused_tokens_total", "counter", "Prompt positions restored instead of computed.");
  o << "attune_prompt_cache_reused_tokens_total " << g.prompt_cache_reused_tokens << "\n";
  Head(o, "attune_prompt_cache_bytes", "gauge", "Keys and values the prompt cache holds.");
  o << "attune_prompt_cache_bytes " << g.prompt_cache_bytes << "\n";
  Head(o, "attune_active_adapter_info", "gauge", "The active adapter version (label).");
  o << "attune_active_adapter_info{version=\"" << g.active_label << "\"} 1\n";
  return o.str();
}

}  // namespace attune::service
