// <state_dir>/state.json of sync.h, and the LOCK that serialises Sync calls
// of one data directory. Internal to export/.
#pragma once

#include <map>
#include <set>
#include <string>

#include "attune/core/result.h"

namespace attune::export_::internal {

struct SyncState {
  struct Origin {
    std::string local_id;
    std::string device_id;
    std::string label;
  };
  std::map<std::string, Origin> imported;  // by origin version id
  std::set<std::string> erased;            // origin or local ids named by tombstones
  std::set<std::string> applied;           // SHA-256 of tombstone files applied
};

// An empty state when absent; DataLoss naming the file when damaged.
Result<SyncState> LoadSyncState(const std::string& path);
Status SaveSyncState(const std::string& path, const SyncState& state);

// flock(2) on `path`, released by the destructor. Unavailable after
// `timeout_ms` when another process holds it.
class FileLock {
 public:
  static Result<FileLock> Acquire(const std::string& path, int timeout_ms);
  FileLock(FileLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  FileLock& operator=(FileLock&&) = delete;
  ~FileLock();

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace attune::export_::internal
