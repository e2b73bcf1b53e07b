// Erasure: events, their index entries and their lineage rows go in one
// write; the adapter versions trained on them are reported, not deleted
// (the adapter registry decides what to do with them).
#include <set>

#include "store_impl.h"

namespace attune::replay::internal {
namespace {

// Keys of `cf` that start with `prefix`, read through the Txn.
Result<std::vector<std::string>> KeysWithPrefix(Txn& txn, rocksdb::ColumnFamilyHandle* cf, const std::string& prefix) {
  std::vector<std::string> keys;
  auto it = txn.NewIterator(cf);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    keys.push_back(it->key().ToString());
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "scan"));
  return keys;
}

Status MarkErased(Txn& txn, const Handles& h, const std::string& version) {
  std::string value;
  bool found;
  RETURN_IF_ERROR(txn.Get(h.lineage, VersionRecordKey(version), &value, &found));
  if (!found) return Status::Ok();
  ASSIGN_OR_RETURN(VersionRecord vr, DecodeVersionRecord(value));
  ++vr.erased;
  txn.Put(h.lineage, VersionRecordKey(version), EncodeVersionRecord(vr));
  return Status::Ok();
}

}  // namespace

Status StoreImpl::ForgetEventIn(Txn& txn, const std::string& id, bool keep_user_index,
                                std::vector<std::string>* versions) {
  std::string value;
  bool found;
  RETURN_IF_ERROR(txn.Get(h_.events, id, &value, &found));
  if (!found) return NotFoundError("no event with id '" + id + "'");
  ASSIGN_OR_RETURN(Record rec, DecodeRecord(value));
  RETURN_IF_ERROR(RemoveEvent(txn, id, rec, value.size(), keep_user_index));
  ++txn.state.forgotten;
  std::string prefix = LineageEventPrefix(id);
  ASSIGN_OR_RETURN(auto rows, KeysWithPrefix(txn, h_.lineage, prefix));
  for (const std::string& row : rows) {
    std::string version = row.substr(prefix.size());
    txn.Delete(h_.lineage, LineageVersionKey(version, id));
    RETURN_IF_ERROR(MarkErased(txn, h_, version));
    versions->push_back(version);
  }
  if (!rows.empty()) txn.DeleteRange(h_.lineage, prefix, PrefixEnd(prefix));
  return Status::Ok();
}

Result<ForgetResult> StoreImpl::ForgetUser(std::string_view user_id) {
  std::string user(user_id);
  if (user.empty()) return InvalidArgumentError("user_id: must not be empty");
  ForgetResult out;
  std::vector<std::string> versions;
  RETURN_IF_ERROR(WriteAlone([&](Txn& txn) -> Status {
    std::string prefix = UserPrefix(user);
    std::vector<std::string> ids;
    {
      auto it = txn.NewIterator(h_.by_user);
      for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
        ids.push_back(it->value().ToString());
      }
      RETURN_IF_ERROR(FromRocks(it->status(), "scan user index"));
    }
    for (const std::string& id : ids) {
      RETURN_IF_ERROR(ForgetEventIn(txn, id, /*keep_user_index=*/true, &versions));
    }
    txn.DeleteRange(h_.by_user, prefix, PrefixEnd(prefix));
    // Versions trained on this user's events that were evicted since.
    std::string lprefix = LineageUserPrefix(user);
    ASSIGN_OR_RETURN(auto rows, KeysWithPrefix(txn, h_.lineage, lprefix));
    for (const std::string& row : rows) versions.push_back(row.substr(lprefix.size()));
    txn.DeleteRange(h_.lineage, lprefix, PrefixEnd(lprefix));
    out.events_erased = ids.size();
    return Status::Ok();
  }));
  std::set<std::string> unique(versions.begin(), versions.end());
  out.affected_adapter_versions.assign(unique.begin(), unique.end());
  RETURN_IF_ERROR(AfterForget());
  return out;
}

Result<ForgetResult> StoreImpl::ForgetEvent(std::string_view id) {
  std::string key(id);
  ForgetResult out;
  std::vector<std::string> versions;
  RETURN_IF_ERROR(
      WriteAlone([&](Txn& txn) -> Status { return ForgetEventIn(txn, key, /*keep_user_index=*/false, &versions); }));
  out.events_erased = 1;
  std::set<std::string> unique(versions.begin(), versions.end());
  out.affected_adapter_versions.assign(unique.begin(), unique.end());
  RETURN_IF_ERROR(AfterForget());
  return out;
}

// Deletion only writes tombstones; flushing and compacting drops the data
// itself from the log and table files.
Status StoreImpl::AfterForget() {
  if (!options_.compact_after_forget) return Status::Ok();
  rocksdb::FlushOptions fo;
  fo.wait = true;
  RETURN_IF_ERROR(FromRocks(db_->Flush(fo, cf_handles_), "flush after forget"));
  rocksdb::CompactRangeOptions co;
  co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
  for (auto* cf : {h_.events, h_.by_seq, h_.by_time, h_.by_user, h_.lineage}) {
    RETURN_IF_ERROR(FromRocks(db_->CompactRange(co, cf, nullptr, nullptr), "compact after forget"));
  }
  return Status::Ok();
}

}  // namespace attune::replay::internal
