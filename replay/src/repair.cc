// RepairStore (repair.h): back up, rocksdb::RepairDB, then rebuild what the
// store derives from its events (indexes, reservoir, counters).
#include "attune/replay/repair.h"

#include <rocksdb/db.h>

#include <ctime>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <system_error>

#include "attune/core/file.h"
#include "attune/feedback/codec.h"
#include "attune/replay/store.h"
#include "open_check.h"
#include "store_impl.h"

namespace attune::replay {
namespace {

namespace fs = std::filesystem;
using internal::DecodeFixed32BE;
using internal::DecodeFixed64BE;
using internal::State;

std::string UtcStamp() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

// Copies `dir` next to itself before anything touches it.
Result<std::string> Backup(const std::string& dir) {
  std::string target = dir + ".damaged-" + UtcStamp();
  for (int i = 1; PathExists(target); ++i) target = dir + ".damaged-" + UtcStamp() + "-" + std::to_string(i);
  std::error_code ec;
  fs::copy(dir, target, fs::copy_options::recursive, ec);
  if (ec) {
    fs::remove_all(target, ec);
    return IoError("cannot back up replay store '" + dir + "' to '" + target + "': " + ec.message() +
                   " (nothing was changed)");
  }
  RETURN_IF_ERROR(SyncDir(fs::path(target).parent_path().string()));
  return target;
}

std::set<std::string> ListDir(const std::string& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.insert(e.path().filename().string());
  return out;
}

// A raw handle on the repaired RocksDB with every family of the store.
struct RawDb {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs;
  internal::Handles h;
  ~RawDb() {
    for (auto* cf : cfs) db->DestroyColumnFamilyHandle(cf).PermitUncheckedError();
    if (db) db->Close().PermitUncheckedError();
  }
};

std::vector<rocksdb::ColumnFamilyDescriptor> Descriptors(const internal::RocksSetup& setup) {
  std::vector<rocksdb::ColumnFamilyDescriptor> descs = {{rocksdb::kDefaultColumnFamilyName, setup.index_cf}};
  for (const auto& n : internal::ColumnFamilyNames()) {
    descs.emplace_back(n, n == "events" ? setup.events_cf : setup.index_cf);
  }
  return descs;
}

Status OpenRaw(const internal::RocksSetup& setup, const std::string& dir, RawDb& raw) {
  rocksdb::DB* db = nullptr;
  auto s = rocksdb::DB::Open(setup.db, dir, Descriptors(setup), &raw.cfs, &db);
  if (!s.ok()) return internal::OpenError(s, dir);
  raw.db.reset(db);
  raw.h = {db, raw.cfs[0], raw.cfs[1], raw.cfs[2], raw.cfs[3], raw.cfs[4], raw.cfs[5], raw.cfs[6]};
  return Status::Ok();
}

struct Survivor {
  std::string id;
  internal::Record record;
  size_t value_size = 0;
};

// Everything the rebuild needs, read before anything is written.
struct Salvage {
  std::map<uint64_t, Survivor> by_seq;
  std::map<uint32_t, uint64_t> slots;   // reservoir slot -> seq, as stored
  std::vector<std::string> bad_ids;     // records that do not decode
  std::vector<std::string> orphan_ids;  // seq index entries without an event
  std::optional<State> state;
  bool has_format = false;
  uint64_t versions = 0;
};

Status Read(const internal::Handles& h, Salvage& out) {
  rocksdb::ReadOptions ro;
  std::string v;
  out.has_format = h.db->Get(ro, h.meta, "format_version", &v).ok();
  if (h.db->Get(ro, h.sampler, std::string(internal::kStateKey), &v).ok()) {
    auto st = internal::DecodeState(v);
    if (st.ok()) out.state = *st;
  }
  std::unique_ptr<rocksdb::Iterator> it(h.db->NewIterator(ro, h.events));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string id = it->key().ToString();
    auto rec = internal::DecodeRecord(it->value().ToStringView());
    bool good = rec.ok() && feedback::ParseEvent(rec->payload).ok() && rec->seq > 0 && !out.by_seq.count(rec->seq);
    if (!good) {
      out.bad_ids.push_back(id);
      continue;
    }
    out.by_seq[rec->seq] = Survivor{id, std::move(rec).value(), it->value().size()};
  }
  RETURN_IF_ERROR(internal::FromRocks(it->status(), "read events"));
  it.reset(h.db->NewIterator(ro, h.by_seq));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() != 8) continue;
    uint64_t seq = DecodeFixed64BE(it->key().data());
    auto found = out.by_seq.find(seq);
    if (found == out.by_seq.end() || found->second.id != it->value().ToString()) {
      out.orphan_ids.push_back(it->value().ToString());
    }
  }
  RETURN_IF_ERROR(internal::FromRocks(it->status(), "read seq index"));
  it.reset(h.db->NewIterator(ro, h.sampler));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() == 5 && it->key()[0] == internal::kSlotPrefix[0] && it->value().size() == 8) {
      out.slots[DecodeFixed32BE(it->key().data() + 1)] = DecodeFixed64BE(it->value().data());
    }
  }
  RETURN_IF_ERROR(internal::FromRocks(it->status(), "read reservoir"));
  it.reset(h.db->NewIterator(ro, h.lineage));
  const std::string prefix(internal::kVersionRecordPrefix);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) ++out.versions;
  return internal::FromRocks(it->status(), "read lineage");
}

