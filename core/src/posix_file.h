// POSIX helpers shared by file.cc and env.cc (not part of the public API).
#pragma once

#include <string>

#include "attune/core/result.h"

namespace attune::internal {

// "<what> '<path>': <strerror>": NotFound for ENOENT, IoError otherwise.
Status ErrnoStatus(const std::string& what, const std::string& path, int err);

// Opens `path` read-only without waiting on a FIFO and checks that it is a
// regular file (RequireRegularFile), also behind a symlink. Returns the
// descriptor, which the caller closes; `*size` is the file's size.
Result<int> OpenRegularFile(const std::string& path, size_t* size);

}  // namespace attune::internal
