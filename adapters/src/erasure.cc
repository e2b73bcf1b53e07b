#include "attune/adapters/erasure.h"

namespace attune::adapters {

std::set<std::string> VersionsBuiltFrom(const Registry& registry, const std::set<std::string>& seeds) {
  const std::vector<VersionInfo> versions = registry.List();
  std::set<std::string> tainted = seeds;  // may name versions no longer held
  // What each version was built from besides its parent; read once.
  std::vector<std::string> sources(versions.size());
  for (size_t i = 0; i < versions.size(); ++i) {
    auto a = registry.Load(versions[i].id);
    if (!a.ok()) continue;
    for (const char* key : {"merge.sources", "import.parent_version", "sync.parent_version"}) {
      auto it = a->training_config.find(key);
      if (it != a->training_config.end()) sources[i] += it->second + " ";
    }
  }
  for (bool grew = true; grew;) {
    grew = false;
    for (size_t i = 0; i < versions.size(); ++i) {
      const VersionInfo& v = versions[i];
      if (tainted.count(v.id)) continue;
      bool built_from = tainted.count(v.parent_version) > 0;
      for (auto it = tainted.begin(); !built_from && it != tainted.end(); ++it) {
        built_from = !it->empty() && sources[i].find(*it) != std::string::npos;
      }
      if (built_from) {
        tainted.insert(v.id);
        grew = true;
      }
    }
  }
  std::set<std::string> held;
  for (const auto& v : versions) {
    if (tainted.count(v.id)) held.insert(v.id);
  }
  return held;
}

namespace {

// The most recently active version outside `tainted` that still exists, or
// "" (the base model).
std::string CleanRollbackTarget(const Registry& registry, const std::set<std::string>& tainted) {
  const std::vector<HistoryEntry> history = registry.History();
  for (auto it = history.rbegin(); it != history.rend(); ++it) {
    for (const std::string* v : {&it->to_version, &it->from_version}) {
      if (v->empty() || tainted.count(*v) || v->compare(registry.Active()) == 0) continue;
      auto info = registry.Get(*v);
      if (info.ok() && info->state != VersionState::kCandidate) return *v;
    }
  }
  return "";
}

}  // namespace

Result<RetireResult> RetireVersionsBuiltFrom(Registry& registry, const std::set<std::string>& seeds,
                                             const std::string& reason) {
  RetireResult out;
  const std::set<std::string> tainted = VersionsBuiltFrom(registry, seeds);
  out.active_before = out.active_after = registry.Active();
  if (tainted.count(out.active_before)) {
    RollbackRequest rb;
    rb.target = CleanRollbackTarget(registry, tainted);
    rb.cause = ActivationCause::kRollbackErasure;
    rb.note = reason;
    rb.expected_active = out.active_before;
    auto now = registry.Rollback(rb);
    if (!now.ok()) return now.status().WithContext("rolling back " + registry.Label(out.active_before));
    out.active_after = *now;
    out.rolled_back = true;
  }
  for (const auto& id : tainted) {
    if (!registry.Get(id).ok()) continue;
    RETURN_IF_ERROR(registry.Erase(id, reason).WithContext("erasing " + registry.Label(id)));
    out.erased.push_back(id);
  }
  return out;
}

}  // namespace attune::adapters