void ClearFamily(rocksdb::WriteBatch& b, rocksdb::ColumnFamilyHandle* cf) {
  // Every key of these families is shorter than 0xff repeated.
  b.DeleteRange(cf, "", std::string(300, '\xff')).PermitUncheckedError();
}

// Rewrites indexes, reservoir and counters from the surviving events in
// one atomic, synced write.
Status Rebuild(const Options& options, const internal::Handles& h, const Salvage& s) {
  State st;
  if (s.state) {
    st = *s.state;
  } else {
    st.rng = options.retention.reservoir_seed;
    if (st.rng == 0) st.rng = (uint64_t{std::random_device{}()} << 32) | std::random_device{}();
    st.capacity =
        options.retention.max_events == 0 ? 0 : options.retention.max_events - options.retention.recent_window;
    // Without the counters nothing says which events left the recent
    // window: keep them all recent, the next append graduates the excess.
    st.grad_ptr = 1;
  }
  rocksdb::WriteBatch b;
  for (auto* cf : {h.by_seq, h.by_time, h.by_user}) ClearFamily(b, cf);
  b.DeleteRange(h.sampler, std::string(internal::kSlotPrefix), "t").PermitUncheckedError();
  b.DeleteRange(h.sampler, "m", "n").PermitUncheckedError();
  for (const auto& id : s.bad_ids) b.Delete(h.events, id).PermitUncheckedError();
  st.events = st.bytes = st.recent = st.reservoir = 0;
  std::set<uint32_t> used;
  std::vector<uint64_t> unplaced;
  std::map<uint64_t, uint32_t> slot_of;
  for (const auto& [slot, seq] : s.slots) {
    if ((st.capacity == 0 || slot < st.capacity) && seq < st.grad_ptr && s.by_seq.count(seq) && !slot_of.count(seq)) {
      slot_of[seq] = slot;
      used.insert(slot);
    }
  }
  for (const auto& [seq, ev] : s.by_seq) {
    const internal::Record& r = ev.record;
    b.Put(h.by_seq, internal::SeqKey(seq), ev.id).PermitUncheckedError();
    b.Put(h.by_time, internal::TimeKey(r.time, seq), ev.id).PermitUncheckedError();
    b.Put(h.by_user, internal::UserKey(r.user_id, seq), ev.id).PermitUncheckedError();
    ++st.events;
    st.bytes += internal::StoredBytes(ev.id, r.user_id, ev.value_size);
    st.next_seq = std::max(st.next_seq, seq + 1);
    if (seq >= st.grad_ptr) {
      ++st.recent;
    } else if (!slot_of.count(seq)) {
      unplaced.push_back(seq);
    }
  }
  // Old events that lost their slot take free ones.
  uint32_t next_free = 0;
  for (uint64_t seq : unplaced) {
    while (used.count(next_free)) ++next_free;
    if (st.capacity != 0 && next_free >= st.capacity) {
      return DataLossError("cannot rebuild the reservoir: more old events than slots");
    }
    slot_of[seq] = next_free;
    used.insert(next_free);
  }
  for (const auto& [seq, slot] : slot_of) {
    std::string slot_value;
    internal::PutFixed32BE(&slot_value, slot);
    b.Put(h.sampler, internal::SlotKey(slot), internal::SeqKey(seq)).PermitUncheckedError();
    b.Put(h.sampler, internal::MemberKey(seq), slot_value).PermitUncheckedError();
    ++st.reservoir;
  }
  st.graduated = std::max(st.graduated, st.reservoir);
  st.cursor = std::min(st.cursor, st.next_seq - 1);
  st.versions = s.versions;
  b.Put(h.meta, "format_version", std::to_string(kStoreFormatVersion)).PermitUncheckedError();
  b.Put(h.sampler, std::string(internal::kStateKey), internal::EncodeState(st)).PermitUncheckedError();
  rocksdb::WriteOptions wo;
  wo.sync = true;
  RETURN_IF_ERROR(internal::FromRocks(h.db->Write(wo, &b), "write the rebuilt indexes"));
  rocksdb::FlushOptions fo;
  return internal::FromRocks(h.db->Flush(fo, std::vector<rocksdb::ColumnFamilyHandle*>{}), "flush");
}

