// Insertion and retention: the recent window, the reservoir (Algorithm R,
// Vitter 1985) and eviction by count, bytes and age.
#include "attune/feedback/codec.h"
#include "store_impl.h"

namespace attune::replay::internal {
namespace {

Status Missing(const std::string& what) { return DataLossError("replay store index is inconsistent: " + what); }

}  // namespace

Status StoreImpl::Insert(Txn& txn, PendingAppend& item, int64_t now_seconds) {
  const feedback::Event& ev = item.event;
  int64_t max_age = options_.retention.max_age_seconds;
  if (max_age > 0 && ev.time.seconds < now_seconds - max_age) {
    item.status = FailedPreconditionError("time: " + feedback::FormatTime(ev.time) +
                                          " is older than retention.max_age_seconds (" + std::to_string(max_age) + ")");
    return Status::Ok();
  }
  std::string existing;
  bool found;
  RETURN_IF_ERROR(txn.Get(h_.events, ev.id, &existing, &found));
  if (found) {
    ++txn.state.duplicates;
    item.result = {AppendOutcome::kDuplicate, 0};
    return Status::Ok();
  }
  State& st = txn.state;
  uint64_t seq = st.next_seq++;
  Record r{seq, ev.time, ev.user_id, feedback::SerializeEvent(ev)};
  std::string value = EncodeRecord(r);
  txn.Put(h_.events, ev.id, value);
  txn.Put(h_.by_seq, SeqKey(seq), ev.id);
  txn.Put(h_.by_time, TimeKey(ev.time, seq), ev.id);
  txn.Put(h_.by_user, UserKey(ev.user_id, seq), ev.id);
  ++st.events;
  ++st.recent;
  ++st.appended;
  st.bytes += StoredBytes(ev.id, ev.user_id, value.size());
  item.result = {AppendOutcome::kStored, seq};
  return Status::Ok();
}

Status StoreImpl::EnforceRetention(Txn& txn, int64_t now_seconds) {
  const RetentionOptions& r = options_.retention;
  State& st = txn.state;
  if (r.max_age_seconds > 0 && now_seconds - r.max_age_seconds > st.age_floor) {
    RETURN_IF_ERROR(EvictExpired(txn, now_seconds - r.max_age_seconds));
  }
  if (r.max_events > 0) {
    while (st.recent > r.recent_window) RETURN_IF_ERROR(Graduate(txn));
  }
  while (r.max_bytes > 0 && st.bytes > r.max_bytes && st.events > 0) {
    if (st.reservoir > 0) {
      RETURN_IF_ERROR(EvictRandomMember(txn));
    } else {
      ASSIGN_OR_RETURN(uint64_t seq, OldestRecentSeq(txn));
      RETURN_IF_ERROR(EvictSeq(txn, seq, EvictReason::kBytes));
    }
  }
  return Status::Ok();
}

// Every time key below age_floor is already gone, so the scan starts there
// instead of wading through the tombstones of earlier evictions.
Status StoreImpl::EvictExpired(Txn& txn, int64_t cutoff_seconds) {
  std::vector<uint64_t> seqs;
  {
    auto it = txn.NewIterator(h_.by_time);
    for (it->Seek(TimeKey({txn.state.age_floor, 0}, 0)); it->Valid(); it->Next()) {
      if (it->key().size() != 20) return Missing("malformed time index key");
      if (TimeFromKey(it->key().ToStringView()).seconds >= cutoff_seconds) break;
      seqs.push_back(DecodeFixed64BE(it->key().data() + 12));
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "scan time index"));
  }
  for (uint64_t seq : seqs) RETURN_IF_ERROR(EvictSeq(txn, seq, EvictReason::kAge));
  txn.state.age_floor = cutoff_seconds;
  return Status::Ok();
}

Result<uint64_t> StoreImpl::OldestRecentSeq(Txn& txn) {
  std::string id;
  bool found;
  RETURN_IF_ERROR(txn.Get(h_.by_seq, SeqKey(txn.state.grad_ptr), &id, &found));
  if (found) return txn.state.grad_ptr;
  auto it = txn.NewIterator(h_.by_seq);
  it->Seek(SeqKey(txn.state.grad_ptr));
  RETURN_IF_ERROR(FromRocks(it->status(), "scan seq index"));
  if (!it->Valid()) {
    return Missing(std::to_string(txn.state.recent) +
                   " recent events counted, none at seq >= " + std::to_string(txn.state.grad_ptr));
  }
  return DecodeFixed64BE(it->key().data());
}

