// Files: whole-file reads, crash-safe replacement, read-only memory maps.
//
// Every multi-step change on disk goes through WriteFileAtomic or
// ReplaceFileAtomic: write to a temporary name in the same directory, fsync,
// rename over the target, fsync the directory. A crash at any instant leaves
// either the old file or the new one, never a mix.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "attune/core/result.h"

namespace attune {

// Reads the whole file. NotFound if absent, InvalidArgument when it is not
// a regular file (a FIFO, device or socket: never waited on or read
// endlessly, even through a symlink), IoError otherwise.
Result<std::string> ReadFile(const std::string& path);

// OK for a regular file (`mode` from stat); else InvalidArgument naming
// `path` and what it is ("a FIFO", "a character device", ...). Directories
// are named too.
Status RequireRegularFile(const std::string& path, unsigned mode);

// Atomically replaces `path` with `contents` (see above). On failure the old
// file, if any, is untouched and no temporary file is left behind.
Status WriteFileAtomic(const std::string& path, std::string_view contents);

// Renames `from` over `to` and fsyncs the directory of `to`.
Status RenameDurable(const std::string& from, const std::string& to);

// fsyncs a directory so that renames and creations in it are durable.
Status SyncDir(const std::string& dir);

// Creates `dir` and its parents (like mkdir -p). OK if it already exists.
Status MakeDirs(const std::string& dir);

bool PathExists(const std::string& path);

// A read-only, private memory map of a whole file. Move-only.
// Thread safety: data() may be read from any thread while the object lives.
class MappedFile {
 public:
  // IoError/NotFound on failure. An empty file maps to size() == 0.
  static Result<MappedFile> Open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// The data directory: `flag` if non-empty, else $ATTUNE_HOME, else
// ~/.local/share/attune.
std::string ResolveDataDir(const std::string& flag);

}  // namespace attune
