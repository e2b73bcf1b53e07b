// On-disk encodings of the replay store: keys, event records, sampler
// state. See docs/replay.md "On-disk layout" for the table of column
// families. All integers in keys are big-endian so that keys sort by value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "attune/core/result.h"
#include "attune/feedback/event.h"

namespace attune::replay::internal {

void PutFixed32BE(std::string* out, uint32_t v);
void PutFixed64BE(std::string* out, uint64_t v);
uint32_t DecodeFixed32BE(const char* p);
uint64_t DecodeFixed64BE(const char* p);

std::string SeqKey(uint64_t seq);
// Sorts by time, then seq. Times are sign-flipped so negatives sort first.
std::string TimeKey(const feedback::Timestamp& t, uint64_t seq);
feedback::Timestamp TimeFromKey(std::string_view key);  // REQUIRES: size 20
// user_id '\0' seq. The validated user id never contains '\0'.
std::string UserKey(std::string_view user_id, uint64_t seq);
std::string UserPrefix(std::string_view user_id);  // user_id '\0'
// The first key after every key that starts with `prefix`.
std::string PrefixEnd(std::string_view prefix);

// Sampler column family keys.
inline constexpr std::string_view kStateKey = "#state";  // sorts before slots
std::string SlotKey(uint32_t slot);                      // "s" slot -> seq
std::string MemberKey(uint64_t seq);                     // "m" seq  -> slot
inline constexpr std::string_view kSlotPrefix = "s";

// Meta (default) column family: quarantined event ids (Store::Quarantine).
inline constexpr std::string_view kQuarantinePrefix = "quarantine/";
inline std::string QuarantineKey(std::string_view event_id) { return std::string(kQuarantinePrefix) + std::string(event_id); }

// Lineage column family keys.
std::string LineageEventKey(std::string_view event_id, std::string_view version);
std::string LineageEventPrefix(std::string_view event_id);
std::string LineageVersionKey(std::string_view version, std::string_view event_id);
std::string LineageUserKey(std::string_view user_id, std::string_view version);
std::string LineageUserPrefix(std::string_view user_id);
std::string VersionRecordKey(std::string_view version);
inline constexpr std::string_view kVersionRecordPrefix = "a";

// The value stored under an event id: a small header, then the event in
// protobuf wire format.
struct Record {
  uint64_t seq = 0;
  feedback::Timestamp time;
  std::string user_id;
  std::string payload;  // feedback::SerializeEvent
};
std::string EncodeRecord(const Record& r);
// DataLoss if truncated or of an unknown record version.
Result<Record> DecodeRecord(std::string_view value);

// What max_bytes counts for one event: its record and all four keys and
// index values.
inline uint64_t StoredBytes(std::string_view id, std::string_view user_id, size_t value_size) {
  return 4 * id.size() + value_size + /*seq*/ 8 + /*time*/ 20 + user_id.size() + 9;
}

// Persistent counters and the reservoir's random state. Rewritten by every
// write; see store.h Stats for the meaning of the counters.
struct State {
  uint64_t next_seq = 1;
  uint64_t cursor = 0;
  uint64_t grad_ptr = 1;          // seqs below it have left the recent window
  uint64_t graduated = 0;         // events that left the window (Algorithm R's n)
  uint64_t rng = 0;               // splitmix64 state
  uint64_t capacity = 0;          // reservoir slots (k); 0 with no max_events
  int64_t age_floor = INT64_MIN;  // every time index key is >= this (seconds)
  uint64_t events = 0, bytes = 0, recent = 0, reservoir = 0;
  uint64_t appended = 0, duplicates = 0, forgotten = 0;
  uint64_t evicted_count = 0, evicted_bytes = 0, evicted_age = 0;
  uint64_t versions = 0;
};
std::string EncodeState(const State& s);
Result<State> DecodeState(std::string_view value);

// Version lineage summary.
struct VersionRecord {
  uint64_t commits = 0;
  uint64_t events = 0;
  uint64_t missing = 0;
  uint64_t erased = 0;  // events erased by forget after training
  uint64_t last_cursor = 0;
};
std::string EncodeVersionRecord(const VersionRecord& v);
Result<VersionRecord> DecodeVersionRecord(std::string_view value);

// splitmix64 (Steele, Lea, Flood 2014): tiny state, good enough for
// sampling, trivially persisted.
uint64_t SplitMix64(uint64_t& state);
// Uniform in [0, n) without modulo bias. REQUIRES: n > 0.
uint64_t UniformBelow(uint64_t& state, uint64_t n);

}  // namespace attune::replay::internal
