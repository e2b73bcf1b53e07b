// What is at a store's path before RocksDB touches it, and how RocksDB's
// open errors translate into ours. Kept apart from StoreImpl so that Open
// and Repair make the same judgement.
#pragma once

#include <rocksdb/status.h>

#include <string>

#include "attune/core/result.h"

namespace attune::replay::internal {

enum class DirState {
  kAbsent,   // nothing there (a new store may be created)
  kEmpty,    // an empty directory (a new store may be created)
  kStore,    // a directory with a CURRENT file
  kDamaged,  // a directory with files but no CURRENT
};

// What one listing of a store's folder says.
struct DirScan {
  DirState state = DirState::kAbsent;
  // It holds a write-ahead log (*.log). RocksDB keeps one at all times, an
  // empty one after a clean close; a store without any lost it.
  bool has_log = false;
  // It holds only what creating a store writes before the store's first
  // write-ahead log (RocksDB's LOCK, and IDENTITY, LOG, the first MANIFEST,
  // CURRENT naming it, temporary and OPTIONS files): no log, no table, no
  // column family beyond the default one, so nothing was ever stored in it.
  // RocksDB writes CURRENT before that log, and a kill in between leaves
  // this; a store that lost its log or CURRENT to damage has a later
  // MANIFEST (the one that added the families) or tables.
  bool creation_cut_short = false;
};

// Lists `path` once, without changing anything. Errors: FailedPrecondition
// (`path` or a parent is not a directory), IoError (permission denied, a
// CURRENT that may not be read, or another OS error), each naming the path.
Result<DirScan> ScanStoreDir(const std::string& path);

// RocksDB's open error as ours: Unavailable (the LOCK is held), DataLoss
// naming the damaged or missing file (and pointing at `attune feedback
// repair`), IoError for the OS's refusals (permission denied).
Status OpenError(const rocksdb::Status& s, const std::string& path);

}  // namespace attune::replay::internal
