// Store::Verify: every event has exactly its index entries, the reservoir
// and the counters agree with the data, and every record parses.
#include "attune/feedback/codec.h"
#include "store_impl.h"

namespace attune::replay::internal {
namespace {

Status Inconsistent(const std::string& what) { return DataLossError("replay store is inconsistent: " + what); }

Status Expect(rocksdb::DB* db, const rocksdb::ReadOptions& ro, rocksdb::ColumnFamilyHandle* cf, const std::string& key,
              const std::string& want, const std::string& what) {
  std::string v;
  auto s = db->Get(ro, cf, key, &v);
  if (s.IsNotFound()) return Inconsistent(what + " is missing");
  RETURN_IF_ERROR(FromRocks(s, "verify"));
  if (v != want) return Inconsistent(what + " points elsewhere");
  return Status::Ok();
}

Result<uint64_t> CountKeys(rocksdb::DB* db, const rocksdb::ReadOptions& ro, rocksdb::ColumnFamilyHandle* cf) {
  uint64_t n = 0;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro, cf));
  for (it->SeekToFirst(); it->Valid(); it->Next()) ++n;
  RETURN_IF_ERROR(FromRocks(it->status(), "verify"));
  return n;
}

}  // namespace

Status StoreImpl::Verify() const {
  const rocksdb::Snapshot* snap = db_->GetSnapshot();
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  rocksdb::DB* db = db_.get();
  Status result = [&]() -> Status {
    ASSIGN_OR_RETURN(State st, ReadState(snap));
    uint64_t events = 0, recent = 0, max_seq = 0;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro, h_.events));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string id = it->key().ToString();
      auto rec = DecodeRecord(it->value().ToStringView());
      if (!rec.ok()) return rec.status().WithContext("event '" + id + "'");
      auto ev = feedback::ParseEvent(rec->payload);
      if (!ev.ok()) return ev.status().WithContext("event '" + id + "'");
      if (ev->id != id || ev->user_id != rec->user_id || !(ev->time == rec->time)) {
        return Inconsistent("event '" + id + "' record header disagrees with its payload");
      }
      std::string tag = "event '" + id + "': ";
      RETURN_IF_ERROR(Expect(db, ro, h_.by_seq, SeqKey(rec->seq), id, tag + "seq index"));
      RETURN_IF_ERROR(Expect(db, ro, h_.by_time, TimeKey(rec->time, rec->seq), id, tag + "time index"));
      RETURN_IF_ERROR(Expect(db, ro, h_.by_user, UserKey(rec->user_id, rec->seq), id, tag + "user index"));
      ++events;
      max_seq = std::max(max_seq, rec->seq);
      if (rec->seq >= st.grad_ptr) ++recent;
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "verify"));
    it.reset();
    if (events != st.events) {
      return Inconsistent(std::to_string(events) + " events stored, state counts " + std::to_string(st.events));
    }
    if (max_seq >= st.next_seq) return Inconsistent("an event's seq is >= next_seq");
    if (recent != st.recent) {
      return Inconsistent(std::to_string(recent) + " recent events, state counts " + std::to_string(st.recent));
    }
    for (auto* cf : {h_.by_seq, h_.by_time, h_.by_user}) {
      ASSIGN_OR_RETURN(uint64_t n, CountKeys(db, ro, cf));
      if (n != events) {
        return Inconsistent("index " + cf->GetName() + " has " + std::to_string(n) + " entries for " +
                            std::to_string(events) + " events");
      }
    }
    uint64_t slots = 0, members = 0;
    it.reset(db->NewIterator(ro, h_.sampler));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string key = it->key().ToString();
      if (key.size() == 5 && key[0] == kSlotPrefix[0]) {
        ++slots;
        uint32_t slot = DecodeFixed32BE(key.data() + 1);
        uint64_t seq = DecodeFixed64BE(it->value().data());
        if (slot >= st.capacity) return Inconsistent("reservoir slot beyond capacity");
        if (seq >= st.grad_ptr) return Inconsistent("reservoir holds a recent event");
        std::string slot_value;
        PutFixed32BE(&slot_value, slot);
        RETURN_IF_ERROR(
            Expect(db, ro, h_.sampler, MemberKey(seq), slot_value, "reservoir member of slot " + std::to_string(slot)));
        std::string id;
        if (!db->Get(ro, h_.by_seq, SeqKey(seq), &id).ok()) {
          return Inconsistent("reservoir slot " + std::to_string(slot) + " holds a missing event");
        }
      } else if (key.size() == 9 && key[0] == 'm') {
        ++members;
      }
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "verify"));
    if (slots != st.reservoir || members != slots) {
      return Inconsistent(std::to_string(slots) + " slots and " + std::to_string(members) + " members, state counts " +
                          std::to_string(st.reservoir));
    }
    if (st.recent + st.reservoir != st.events) {
      return Inconsistent("recent + reservoir != events (an old event outside the reservoir)");
    }
    return Status::Ok();
  }();
  db_->ReleaseSnapshot(snap);
  return result;
}

}  // namespace attune::replay::internal
