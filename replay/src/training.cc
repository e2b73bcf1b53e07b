// Sampling for training and the atomic cursor + lineage commit.
#include <algorithm>
#include <cmath>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "store_impl.h"

namespace attune::replay::internal {
namespace {

Status CheckVersion(const std::string& v) {
  if (v.empty() || v.size() > 128) {
    return InvalidArgumentError("adapter_version: must be 1..128 bytes, got " + std::to_string(v.size()));
  }
  for (char c : v) {
    if (c < 0x21 || c > 0x7e) {
      return InvalidArgumentError("adapter_version: '" + v + "' is not printable ASCII without spaces");
    }
  }
  return Status::Ok();
}

// The quarantined event ids (a rejected window's new events), read in one
// scan per Sample: few events are quarantined, and the draw and the
// filtering of the batch ask about every event.
Result<std::unordered_set<std::string>> ReadQuarantined(rocksdb::DB* db, const Handles& h,
                                                        const rocksdb::ReadOptions& ro) {
  std::unordered_set<std::string> out;
  const std::string prefix(kQuarantinePrefix);
  std::unique_ptr<rocksdb::Iterator> q(db->NewIterator(ro, h.meta));
  for (q->Seek(prefix); q->Valid() && q->key().starts_with(prefix); q->Next()) {
    out.insert(std::string(q->key().ToStringView().substr(prefix.size())));
  }
  RETURN_IF_ERROR(FromRocks(q->status(), "scan quarantine"));
  return out;
}

// Draws old events without replacement. The candidates are the reservoir
// slots [0, k) and the recent seqs [grad_ptr, cursor].
//
// While they number at most kCoverageLimit and the window replays fewer
// than exist, the draw lists them and takes the least recently trained
// first (the last window whose lineage holds the event, by that version's
// cursor, windows the gate rejected left out; never trained comes first;
// ties in a seeded random order), so
// that every old event is replayed once before any is replayed twice. A
// uniform draw of r from n old events leaves each one out of a window with
// probability 1 - r/n, so some fall out of many windows in a row while
// others repeat.
//
// Otherwise the draw is uniform: both ranges are dense, so rejection
// sampling over their union needs few retries. Holes (emptied slots, erased
// seqs, members newer than the cursor) are rejected, which keeps the draw
// uniform over the events that exist.
class ReplayDraw {
 public:
  // `quarantined`: the ids Sample read in its snapshot; they are not drawn
  // by the least-recently-trained order.
  ReplayDraw(rocksdb::DB* db, const Handles& h, const rocksdb::ReadOptions& ro, const State& st, uint64_t cursor,
             uint64_t seed, const std::unordered_set<std::string>& quarantined)
      : db_(db),
        h_(h),
        ro_(ro),
        quarantined_(quarantined),
        k_(st.capacity),
        lo_(st.grad_ptr),
        cursor_(cursor),
        rng_(seed ^ 0x7265706c61790000ull) {
    recent_ = cursor >= lo_ ? cursor - lo_ + 1 : 0;
  }

  // Old events up to which the draw lists them all to replay the least
  // recently trained first (a few point lookups each: 0.4 s for 90,000 on a
  // 2-core VM, docs/replay.md); above it the draw is uniform, in time
  // independent of the store's size.
  static constexpr uint64_t kCoverageLimit = 100000;

  Result<std::vector<uint64_t>> Draw(size_t target) {
    std::vector<uint64_t> picked;
    std::unordered_set<uint64_t> seen;
    uint64_t space = k_ + recent_;
    if (space == 0 || target == 0) return picked;
    if (space <= kCoverageLimit) {
      ASSIGN_OR_RETURN(std::vector<uint64_t> all, List());
      // Fewer than exist: which ones matters. (All of them: the uniform
      // draw below takes every one, in the order it always has.)
      if (all.size() > target) return LeastRecentlyTrained(std::move(all), target);
    }
    for (size_t attempt = 0; picked.size() < target && attempt < 16 * target + 64; ++attempt) {
      ASSIGN_OR_RETURN(uint64_t seq, Candidate(UniformBelow(rng_, space)));
      if (seq != 0 && seen.insert(seq).second) picked.push_back(seq);
    }
    if (picked.size() < target) RETURN_IF_ERROR(Enumerate(target, &picked, &seen));
    return picked;
  }

 private:
  // The seq behind candidate x, or 0 for a hole.
  Result<uint64_t> Candidate(uint64_t x) {
    uint64_t seq;
    std::string v;
    if (x < k_) {
      auto s = db_->Get(ro_, h_.sampler, SlotKey(static_cast<uint32_t>(x)), &v);
      if (s.IsNotFound()) return uint64_t{0};
      RETURN_IF_ERROR(FromRocks(s, "read reservoir slot"));
      seq = DecodeFixed64BE(v.data());
      return seq <= cursor_ ? seq : 0;
    }
    seq = lo_ + (x - k_);
    auto s = db_->Get(ro_, h_.by_seq, SeqKey(seq), &v);
    if (s.IsNotFound()) return uint64_t{0};
    RETURN_IF_ERROR(FromRocks(s, "read seq index"));
    return seq;
  }

