#include "attune/adapters/health.h"

#include <cstdio>

namespace attune::adapters {
namespace {

std::string Pct(double rate) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %%", rate * 100);
  return buf;
}

std::string Name(const std::string& v) { return v.empty() ? "no adapter" : v.substr(0, 12); }

}  // namespace

HealthMonitor::HealthMonitor(HealthOptions options) : options_(options) {}

void HealthMonitor::SetActive(const std::string& active, const std::string& previous) {
  std::lock_guard<std::mutex> lock(mu_);
  active_ = active;
  previous_ = previous;
  judged_ = active.empty();  // nothing to watch without an adapter
  rollback_issued_ = false;
  window_.erase(active);
}

HealthVerdict HealthMonitor::RecordRating(const std::string& version, bool thumbs_down) {
  std::lock_guard<std::mutex> lock(mu_);
  Counts& c = counts_[version];
  c.rated++;
  c.down += thumbs_down ? 1 : 0;
  HealthVerdict v;
  if (judged_ || version != active_) return v;
  Counts& w = window_[version];
  w.rated++;
  w.down += thumbs_down ? 1 : 0;
  if (w.rated < options_.window) return v;
  judged_ = true;
  const Counts& base = counts_[previous_];
  const bool enough = base.rated >= options_.min_baseline_ratings;
  const double base_rate = enough ? static_cast<double>(base.down) / base.rated : options_.fallback_baseline_rate;
  const double rate = static_cast<double>(w.down) / w.rated;
  if (rate > base_rate + options_.max_down_rate_increase) {
    rollback_issued_ = true;
    v.rollback = true;
    v.version = version;
    v.cause = ActivationCause::kRollbackThumbsDown;
    v.reason = "thumbs-down rate " + Pct(rate) + " over " + std::to_string(w.rated) + " rated responses exceeds " +
               Name(previous_) + "'s " + Pct(base_rate) + (enough ? "" : " (fallback)") + " by more than " +
               Pct(options_.max_down_rate_increase);
  }
  return v;
}

HealthVerdict HealthMonitor::RecordNonFinite(const std::string& version) {
  std::lock_guard<std::mutex> lock(mu_);
  HealthVerdict v;
  if (version.empty() || version != active_ || rollback_issued_) return v;
  judged_ = true;
  rollback_issued_ = true;
  v.rollback = true;
  v.version = version;
  v.cause = ActivationCause::kRollbackNan;
  v.reason = "NaN or Inf logits with adapter " + Name(version);
  return v;
}

HealthMonitor::Counts HealthMonitor::CountsFor(const std::string& version) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counts_.find(version);
  return it == counts_.end() ? Counts{} : it->second;
}

Result<std::string> ApplyVerdict(Registry& registry, const HealthVerdict& verdict) {
  if (!verdict.rollback) return registry.Active();
  RollbackRequest req;
  req.cause = verdict.cause;
  req.note = verdict.reason;
  req.expected_active = verdict.version;
  return registry.Rollback(req);
}

}  // namespace attune::adapters
