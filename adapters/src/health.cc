#include "attune/adapters/health.h"

#include <cstdio>
#include <sstream>

#include "attune/core/file.h"

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
  if (!active.empty() && active == active_ && previous == previous_) return;  // the same activation, seen again
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

// Text, one record per line; "-" stands for "" (no adapter):
//   attune-health 1
//   watch <active> <previous> <judged 0|1> <rollback_issued 0|1>
//   count <version> <rated> <down>      (every version's ratings)
//   window <version> <rated> <down>     (ratings since SetActive)
Status HealthMonitor::Save(const std::string& path) const {
  auto v = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
  std::ostringstream out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    out << "attune-health 1\n";
    out << "watch " << v(active_) << ' ' << v(previous_) << ' ' << judged_ << ' ' << rollback_issued_ << '\n';
    for (const auto& [k, c] : counts_) out << "count " << v(k) << ' ' << c.rated << ' ' << c.down << '\n';
    for (const auto& [k, c] : window_) out << "window " << v(k) << ' ' << c.rated << ' ' << c.down << '\n';
  }
  return WriteFileAtomic(path, out.str());
}

Status HealthMonitor::Load(const std::string& path) {
  auto data = ReadFile(path);
  if (!data.ok()) return data.status().code() == StatusCode::kNotFound ? Status::Ok() : data.status();
  auto v = [](const std::string& s) { return s == "-" ? std::string() : s; };
  std::istringstream in(*data);
  std::string line, active, previous;
  bool judged = false, issued = false, saw_watch = false;
  std::map<std::string, Counts> counts, window;
  for (int n = 1; std::getline(in, line); ++n) {
    auto bad = [&] { return DataLossError("health state '" + path + "' is damaged at line " + std::to_string(n) + ": '" + line.substr(0, 80) + "'"); };
    std::istringstream ls(line);
    std::string kind, a, b;
    if (!(ls >> kind)) return bad();
    if (n == 1) {
      if (kind != "attune-health" || !(ls >> a) || a != "1") return bad();
      continue;
    }
    if (kind == "watch") {
      if (!(ls >> a >> b >> judged >> issued)) return bad();
      active = v(a), previous = v(b), saw_watch = true;
    } else if (kind == "count" || kind == "window") {
      Counts c;
      if (!(ls >> a >> c.rated >> c.down) || c.rated < 0 || c.down < 0 || c.down > c.rated) return bad();
      (kind == "count" ? counts : window)[v(a)] = c;
    } else {
      return bad();
    }
    std::string extra;
    if (ls >> extra) return bad();
  }
  if (!saw_watch) return DataLossError("health state '" + path + "' is damaged: no watch line (truncated?)");
  std::lock_guard<std::mutex> lock(mu_);
  active_ = active, previous_ = previous, judged_ = judged, rollback_issued_ = issued;
  counts_ = std::move(counts);
  window_ = std::move(window);
  return Status::Ok();
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