  // Every old event's seq, sorted (listed once per draw).
  Result<std::vector<uint64_t>> List() {
    if (listed_) return *listed_;
    std::vector<uint64_t> all;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro_, h_.sampler));
    for (it->Seek(SlotKey(0)); it->Valid(); it->Next()) {
      if (it->key().size() != 5 || it->key()[0] != kSlotPrefix[0]) break;
      uint64_t seq = DecodeFixed64BE(it->value().data());
      if (seq <= cursor_) all.push_back(seq);
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "scan reservoir"));
    it.reset(db_->NewIterator(ro_, h_.by_seq));
    for (it->Seek(SeqKey(lo_)); it->Valid(); it->Next()) {
      uint64_t seq = DecodeFixed64BE(it->key().data());
      if (seq > cursor_) break;
      all.push_back(seq);
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "scan seq index"));
    std::sort(all.begin(), all.end());
    listed_ = all;
    return all;
  }

  void Shuffle(std::vector<uint64_t>* v) {
    for (size_t i = v->size(); i > 1; --i) {  // Fisher-Yates
      std::swap((*v)[i - 1], (*v)[UniformBelow(rng_, i)]);
    }
  }

  // Few candidates exist (a sparse or small store): list them all and take
  // a seeded shuffle's prefix.
  Status Enumerate(size_t target, std::vector<uint64_t>* picked, std::unordered_set<uint64_t>* seen) {
    ASSIGN_OR_RETURN(std::vector<uint64_t> all, List());
    Shuffle(&all);
    for (uint64_t seq : all) {
      if (picked->size() >= target) break;
      if (seen->insert(seq).second) picked->push_back(seq);
    }
    return Status::Ok();
  }

  // The `target` events of `all` trained on least recently. Quarantined
  // events are left out here: never trained, they would come first in
  // every window and take replay slots that Sample then empties.
  Result<std::vector<uint64_t>> LeastRecentlyTrained(std::vector<uint64_t> all, size_t target) {
    Shuffle(&all);
    std::vector<std::pair<uint64_t, uint64_t>> keyed;  // (last trained, seq)
    keyed.reserve(all.size());
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro_, h_.lineage));
    std::unordered_map<std::string, uint64_t> version_cursor;
    ASSIGN_OR_RETURN(const auto rejected, RejectedVersions());
    std::string id, v;
    for (uint64_t seq : all) {
      RETURN_IF_ERROR(FromRocks(db_->Get(ro_, h_.by_seq, SeqKey(seq), &id), "read seq " + std::to_string(seq)));
      if (quarantined_.count(id)) continue;
      uint64_t last = 0;
      const std::string prefix = LineageEventPrefix(id);
      for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
        const std::string version = it->key().ToString().substr(prefix.size());
        auto [at, fresh] = version_cursor.try_emplace(version, 0);
        if (fresh && !rejected.count(version)) {
          // A record that is gone or does not decode counts as never
          // trained: the order is a preference, and a damaged lineage
          // record must not stop training.
          auto r = db_->Get(ro_, h_.lineage, VersionRecordKey(version), &v);
          if (r.ok()) {
            auto vr = DecodeVersionRecord(v);
            if (vr.ok()) at->second = vr->last_cursor;
          } else if (!r.IsNotFound()) {
            RETURN_IF_ERROR(FromRocks(r, "read version record"));
          }
        }
        last = std::max(last, at->second);
      }
      RETURN_IF_ERROR(FromRocks(it->status(), "scan lineage"));
      keyed.emplace_back(last, seq);
    }
    std::stable_sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<uint64_t> picked;
    for (size_t i = 0; i < keyed.size() && i < target; ++i) picked.push_back(keyed[i].second);
    return picked;
  }

  // The versions whose window the gate rejected: their lineage holds a
  // quarantined event (a rejected window's new events stay quarantined until
  // a forced promotion releases them). No served adapter learned what they
  // replayed, so that training does not count.
  Result<std::unordered_set<std::string>> RejectedVersions() {
    std::unordered_set<std::string> out;
    std::unique_ptr<rocksdb::Iterator> l(db_->NewIterator(ro_, h_.lineage));
    for (const std::string& id : quarantined_) {
      const std::string prefix = LineageEventPrefix(id);
      for (l->Seek(prefix); l->Valid() && l->key().starts_with(prefix); l->Next()) {
        out.insert(l->key().ToString().substr(prefix.size()));
      }
      RETURN_IF_ERROR(FromRocks(l->status(), "scan lineage"));
    }
    return out;
  }

  rocksdb::DB* db_;
  const Handles& h_;
  const rocksdb::ReadOptions& ro_;
  const std::unordered_set<std::string>& quarantined_;
  uint64_t k_, lo_, cursor_, recent_;
  uint64_t rng_;
  std::optional<std::vector<uint64_t>> listed_;
};

}  // namespace

