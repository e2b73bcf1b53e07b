// Env: the filesystem operations that Attune's durable writes go through
// (LevelDB's Env, reduced to what WriteFileAtomic and its callers need), so
// that tests can inject faults: ENOSPC or EIO on any write, or a power cut
// that drops whatever was not yet fsync'd.
//
// Every crash-safe file of Attune (registry STATE and payloads, training
// checkpoints, the health watch state) is written by WriteFileAtomic and
// read by ReadFile (file.h), which use Env::Default(). RocksDB (the replay store) has its
// own Env and does not go through this one.
//
// Thread safety: Env methods may be called from any thread. A WritableFile
// is used by one thread at a time.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "attune/core/result.h"

namespace attune {

class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual Status Append(std::string_view data) = 0;
  // Makes everything appended so far durable (fsync).
  virtual Status Sync() = 0;
  // Closes the file; further calls are errors. The destructor closes too.
  virtual Status Close() = 0;
};

class Env {
 public:
  virtual ~Env() = default;

  // The Env in use: the real filesystem, unless a test installed another
  // with ScopedDefaultEnv.
  static Env* Default();
  // The real filesystem (POSIX), whatever is installed.
  static Env* Posix();

  // The whole file (NotFound if absent, IoError otherwise).
  virtual Result<std::string> ReadFile(const std::string& path) = 0;
  // Creates a new file (fails if it exists). IoError / NotFound.
  virtual Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) = 0;
  // rename(2): atomic, durable only once the directory is synced.
  virtual Status RenameFile(const std::string& from, const std::string& to) = 0;
  // fsync of a directory: makes creations and renames in it durable.
  virtual Status SyncDir(const std::string& dir) = 0;
  virtual Status RemoveFile(const std::string& path) = 0;
};

// Installs `env` as Env::Default() for the lifetime of this object (tests).
// REQUIRES: no other thread is writing files while it is installed or
// removed; scopes nest.
class ScopedDefaultEnv {
 public:
  explicit ScopedDefaultEnv(Env* env);
  ~ScopedDefaultEnv();
  ScopedDefaultEnv(const ScopedDefaultEnv&) = delete;
  ScopedDefaultEnv& operator=(const ScopedDefaultEnv&) = delete;

 private:
  Env* previous_;
};

}  // namespace attune
