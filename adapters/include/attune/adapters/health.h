// HealthMonitor: watches a newly active adapter and says when to roll it back.
//
// Two triggers:
//   - NaN or Inf logits reported for the active version: roll back at once.
//   - Thumbs-down streak: once the active version has collected
//     `window` rated responses (events carry the version that produced the
//     response), its thumbs-down rate over those responses is compared with
//     the previous version's rate; if it is higher by more than
//     `max_down_rate_increase`, roll back. The window is judged once; a version
//     that passes it is no longer watched for ratings.
// The previous version's rate uses all of its ratings seen so far; with fewer
// than `min_baseline_ratings` of them, `fallback_baseline_rate` stands in.
//
// The monitor only decides; ApplyVerdict performs the rollback on a Registry
// (guarded by expected_active, so a verdict about an old version never undoes
// a newer promotion). Counts live in memory; Save and Load keep them across
// restarts in a small file next to the registry (adapters/HEALTH), so that a
// restarted app still knows the active adapter was going bad.
//
// Deterministic: the verdict depends only on the sequence of calls.
// Thread safety: all methods may be called from several threads.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "attune/adapters/health_options.h"
#include "attune/adapters/registry.h"
#include "attune/core/result.h"

namespace attune::adapters {

// HealthOptions lives in health_options.h.

struct HealthVerdict {
  bool rollback = false;
  std::string version;  // the version to roll back from
  ActivationCause cause = ActivationCause::kRollbackManual;
  std::string reason;  // a sentence with the numbers
};

class HealthMonitor {
 public:
  explicit HealthMonitor(HealthOptions options = {});

  // Starts watching `active` (may be "" for none), judged against `previous`
  // ("" = the bare base model). Call after every activation. Ratings already
  // recorded for either version are kept. Calling it again with the same
  // pair (after a restart, say) keeps the window collected so far.
  void SetActive(const std::string& active, const std::string& previous);

  // Records one rated response produced by `version`. Returns a verdict
  // with rollback set when this rating completes a failing window.
  [[nodiscard]] HealthVerdict RecordRating(const std::string& version, bool thumbs_down);

  // The runtime saw NaN or Inf logits while `version` was applied.
  // Rollback verdict when `version` is the watched active one (once per
  // activation: later reports for it return no verdict).
  [[nodiscard]] HealthVerdict RecordNonFinite(const std::string& version);

  struct Counts {
    int64_t rated = 0;
    int64_t down = 0;
  };
  Counts CountsFor(const std::string& version) const;

  // Writes the whole state to `path` atomically (WriteFileAtomic): a crash
  // leaves the previous file. IoError on failure.
  Status Save(const std::string& path) const;
  // Replaces the state with the one saved at `path`. An absent file is not
  // an error (nothing was saved yet). DataLoss naming the file and line when
  // it is damaged; the state is then unchanged.
  Status Load(const std::string& path);

 private:
  HealthOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, Counts> counts_;  // by version ("" = no adapter)
  std::map<std::string, Counts> window_;  // ratings since SetActive
  std::string active_, previous_;
  bool judged_ = false;           // the rating window of active_ has been judged
  bool rollback_issued_ = false;  // a rollback verdict for active_ was returned
};

// Rolls `registry` back as `verdict` says (cause, note = reason,
// expected_active = verdict.version). OK with "" unchanged when
// !verdict.rollback. Returns the new active id. Aborted when the active
// version is no longer verdict.version.
Result<std::string> ApplyVerdict(Registry& registry, const HealthVerdict& verdict);

}  // namespace attune::adapters
