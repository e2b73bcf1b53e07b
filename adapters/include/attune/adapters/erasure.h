// Erasure of what adapters learned: when a user's events are forgotten, every
// adapter version built from them goes too (DESIGN.md "Forget").
//
// A version is built from erased data when it was trained on an erased event
// (the replay store reports those: replay::ForgetResult), or when it
// descends from such a version: its parent, the sources of a merge
// (training_config "merge.sources"), or the parent of an imported or synced
// version ("import.parent_version", "sync.parent_version").
//
// Thread safety: as the registry's (each registry call is atomic; a
// concurrent promotion between the calls is seen by the next erasure).
#pragma once

#include <set>
#include <string>
#include <vector>

#include "attune/adapters/registry.h"
#include "attune/core/result.h"

namespace attune::adapters {

// `seeds` and every version of `registry` built from them (see above),
// including seeds the registry no longer holds when something descends from
// them. Only ids the registry holds are returned.
std::set<std::string> VersionsBuiltFrom(const Registry& registry, const std::set<std::string>& seeds);

struct RetireResult {
  std::vector<std::string> erased;  // full ids, in the order erased
  bool rolled_back = false;         // the active version was among them
  std::string active_before, active_after;  // "" = the base model
};

// Retires every version built from `seeds`: when the active one is among
// them, it is rolled back (cause rollback-erasure, `reason` as the history's
// note) to the most recently active version that is not (or the base
// model); then each is erased with its payload, `reason` recorded with it.
// `reason` must not hold the erased content (say "forget: user request").
// Versions already gone are skipped. On an error the versions erased so
// far stay erased (each step is durable) and the error names the version.
Result<RetireResult> RetireVersionsBuiltFrom(Registry& registry, const std::set<std::string>& seeds,
                                             const std::string& reason);

}  // namespace attune::adapters
