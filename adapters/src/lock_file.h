// An advisory, process-wide exclusive lock on a file (flock), released when
// the object dies or the process does (also on SIGKILL).
#pragma once

#include <string>

#include "attune/core/result.h"

namespace attune::adapters::internal {

class LockFile {
 public:
  // Waits up to `timeout_ms` for the lock. Unavailable when another open
  // file description still holds it then (another process, or another
  // Registry in this one); the message names the holder's pid.
  static Result<LockFile> Acquire(const std::string& path, int timeout_ms);

  LockFile() = default;
  LockFile(LockFile&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  LockFile& operator=(LockFile&& other) noexcept;
  LockFile(const LockFile&) = delete;
  LockFile& operator=(const LockFile&) = delete;
  ~LockFile();

 private:
  int fd_ = -1;
};

}  // namespace attune::adapters::internal
