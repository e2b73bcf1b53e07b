#include "txn.h"

namespace attune::replay::internal {

Status FromRocks(const rocksdb::Status& s, const std::string& context) {
  if (s.ok()) return Status::Ok();
  std::string msg = context + ": " + s.ToString();
  if (s.IsCorruption()) return DataLossError(msg);
  if (s.IsNotFound()) return NotFoundError(msg);
  if (s.IsNotSupported()) return FailedPreconditionError(msg);
  if (s.IsInvalidArgument()) return InvalidArgumentError(msg);
  if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut()) return UnavailableError(msg);
  return IoError(msg);
}

Txn::Txn(const Handles& handles, const State& s)
    : state(s), h(handles), batch_(rocksdb::BytewiseComparator(), 0, /*overwrite_key=*/true) {}

Status Txn::Get(rocksdb::ColumnFamilyHandle* cf, const std::string& key, std::string* value, bool* found) {
  rocksdb::Status s = batch_.GetFromBatchAndDB(h.db, rocksdb::ReadOptions(), cf, key, value);
  *found = s.ok();
  if (s.ok() || s.IsNotFound()) return Status::Ok();
  return FromRocks(s, "read");
}

std::unique_ptr<rocksdb::Iterator> Txn::NewIterator(rocksdb::ColumnFamilyHandle* cf) {
  return std::unique_ptr<rocksdb::Iterator>(
      batch_.NewIteratorWithBase(cf, h.db->NewIterator(rocksdb::ReadOptions(), cf)));
}

void Txn::Put(rocksdb::ColumnFamilyHandle* cf, const std::string& key, const std::string& value) {
  auto s = batch_.Put(cf, key, value);
  if (!s.ok() && first_error_.ok()) first_error_ = s;
}

void Txn::Delete(rocksdb::ColumnFamilyHandle* cf, const std::string& key) {
  auto s = batch_.Delete(cf, key);
  if (!s.ok() && first_error_.ok()) first_error_ = s;
}

void Txn::DeleteRange(rocksdb::ColumnFamilyHandle* cf, const std::string& begin, const std::string& end) {
  ranges_.push_back({cf, begin, end});
}

Status Txn::Commit(const rocksdb::WriteOptions& wo) {
  Put(h.sampler, std::string(kStateKey), EncodeState(state));
  if (!first_error_.ok()) return FromRocks(first_error_, "build write batch");
  rocksdb::WriteBatch* wb = batch_.GetWriteBatch();
  rocksdb::WriteBatch with_ranges;
  if (!ranges_.empty()) {
    with_ranges = rocksdb::WriteBatch(wb->Data());
    for (const Range& r : ranges_) {
      auto s = with_ranges.DeleteRange(r.cf, r.begin, r.end);
      if (!s.ok()) return FromRocks(s, "build write batch");
    }
    wb = &with_ranges;
  }
  return FromRocks(h.db->Write(wo, wb), "write");
}

}  // namespace attune::replay::internal
