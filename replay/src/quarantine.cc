// Store::Quarantine / Release / Quarantined: keys in the meta family.
#include "store_impl.h"

namespace attune::replay::internal {

Status StoreImpl::SetQuarantine(const std::vector<std::string>& ids, bool on) {
  if (ids.empty()) return Status::Ok();
  return WriteAlone([&](Txn& txn) -> Status {
    for (const std::string& id : ids) {
      if (on) {
        std::string value;
        bool found = false;
        RETURN_IF_ERROR(txn.Get(h_.events, id, &value, &found));
        if (!found) continue;  // evicted or erased meanwhile
        txn.Put(h_.meta, QuarantineKey(id), "");
      } else {
        txn.Delete(h_.meta, QuarantineKey(id));
      }
    }
    return Status::Ok();
  });
}

Result<std::vector<std::string>> StoreImpl::Quarantined() const {
  std::vector<std::string> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), h_.meta));
  const std::string prefix(kQuarantinePrefix);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    out.push_back(it->key().ToString().substr(prefix.size()));
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "scan quarantine"));
  return out;
}

}  // namespace attune::replay::internal
