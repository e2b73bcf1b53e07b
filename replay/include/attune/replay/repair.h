// Repair of a damaged replay store: an explicit step that the user runs
// (`attune feedback repair`); Store::Open never repairs on its own.
//
//   ASSIGN_OR_RETURN(auto report, replay::RepairStore(options, dir));
//
// What it does, in order:
//  1. Opens and verifies the store; if both succeed nothing is changed
//     (report.needed == false).
//  2. Copies the whole folder to `<dir>.damaged-<UTC time>` first, so that
//     a repair can never make things worse than they were.
//  3. Runs RocksDB's repair (rocksdb::RepairDB), which rebuilds the MANIFEST
//     from the tables and logs it can read and moves unreadable files to
//     `<dir>/lost/`.
//  4. Drops event records that do not decode, rebuilds the indexes, the
//     reservoir and the counters from the events that remain, and verifies
//     the result.
// The report says what was recovered and what was lost.
//
// Errors: NotFound (no store at `dir`), Unavailable (another process has it
// open), IoError (the backup could not be written: nothing was changed),
// DataLoss (even the repaired store does not verify; the backup remains).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attune/core/result.h"
#include "attune/replay/options.h"

namespace attune::replay {

struct RepairReport {
  // False when the store opened and verified: nothing was changed.
  bool needed = false;
  // Why it was needed (the error that opening or verifying gave).
  std::string damage;
  // The copy of the store as it was before the repair.
  std::string backup_dir;
  // Events readable after the repair.
  uint64_t events_recovered = 0;
  // Events the store's own counters recorded before the repair, when those
  // counters survived and can be trusted (events_known); their difference to
  // events_recovered was lost. After damage in a write-ahead log the number
  // of events written after the damage is recorded nowhere: events_known is
  // false.
  bool events_known = false;
  uint64_t events_before = 0;
  // Ids of events known to be lost: records that did not decode, and index
  // entries whose event is gone.
  std::vector<std::string> lost_event_ids;
  // Files RocksDB could not use, moved to <dir>/lost/.
  std::vector<std::string> set_aside_files;
  uint64_t last_seq = 0;
};

Result<RepairReport> RepairStore(const Options& options, const std::string& dir);

}  // namespace attune::replay