Result<SampleBatch> StoreImpl::Sample(const SampleOptions& options) const {
  if (!(options.replay_ratio >= 0.0) || !std::isfinite(options.replay_ratio)) {
    return InvalidArgumentError("replay_ratio must be a finite number >= 0");
  }
  const rocksdb::Snapshot* snap = db_->GetSnapshot();
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  auto result = [&]() -> Result<SampleBatch> {
    ASSIGN_OR_RETURN(State st, ReadState(snap));
    uint64_t cursor = options.after.value_or(st.cursor);
    if (cursor < st.cursor) {
      return InvalidArgumentError("after (" + std::to_string(cursor) + ") is below the training cursor (" +
                                  std::to_string(st.cursor) + ")");
    }
    SampleBatch batch;
    batch.cursor_before = batch.cursor_after = cursor;
    std::vector<uint64_t> fresh;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, h_.by_seq));
    for (it->Seek(SeqKey(cursor + 1)); it->Valid() && fresh.size() < options.max_new; it->Next()) {
      fresh.push_back(DecodeFixed64BE(it->key().data()));
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "scan new events"));
    it.reset();
    if (!fresh.empty()) batch.cursor_after = fresh.back();
    ASSIGN_OR_RETURN(batch.new_events, ReadEvents(ro, fresh));
    auto target = std::max(static_cast<size_t>(std::llround(options.replay_ratio * fresh.size())), options.min_replay);
    // Quarantined events (a rejected window's) are neither new nor replayed.
    ASSIGN_OR_RETURN(const auto quarantined, ReadQuarantined(db_.get(), h_, ro));
    ReplayDraw draw(db_.get(), h_, ro, st, cursor, options.seed, quarantined);
    ASSIGN_OR_RETURN(auto old, draw.Draw(target));
    ASSIGN_OR_RETURN(batch.replay_events, ReadEvents(ro, old));
    for (auto* events : {&batch.new_events, &batch.replay_events}) {
      std::erase_if(*events, [&](const StoredEvent& e) { return quarantined.count(e.event.id) > 0; });
    }
    return batch;
  }();
  db_->ReleaseSnapshot(snap);
  return result;
}

Result<TrainingRecordResult> StoreImpl::RecordTraining(const TrainingRecord& record) {
  RETURN_IF_ERROR(CheckVersion(record.adapter_version));
  TrainingRecordResult out;
  RETURN_IF_ERROR(WriteAlone([&](Txn& txn) -> Status {
    State& st = txn.state;
    if (st.cursor != record.expected_cursor) {
      return AbortedError("training cursor is " + std::to_string(st.cursor) + ", expected " +
                          std::to_string(record.expected_cursor) + " (another trainer committed first; sample again)");
    }
    if (record.new_cursor < record.expected_cursor || record.new_cursor >= st.next_seq) {
      return InvalidArgumentError("new_cursor " + std::to_string(record.new_cursor) + " is outside [" +
                                  std::to_string(record.expected_cursor) + ", " + std::to_string(st.next_seq - 1) +
                                  "]");
    }
    const std::string& v = record.adapter_version;
    VersionRecord vr;
    std::string value;
    bool found;
    RETURN_IF_ERROR(txn.Get(h_.lineage, VersionRecordKey(v), &value, &found));
    if (found) {
      ASSIGN_OR_RETURN(vr, DecodeVersionRecord(value));
    } else {
      ++st.versions;
    }
    std::set<std::string> ids(record.event_ids.begin(), record.event_ids.end());
    for (const std::string& id : ids) {
      RETURN_IF_ERROR(txn.Get(h_.events, id, &value, &found));
      if (!found) {
        ++out.events_missing;
        continue;
      }
      ASSIGN_OR_RETURN(Record rec, DecodeRecord(value));
      txn.Put(h_.lineage, LineageEventKey(id, v), "");
      txn.Put(h_.lineage, LineageVersionKey(v, id), "");
      txn.Put(h_.lineage, LineageUserKey(rec.user_id, v), "");
      ++out.events_recorded;
    }
    ++vr.commits;
    vr.events += out.events_recorded;
    vr.missing += out.events_missing;
    vr.last_cursor = record.new_cursor;
    txn.Put(h_.lineage, VersionRecordKey(v), EncodeVersionRecord(vr));
    st.cursor = record.new_cursor;
    return Status::Ok();
  }));
  return out;
}

}  // namespace attune::replay::internal
