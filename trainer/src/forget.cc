#include "attune/trainer/forget.h"

#include <algorithm>
#include <cstdio>
#include <set>

#include "attune/core/file.h"

namespace attune::trainer {

std::string RetrainMarkerPath(const std::string& checkpoint_path) {
  const size_t slash = checkpoint_path.rfind('/');
  return (slash == std::string::npos ? std::string(".") : checkpoint_path.substr(0, slash)) + "/RETRAIN";
}

bool RetrainPending(const std::string& checkpoint_path) { return PathExists(RetrainMarkerPath(checkpoint_path)); }

int64_t PolicyNewEvents(const std::string& checkpoint_path, uint64_t new_events, const WindowPolicy& policy) {
  if (!RetrainPending(checkpoint_path)) return int64_t(new_events);
  return std::max<int64_t>(int64_t(new_events), std::max<int64_t>(1, policy.min_new_events));
}

Result<ForgetOutcome> ForgetAndRetire(replay::Store& store, adapters::Registry& registry,
                                      const std::string& checkpoint_path, ForgetScope scope, const std::string& key) {
  ForgetOutcome out;
  ASSIGN_OR_RETURN(replay::ForgetResult erased,
                   scope == ForgetScope::kUser ? store.ForgetUser(key) : store.ForgetEvent(key));
  out.events_erased = erased.events_erased;
  out.affected_versions = erased.affected_adapter_versions;
  if (out.events_erased == 0 && out.affected_versions.empty()) return out;
  // The reason names the kind of request, never the user, event or content.
  const std::string reason = std::string("forget: ") + (scope == ForgetScope::kUser ? "a user's" : "one") +
                             " feedback erased (" + std::to_string(out.events_erased) + " events)";
  const std::set<std::string> seeds(out.affected_versions.begin(), out.affected_versions.end());
  auto retired = adapters::RetireVersionsBuiltFrom(registry, seeds, reason);
  if (!retired.ok()) return retired.status().WithContext("retiring the adapters trained on the erased feedback");
  out.retired = std::move(*retired);
  if (!checkpoint_path.empty() && PathExists(checkpoint_path)) {
    if (std::remove(checkpoint_path.c_str()) != 0) {
      return IoError("cannot remove the training checkpoint '" + checkpoint_path + "' after an erasure");
    }
    out.checkpoint_discarded = true;
  }
  if (!out.retired.erased.empty() && !checkpoint_path.empty()) {
    const std::string marker = RetrainMarkerPath(checkpoint_path);
    RETURN_IF_ERROR(MakeDirs(marker.substr(0, marker.rfind('/'))));
    RETURN_IF_ERROR(WriteFileAtomic(marker, reason + "\n").WithContext("scheduling a retraining window"));
    out.retrain_scheduled = true;
  }
  return out;
}

}  // namespace attune::trainer
