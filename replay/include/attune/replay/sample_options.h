// How a training window samples the replay store, in a plain header so that
// app-facing option structs can carry it without the store's interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace attune::replay {

struct SampleOptions {
  // Most new events (seq > cursor) in the batch, oldest first.
  // Default: 256.
  size_t max_new = 256;
  // Replayed old events per new event: the batch holds
  // round(replay_ratio * new_events.size()) old events (fewer if fewer are
  // stored), without replacement from the events at or before the cursor:
  // the least recently trained first up to 100,000 old events, uniformly
  // above (docs/replay.md). 2 mixes two old events into every new one, which
  // replays every earlier event while they number at most twice a window's
  // new ones: with 0.5, a fact none of whose events was drawn was forgotten
  // (docs/trainer.md, "Replaying every earlier event").
  // Default: 2.
  double replay_ratio = 2.0;
  // At least this many old events (fewer if fewer are stored), whatever the
  // ratio gives: a retraining window after an erasure draws its batch from
  // the old events alone. Default: 0.
  size_t min_replay = 0;
  // Random seed of the replay draw: the same store state and seed give the
  // same batch.
  // Default: 0.
  uint64_t seed = 0;
  // Sample as if the cursor were here (to page through new events before a
  // single RecordTraining); REQUIRES: >= the store's cursor.
  // Default: the store's cursor.
  std::optional<uint64_t> after = std::nullopt;
};

}  // namespace attune::replay
