// Options of the replay store. Every field has its default in the
// declaration; docs/replay.md explains the trade-offs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "attune/feedback/event.h"
#include "attune/feedback/validate.h"

namespace attune::replay {

enum class Durability {
  // Append returns after the write-ahead log is fsync'd: an acknowledged
  // event survives kill -9 and power loss. Concurrent appends share one
  // fsync (group commit).
  kSync,
  // Append returns after the log is written to the OS: an acknowledged event
  // survives the process being killed, not a power loss.
  kRelaxed,
};

// Bounds on what the store keeps, enforced on every append. When over a
// bound, the store evicts so that what remains is the `recent_window`
// newest events (by arrival) plus a uniform sample of the older ones
// (Algorithm R, Vitter 1985, "Random Sampling with a Reservoir"), whose
// random state is persisted, so restarts do not bias it.
//
// Options may change between opens: a smaller max_events evicts the members
// of reservoir slots that no longer exist, a larger one grows the reservoir,
// and max_events = 0 freezes it (nothing is evicted by count).
struct RetentionOptions {
  // Most events kept; 0 = no bound. The reservoir holds
  // max_events - recent_window of the older events.
  // Default: 100,000.
  uint64_t max_events = 100000;
  // Most bytes kept (stored records, keys included); 0 = no bound. Over it,
  // uniformly chosen reservoir members go first, then the oldest recent
  // events.
  // Default: 256 MiB.
  uint64_t max_bytes = 256ull << 20;
  // Events whose `time` is older than this are evicted, and refused on
  // append; 0 = no bound.
  // Default: 365 days.
  int64_t max_age_seconds = 365ll * 86400;
  // The newest events that are always kept (subject to max_bytes and
  // max_age_seconds). REQUIRES: < max_events when max_events > 0.
  // Default: 10,000.
  uint64_t recent_window = 10000;
  // Seed of the reservoir's random stream, used when the store is created
  // (later opens continue the persisted stream). 0 = from
  // std::random_device.
  // Default: 0.
  uint64_t reservoir_seed = 0;
};

// RocksDB memory knobs. The defaults keep the store under about 32 MiB of
// RAM, which suits a phone; a laptop can afford 4x.
struct MemoryOptions {
  // LRU block cache shared by all column families; index and filter blocks
  // are charged to it.
  // Default: 8 MiB.
  size_t block_cache_bytes = 8u << 20;
  // Cap on all memtables together (rocksdb::WriteBufferManager), charged to
  // the block cache.
  // Default: 16 MiB.
  size_t write_buffer_manager_bytes = 16u << 20;
  // Size of one memtable of the events column family (indexes use a
  // quarter of it).
  // Default: 4 MiB.
  size_t write_buffer_bytes = 4u << 20;
  // Flush and compaction threads.
  // Default: 2.
  int max_background_jobs = 2;
  // Open table files kept; -1 = unbounded.
  // Default: 128.
  int max_open_files = 128;
};

struct Options {
  // Create the store if `path` holds none; false: NotFound instead.
  // Default: true.
  bool create_if_missing = true;
  // Open without taking the lock and refuse every write (FailedPrecondition).
  // Readers may then run beside a writer in another process; they see the
  // store as of open.
  // Default: false.
  bool read_only = false;
  // Default: kSync.
  Durability durability = Durability::kSync;
  RetentionOptions retention;
  MemoryOptions memory;
  // Limits applied to every appended event (see feedback/validate.h).
  // Default: feedback::Limits{}.
  feedback::Limits limits;
  // The clock: fills unset event times, bounds future ones, drives
  // max_age_seconds.
  // Default: feedback::Now (the system clock).
  std::function<feedback::Timestamp()> now;
  // After a forget, flush and compact so that erased data leaves the files
  // on disk too, not only the logical view.
  // Default: true.
  bool compact_after_forget = true;
  // Most bytes of events committed in one group (one WAL write and fsync).
  // Default: 4 MiB.
  size_t max_group_bytes = 4u << 20;
  // A write is refused (IoError, nothing written) when the file system
  // would keep less free space than this plus the memory budget of the
  // write buffers (a flush writes them out) and four times the write: a full
  // disk must be met here, not inside RocksDB, whose log writer cannot
  // recover from a failed append. Default: 16 MiB.
  uint64_t min_free_disk_bytes = 16u << 20;
};

}  // namespace attune::replay
