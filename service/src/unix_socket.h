// A listening Unix domain socket for `attune serve --socket PATH`.
#pragma once

#include <sys/types.h>

#include <string>

#include "attune/core/result.h"

namespace attune::service {

// Owns the socket file it created: the destructor removes it (when it is
// still the same file) and closes the descriptor unless Release()d.
class UnixListener {
 public:
  // Binds `path` (mode 0600: only this user may connect) and listens. A
  // stale socket file that nobody listens on is replaced; a socket another
  // process listens on is Unavailable; any other file at `path` is refused
  // (never replaced).
  static Result<UnixListener> Listen(const std::string& path);

  UnixListener() = default;
  UnixListener(UnixListener&& o) noexcept { *this = std::move(o); }
  UnixListener& operator=(UnixListener&& o) noexcept;
  ~UnixListener();

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  // Moves the descriptor `fd()` onto `target` (dup2: `target`'s old socket
  // is closed) and closes `fd()`; the file stays owned by this object.
  Status MoveDescriptorTo(int target);

 private:
  int fd_ = -1;
  std::string path_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

}  // namespace attune::service
