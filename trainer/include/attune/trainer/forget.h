// Forget, end to end: erasing a user's (or one) event also retires what
// adapters learned from it.
//
// ForgetAndRetire:
//  1. erases the events from the replay store (durable first);
//  2. retires every adapter version trained on them, and their descendants
//     and merges (adapters/erasure.h): the active one is rolled back to the
//     newest version that never saw them (or the base model), the others are
//     erased with their payloads; the registry keeps the reason, never the
//     content;
//  3. discards the training checkpoint, which may hold a partly trained
//     adapter of an interrupted window that used them;
//  4. when a version was retired, schedules a retraining window: the next
//     window (RunTrainingWindow, whatever runs it) relearns the remaining
//     stored events from the new active version, even without new feedback,
//     and clears the schedule once it completes.
// Steps 2-4 follow step 1: an interruption between them leaves versions the
// store can no longer name (its lineage rows go with the events); run
// `attune adapters ls` and retire by hand then.
//
// Thread safety: as the store's and registry's; one training window must not
// run at the same time (the assistant holds its training lock).
#pragma once

#include <string>
#include <vector>

#include "attune/adapters/erasure.h"
#include "attune/adapters/registry.h"
#include "attune/core/result.h"
#include "attune/replay/store.h"
#include "attune/trainer/window.h"

namespace attune::trainer {

struct ForgetOutcome {
  uint64_t events_erased = 0;
  // Versions the store recorded as trained on the erased events (sorted).
  std::vector<std::string> affected_versions;
  adapters::RetireResult retired;  // what was erased and rolled back
  bool checkpoint_discarded = false;
  bool retrain_scheduled = false;
};

enum class ForgetScope { kUser, kEvent };

// `key` is the user id or the event id. Errors of the store (NotFound for an
// unknown event) stop before anything changes; later errors name the step.
Result<ForgetOutcome> ForgetAndRetire(replay::Store& store, adapters::Registry& registry,
                                      const std::string& checkpoint_path, ForgetScope scope, const std::string& key);

// The schedule's file, next to the checkpoint: <dir of checkpoint>/RETRAIN.
std::string RetrainMarkerPath(const std::string& checkpoint_path);
// Whether a retraining window is scheduled.
bool RetrainPending(const std::string& checkpoint_path);
// New events as a window policy should count them: a scheduled retraining
// counts as enough new feedback (at least policy.min_new_events).
int64_t PolicyNewEvents(const std::string& checkpoint_path, uint64_t new_events, const WindowPolicy& policy);

}  // namespace attune::trainer
