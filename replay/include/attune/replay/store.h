// Store: the durable, bounded, sampled and erasable home of feedback events.
//
//   ASSIGN_OR_RETURN(auto store, replay::Store::Open(options, dir));
//   ASSIGN_OR_RETURN(auto r, store->Append(std::move(event)));  // durable
//   ASSIGN_OR_RETURN(auto batch, store->Sample({.seed = 7}));
//   ... train adapter "v12" on batch.new_events + batch.replay_events ...
//   RETURN_IF_ERROR(store->RecordTraining({"v12", batch.cursor_before,
//                                          batch.cursor_after, ids}).status());
//
// Every event gets a sequence number (seq) in arrival order, starting at 1.
// The training cursor is the last seq that training has consumed; events
// after it are "new", events at or before it are "old" and may be replayed.
//
// Thread safety: every method may be called from many threads at once.
// Writes (Append, RecordTraining, Forget*) are queued and committed in
// order; concurrent appends are grouped into one write and one fsync.
// REQUIRES: no call is in flight when the Store is destroyed.
//
// Errors common to all methods: IoError (the OS or RocksDB refused),
// DataLoss (a corrupt record or store), FailedPrecondition (a write to a
// store opened read_only). After an IoError on a write RocksDB may refuse
// further writes until the store is reopened.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "attune/core/result.h"
#include "attune/feedback/event.h"
#include "attune/replay/options.h"
#include "attune/replay/sample_options.h"

namespace attune::replay {

// The on-disk format version this build writes and the newest it opens.
inline constexpr uint32_t kStoreFormatVersion = 1;

struct StoredEvent {
  uint64_t seq = 0;
  feedback::Event event;
};

enum class AppendOutcome {
  kStored,     // new event, now durable (per Options::durability)
  kDuplicate,  // an event with this id is already stored; nothing changed
};

struct AppendResult {
  AppendOutcome outcome = AppendOutcome::kStored;
  uint64_t seq = 0;  // of the new event; 0 for a duplicate
};

// SampleOptions lives in sample_options.h.

struct SampleBatch {
  // Neither holds a quarantined event (Store::Quarantine).
  std::vector<StoredEvent> new_events;     // seq > cursor_before, ascending
  std::vector<StoredEvent> replay_events;  // seq <= cursor_before
  uint64_t cursor_before = 0;              // the cursor the batch was drawn at
  uint64_t cursor_after = 0;               // last seq in new_events, else cursor_before
};

// What RecordTraining records: adapter `adapter_version` was trained on
// `event_ids`, and the cursor moves from `expected_cursor` to `new_cursor`.
struct TrainingRecord {
  std::string adapter_version;         // printable ASCII, 1..128 bytes
  uint64_t expected_cursor = 0;        // SampleBatch::cursor_before
  uint64_t new_cursor = 0;             // SampleBatch::cursor_after
  std::vector<std::string> event_ids;  // new and replayed events used
};

struct TrainingRecordResult {
  uint64_t events_recorded = 0;
  // Events of the record that are no longer stored (evicted, or erased by a
  // forget that ran during training). When the trainer cares about erasure
  // it should not publish the version if this is non-zero.
  uint64_t events_missing = 0;
};

struct ForgetResult {
  uint64_t events_erased = 0;
  // Adapter versions recorded as trained on any erased event (or, for a
  // user, on any event of that user ever), sorted. These versions still
  // carry the erased data and should be retrained or removed.
  std::vector<std::string> affected_adapter_versions;
};

struct ScanOptions {
  // Only this user's events; "" = everyone's.
  // Default: "".
  std::string user_id;
  // Most events visited; 0 = all.
  // Default: 0.
  size_t limit = 0;
  // Visit in descending arrival order.
  // Default: false (oldest first).
  bool newest_first = false;
};

struct Stats {
  uint64_t events = 0;
  uint64_t bytes = 0;               // stored records and keys, as max_bytes counts them
  uint64_t recent = 0;              // events in the recent window
  uint64_t reservoir = 0;           // older events kept by the reservoir
  uint64_t reservoir_capacity = 0;  // max_events - recent_window (0: unbounded)
  uint64_t last_seq = 0;            // highest seq ever assigned
  uint64_t cursor = 0;              // training cursor
  uint64_t new_since_cursor = 0;    // stored events with seq > cursor
  uint64_t adapter_versions = 0;    // versions with recorded lineage
  // Since the store was created:
  uint64_t appended = 0;
  uint64_t duplicates = 0;
  uint64_t evicted_count = 0;  // reservoir replacement (max_events)
  uint64_t evicted_bytes = 0;  // max_bytes
  uint64_t evicted_age = 0;    // max_age_seconds
  uint64_t forgotten = 0;      // erased by Forget*
};

class Store {
 public:
  // Opens (or creates) the store in directory `path`.
  // Errors: InvalidArgument (inconsistent options), NotFound (absent and
  // !create_if_missing), Unavailable (another process holds the store:
  // retry later), DataLoss (corrupt, or not a replay store),
  // FailedPrecondition (written by a newer format version), IoError.
  // Never resets or repairs a store on its own.
  static Result<std::unique_ptr<Store>> Open(const Options& options, const std::string& path);