// The open-and-verify that decides whether a repair is needed.
Status Healthy(const Options& options, const std::string& dir) {
  Options o = options;
  o.create_if_missing = false;
  ASSIGN_OR_RETURN(auto store, Store::Open(o, dir));
  return store->Verify();
}

}  // namespace

Result<RepairReport> RepairStore(const Options& options, const std::string& dir) {
  ASSIGN_OR_RETURN(internal::DirScan scan, internal::ScanStoreDir(dir));
  if (scan.state == internal::DirState::kAbsent || scan.state == internal::DirState::kEmpty) {
    return NotFoundError("no replay store at '" + dir + "'");
  }
  // Nothing was ever stored there, and the next write starts the creation
  // over: there is nothing to rebuild or back up.
  if (scan.creation_cut_short) {
    return NotFoundError("no replay store at '" + dir +
                         "': only the start of a creation that was cut short, before anything was stored (the next "
                         "write creates the store anew)");
  }
  RepairReport report;
  Status health = Healthy(options, dir);
  if (health.ok()) return report;
  // Not damage: another process has the store, or the OS said no.
  if (health.code() == StatusCode::kUnavailable || health.code() == StatusCode::kIoError ||
      health.code() == StatusCode::kInvalidArgument || health.code() == StatusCode::kFailedPrecondition) {
    return health;
  }
  report.needed = true;
  report.damage = health.message();
  ASSIGN_OR_RETURN(report.backup_dir, Backup(dir));
  const std::set<std::string> lost_before = ListDir(dir + "/lost");
  internal::RocksSetup setup = internal::MakeRocksSetup(options.memory, /*create_if_missing=*/false);
  auto s = rocksdb::RepairDB(dir, setup.db, Descriptors(setup), setup.index_cf);
  if (!s.ok()) return internal::FromRocks(s, "repair replay store '" + dir + "' (backup in " + report.backup_dir + ")");
  for (const auto& f : ListDir(dir + "/lost")) {
    if (!lost_before.count(f)) report.set_aside_files.push_back(dir + "/lost/" + f);
  }
  Salvage salvage;
  {
    RawDb raw;
    RETURN_IF_ERROR(OpenRaw(setup, dir, raw));
    RETURN_IF_ERROR(Read(raw.h, salvage));
    if (!salvage.has_format && salvage.by_seq.empty()) {
      return DataLossError("replay store '" + dir + "': no events could be recovered (backup in " + report.backup_dir +
                           ")");
    }
    RETURN_IF_ERROR(Rebuild(options, raw.h, salvage));
  }
  report.events_recovered = salvage.by_seq.size();
  report.last_seq = salvage.by_seq.empty() ? 0 : salvage.by_seq.rbegin()->first;
  // Events after damage in a log leave no trace: the counters that survive
  // are those of the last write before the damage.
  const bool log_damage = report.damage.find(".log") != std::string::npos;
  if (salvage.state && !log_damage) {
    report.events_known = true;
    report.events_before = salvage.state->events;
  }
  report.lost_event_ids = salvage.bad_ids;
  for (const auto& id : salvage.orphan_ids) report.lost_event_ids.push_back(id);
  Status after = Healthy(options, dir);
  if (!after.ok()) {
    return DataLossError("replay store '" + dir + "' still does not verify after repair: " + after.message() +
                         " (backup in " + report.backup_dir + ")");
  }
  return report;
}

}  // namespace attune::replay