// The oldest event leaves the recent window. Algorithm R: the n-th event to
// leave is kept with probability k/n, replacing a uniformly chosen member.
Status StoreImpl::Graduate(Txn& txn) {
  State& st = txn.state;
  ASSIGN_OR_RETURN(uint64_t seq, OldestRecentSeq(txn));
  st.grad_ptr = seq + 1;
  --st.recent;
  uint64_t n = ++st.graduated;
  uint64_t k = st.capacity;
  uint64_t slot;
  if (n <= k) {
    slot = n - 1;
  } else {
    slot = UniformBelow(st.rng, n);
    if (slot >= k) return EvictSeq(txn, seq, EvictReason::kCount);
  }
  std::string occupant;
  bool found;
  RETURN_IF_ERROR(txn.Get(h_.sampler, SlotKey(static_cast<uint32_t>(slot)), &occupant, &found));
  if (found) {
    RETURN_IF_ERROR(EvictSeq(txn, DecodeFixed64BE(occupant.data()), EvictReason::kCount));
  }
  return Place(txn, seq, static_cast<uint32_t>(slot));
}

Status StoreImpl::Place(Txn& txn, uint64_t seq, uint32_t slot) {
  std::string slot_value;
  PutFixed32BE(&slot_value, slot);
  txn.Put(h_.sampler, SlotKey(slot), SeqKey(seq));
  txn.Put(h_.sampler, MemberKey(seq), slot_value);
  ++txn.state.reservoir;
  return Status::Ok();
}

// For max_bytes: a uniformly chosen slot, or the next occupied one after it
// (slots are dense unless forget or earlier byte evictions emptied some).
Status StoreImpl::EvictRandomMember(Txn& txn) {
  uint64_t start = UniformBelow(txn.state.rng, std::max<uint64_t>(txn.state.capacity, 1));
  uint64_t seq = 0;
  bool found = false;
  {
    auto it = txn.NewIterator(h_.sampler);
    for (std::string from : {SlotKey(static_cast<uint32_t>(start)), SlotKey(0)}) {
      it->Seek(from);
      if (it->Valid() && it->key().size() == 5 && it->key()[0] == kSlotPrefix[0]) {
        seq = DecodeFixed64BE(it->value().data());
        found = true;
        break;
      }
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "scan reservoir"));
  }
  if (!found) return Missing("reservoir counted " + std::to_string(txn.state.reservoir) + " members, found none");
  return EvictSeq(txn, seq, EvictReason::kBytes);
}

Status StoreImpl::EvictSeq(Txn& txn, uint64_t seq, EvictReason reason) {
  std::string id, value;
  bool found;
  RETURN_IF_ERROR(txn.Get(h_.by_seq, SeqKey(seq), &id, &found));
  if (!found) return Missing("seq " + std::to_string(seq) + " is not in the seq index");
  RETURN_IF_ERROR(txn.Get(h_.events, id, &value, &found));
  if (!found) return Missing("event '" + id + "' (seq " + std::to_string(seq) + ") is missing");
  ASSIGN_OR_RETURN(Record rec, DecodeRecord(value));
  RETURN_IF_ERROR(RemoveEvent(txn, id, rec, value.size(), /*keep_user_index=*/false));
  State& st = txn.state;
  switch (reason) {
    case EvictReason::kCount:
      ++st.evicted_count;
      break;
    case EvictReason::kBytes:
      ++st.evicted_bytes;
      break;
    case EvictReason::kAge:
      ++st.evicted_age;
      break;
    case EvictReason::kForget:
      ++st.forgotten;
      break;
  }
  return Status::Ok();
}

Status StoreImpl::RemoveEvent(Txn& txn, const std::string& id, const Record& rec, size_t value_size,
                              bool keep_user_index) {
  State& st = txn.state;
  bool found;
  txn.Delete(h_.events, id);
  txn.Delete(h_.meta, QuarantineKey(id));  // erased or evicted: no longer held back
  txn.Delete(h_.by_seq, SeqKey(rec.seq));
  txn.Delete(h_.by_time, TimeKey(rec.time, rec.seq));
  if (!keep_user_index) txn.Delete(h_.by_user, UserKey(rec.user_id, rec.seq));
  --st.events;
  st.bytes -= std::min<uint64_t>(st.bytes, StoredBytes(id, rec.user_id, value_size));
  if (rec.seq >= st.grad_ptr) {
    --st.recent;
    return Status::Ok();
  }
  std::string slot;
  RETURN_IF_ERROR(txn.Get(h_.sampler, MemberKey(rec.seq), &slot, &found));
  if (found) {
    txn.Delete(h_.sampler, SlotKey(DecodeFixed32BE(slot.data())));
    txn.Delete(h_.sampler, MemberKey(rec.seq));
    --st.reservoir;
  }
  return Status::Ok();
}

}  // namespace attune::replay::internal
