// Helpers of the damage tests: store images with data in the tables only
// (closed) or also in the write-ahead log (as a crash leaves it), and the
// three kinds of damage.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "attune/replay/store.h"

namespace attune::replay::testing {

// Copies the regular files of `from` (not LOCK) into a new directory `to`.
void CopyStoreFiles(const std::string& from, const std::string& to);

// Every regular file below `dir` with its contents: what a command must
// leave as it was when it fails.
std::map<std::string, std::string> Snapshot(const std::string& dir);

// Names of the regular files of `dir` (not LOCK, not LOG*: RocksDB's own
// diagnostics), sorted.
std::vector<std::string> DataFiles(const std::string& dir);

enum class Damage { kFlipByte, kTruncate, kDelete };
const char* DamageName(Damage d);
// Damages `path`: flips all bits of the byte in the middle, cuts the file
// to half its size (to 0 when it has one byte), or deletes it.
void Apply(Damage d, const std::string& path);

// Writes `n` events e-1..e-n with sync durability into `dir` and returns
// them. With `crash_image`, `dir` receives a copy of the files taken while
// the store was still open (as a crash would leave them: the last events
// only in the log); otherwise the store is closed normally.
std::vector<feedback::Event> WriteStore(const std::string& dir, int n, bool crash_image);

// The events the store at `dir` holds, read-only; its error otherwise.
Result<std::vector<feedback::Event>> ReadAll(const std::string& dir);

}  // namespace attune::replay::testing
