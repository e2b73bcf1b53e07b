// FaultInjectionEnv: an Env over the real filesystem that injects the faults
// a trusted store must survive (after LevelDB's and RocksDB's fault-injection
// test envs):
//   - write errors: after `ok_ops` more successful write operations (create,
//     append, sync, close, rename, directory sync, remove), every further one
//     fails with `err` (ENOSPC, EIO) until cleared;
//   - a power cut: DropUnsyncedData() undoes what was not made durable: file
//     contents not fsync'd are cut back to the last sync, and files created
//     or renamed in a directory that was not fsync'd since disappear (a
//     rename's target gets its previous contents back).
// For tests only; thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "attune/core/env.h"

namespace attune::testing {

class FaultInjectionEnv : public Env {
 public:
  FaultInjectionEnv() = default;

  // Fails every write operation after `ok_ops` more succeed, with errno `err`.
  void FailAfter(int ok_ops, int err);
  void ClearFaults();
  // Write operations attempted since construction (or ResetCounter).
  int ops() const;
  void ResetCounter();
  // Whether a fault was injected since the last FailAfter.
  bool injected() const;

  // Simulates a power cut (see above). Call with no write in flight; the
  // files that were not durable are changed on the real filesystem.
  void DropUnsyncedData();

  // Called before every ReadFile with its path (a test can block there to
  // make a load slow). Set before installing the env.
  void SetReadHook(std::function<void(const std::string&)> hook);

  Result<std::string> ReadFile(const std::string& path) override;
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override;
  Status RenameFile(const std::string& from, const std::string& to) override;
  Status SyncDir(const std::string& dir) override;
  Status RemoveFile(const std::string& path) override;

  // Used by the env's files.
  Status MaybeFail(const std::string& what, const std::string& path);
  void NoteSynced(const std::string& path, uint64_t size);

 private:
  // A name that appeared in `dir` (created or renamed to) since its last sync.
  struct Pending {
    std::string dir, path;
    std::optional<std::string> previous;  // the old contents of a rename target
  };
  mutable std::mutex mu_;
  int ops_ = 0;
  int fail_at_ = -1;  // op index from which to fail; -1 = never
  int err_ = 0;
  bool injected_ = false;
  std::map<std::string, uint64_t> synced_size_;  // files this env wrote
  std::vector<Pending> pending_;
  std::function<void(const std::string&)> read_hook_;
};

}  // namespace attune::testing
