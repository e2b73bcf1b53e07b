// Txn: one group of changes to the store, built in memory and committed as
// one RocksDB WriteBatch. Reads see the group's own pending writes
// (WriteBatchWithIndex), so several appends in one group compose.
//
// Not thread-safe: only the writer at the head of the queue builds a Txn.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/utilities/write_batch_with_index.h>

#include <memory>
#include <string>
#include <vector>

#include "attune/core/status.h"
#include "encoding.h"

namespace attune::replay::internal {

// The column families (see docs/replay.md "On-disk layout").
struct Handles {
  rocksdb::DB* db = nullptr;
  rocksdb::ColumnFamilyHandle* meta = nullptr;     // default: format version
  rocksdb::ColumnFamilyHandle* events = nullptr;   // id -> Record
  rocksdb::ColumnFamilyHandle* by_seq = nullptr;   // seq -> id
  rocksdb::ColumnFamilyHandle* by_time = nullptr;  // time seq -> id
  rocksdb::ColumnFamilyHandle* by_user = nullptr;  // user \0 seq -> id
  rocksdb::ColumnFamilyHandle* sampler = nullptr;  // state, slots, members
  rocksdb::ColumnFamilyHandle* lineage = nullptr;  // event/user/version rows
};

// RocksDB status -> ours, with `context` (what we were doing) in front.
Status FromRocks(const rocksdb::Status& s, const std::string& context);

class Txn {
 public:
  Txn(const Handles& h, const State& state);

  // The latest value including this group's pending writes.
  Status Get(rocksdb::ColumnFamilyHandle* cf, const std::string& key, std::string* value, bool* found);
  // An iterator over the DB merged with this group's pending writes.
  // Invalid after the next write to the Txn.
  std::unique_ptr<rocksdb::Iterator> NewIterator(rocksdb::ColumnFamilyHandle* cf);

  void Put(rocksdb::ColumnFamilyHandle* cf, const std::string& key, const std::string& value);
  void Delete(rocksdb::ColumnFamilyHandle* cf, const std::string& key);
  // Applied at commit after the point writes; invisible to Get/NewIterator.
  void DeleteRange(rocksdb::ColumnFamilyHandle* cf, const std::string& begin, const std::string& end);

  // Writes the batch (with the state) to the DB.
  Status Commit(const rocksdb::WriteOptions& wo);

  State state;
  const Handles& h;

 private:
  rocksdb::WriteBatchWithIndex batch_;
  struct Range {
    rocksdb::ColumnFamilyHandle* cf;
    std::string begin, end;
  };
  std::vector<Range> ranges_;
  rocksdb::Status first_error_;
};

}  // namespace attune::replay::internal