  virtual ~Store() = default;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Validates and normalises `event` (feedback::ValidateAndNormalize with
  // Options::limits), then stores it with its index entries in one atomic
  // write and enforces retention. Returns once the write is durable per
  // Options::durability. The same id twice stores one event (kDuplicate),
  // even if the contents differ; an id whose event was evicted or erased
  // can be stored again.
  // Errors: InvalidArgument (the event, naming field and rule),
  // FailedPrecondition (time older than max_age_seconds; newer schema).
  // On error nothing is stored.
  virtual Result<AppendResult> Append(feedback::Event event) = 0;

  // Append for many events, committed together (one fsync). Each event
  // gets its own result; an invalid event does not stop the others.
  virtual std::vector<Result<AppendResult>> AppendMany(std::vector<feedback::Event> events) = 0;

  // The stored event with this id. NotFound if absent.
  virtual Result<StoredEvent> Get(std::string_view id) const = 0;

  // Visits stored events in arrival order (see ScanOptions) from one
  // consistent snapshot; `visit` returns false to stop early.
  virtual Status Scan(const ScanOptions& options, const std::function<bool(const StoredEvent&)>& visit) const = 0;

  // A training batch: new events after the cursor plus a replay sample of
  // old ones (see SampleOptions). Reads one snapshot; changes nothing.
  virtual Result<SampleBatch> Sample(const SampleOptions& options) const = 0;

  // Atomically (one write) moves the cursor and records the lineage
  // "adapter_version was trained on event_ids". A version may be recorded
  // several times; its lineage accumulates.
  // Errors: Aborted (the cursor is no longer expected_cursor: another
  // trainer won; resample), InvalidArgument (bad version, new_cursor below
  // expected_cursor or above the last seq). On error nothing changes.
  virtual Result<TrainingRecordResult> RecordTraining(const TrainingRecord& record) = 0;

  // Erases every event of `user_id` with its index entries and lineage
  // rows, in one atomic write, and reports the adapter versions trained on
  // that user's data. Erasing an unknown user is not an error (0 events).
  virtual Result<ForgetResult> ForgetUser(std::string_view user_id) = 0;

  // Erases one event. NotFound if no event has this id.
  virtual Result<ForgetResult> ForgetEvent(std::string_view id) = 0;

  virtual Result<Stats> GetStats() const = 0;

  // Quarantine: the events of a window whose candidate the gate rejected
  // are kept but neither sampled nor replayed (Sample leaves them out) until
  // released, so a bad window cannot poison the later ones. Ids not stored
  // are skipped. Erasing or evicting an event ends its quarantine.
  virtual Status Quarantine(const std::vector<std::string>& event_ids) = 0;
  virtual Status Release(const std::vector<std::string>& event_ids) = 0;
  // Quarantined event ids, sorted.
  virtual Result<std::vector<std::string>> Quarantined() const = 0;

  // Checks that every event has exactly its index entries and vice versa,
  // that the reservoir and counters agree with the data, and that every
  // record parses. DataLoss naming the first inconsistency.
  virtual Status Verify() const = 0;

 protected:
  Store() = default;
};

}  // namespace attune::replay
