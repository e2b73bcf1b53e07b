#include "store_impl.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

#include "attune/core/file.h"
#include "attune/feedback/codec.h"
#include "attune/feedback/validate.h"
#include "open_check.h"

namespace attune::replay {

Result<std::unique_ptr<Store>> Store::Open(const Options& options, const std::string& path) {
  return internal::StoreImpl::Open(options, path);
}

namespace internal {
namespace {

constexpr std::string_view kFormatKey = "format_version";

uint64_t Capacity(const RetentionOptions& r) { return r.max_events == 0 ? 0 : r.max_events - r.recent_window; }

}  // namespace

StoreImpl::StoreImpl(const Options& options, std::string path) : options_(options), path_(std::move(path)) {}

StoreImpl::~StoreImpl() {
  if (!db_) return;
  // Leave the data in checksummed, MANIFEST-listed tables rather than in
  // the write-ahead log: damage to a log cannot always be told from a crash
  // in mid-write, damage to a table always can.
  bool write_failed;
  {
    std::lock_guard<std::mutex> l(mu_);
    write_failed = !write_failed_.ok();
  }
  if (!options_.read_only && !write_failed) {
    rocksdb::FlushOptions fo;
    fo.wait = true;
    db_->Flush(fo, cf_handles_).PermitUncheckedError();
  }
  for (auto* cf : cf_handles_) db_->DestroyColumnFamilyHandle(cf).PermitUncheckedError();
  db_->Close().PermitUncheckedError();
}

// Whether another process holds RocksDB's lock on the store (a POSIX record
// lock on <store>/LOCK; F_GETLK does not see this process's own locks).
bool LockedByAnotherProcess(const std::string& store_path) {
  const int fd = ::open((store_path + "/LOCK").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  const bool locked = ::fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
  ::close(fd);
  return locked;
}

// An exclusive flock on "<store>.creating", held while a store is created.
class CreationLock {
 public:
  CreationLock() = default;
  CreationLock(const CreationLock&) = delete;
  CreationLock& operator=(const CreationLock&) = delete;
  ~CreationLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock
  }
  Status Acquire(const std::string& store_path) {
    const std::string parent = store_path.find('/') == std::string::npos ? "." : store_path.substr(0, store_path.rfind('/'));
    if (!parent.empty()) RETURN_IF_ERROR(MakeDirs(parent));
    const std::string lock = store_path + ".creating";
    fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) return IoError("cannot open '" + lock + "': " + std::strerror(errno));
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) return IoError("cannot lock '" + lock + "': " + std::strerror(errno));
    }
    return Status::Ok();
  }

 private:
  int fd_ = -1;
};

Result<std::unique_ptr<Store>> StoreImpl::Open(const Options& options, const std::string& path) {
  const RetentionOptions& r = options.retention;
  if (r.max_events > 0 && r.recent_window >= r.max_events) {
    return InvalidArgumentError("retention.recent_window (" + std::to_string(r.recent_window) +
                                ") must be below retention.max_events (" + std::to_string(r.max_events) + ")");
  }
  if (r.max_age_seconds < 0) return InvalidArgumentError("retention.max_age_seconds is negative");
  if (options.max_group_bytes == 0) return InvalidArgumentError("max_group_bytes is 0");
  // A store that may be being created (absent, or not whole yet) is opened
  // under a lock next to it, which its creator holds until it is
  // initialised: a second process waits for it instead of seeing half a store
  // and calling it damaged.
  CreationLock creating;
  if (!options.read_only && options.create_if_missing) {
    auto dir = ScanStoreDir(path);
    if (dir.ok() && (dir->state != DirState::kStore || !dir->has_log)) {
      RETURN_IF_ERROR(creating.Acquire(path));
      // Under the lock, so not another process's creation in progress: a
      // creation killed before the store's first log held nothing, and is
      // started over. (Looked at again: the lock's holder may have finished.)
      auto again = ScanStoreDir(path);
      if (again.ok() && again->creation_cut_short) {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
        if (ec) return IoError("replay store '" + path + "': cannot remove an unfinished creation: " + ec.message());
      }
    }
  }
  // In use by another process (RocksDB's LOCK is held): say so at once. A
  // read-only look at a store another process is writing can catch it
  // between a log switch and its MANIFEST edit and take that for damage.
  if (!options.read_only && LockedByAnotherProcess(path)) {
    return UnavailableError("replay store '" + path +
                            "' is in use by another process (its LOCK is held); retry when that process exits, or "
                            "open it read-only");
  }
  // A writable open of a damaged store may get far enough to write (RocksDB
  // flushes what it recovered from the log, then finds a family missing).
  // Looking read-only first means a failing open changes nothing.
  if (!options.read_only && PathExists(path + "/CURRENT")) {
    Options look = options;
    look.read_only = true;
    auto probe = Open(look, path);
    // NotFound: created but never initialised (a crash while creating).
    if (!probe.ok() && probe.status().code() != StatusCode::kNotFound) return probe.status();
  }
  std::unique_ptr<StoreImpl> store(new StoreImpl(options, path));
  RETURN_IF_ERROR(store->OpenDb());
  RETURN_IF_ERROR(store->LoadOrInitialize());
  if (!options.read_only) RETURN_IF_ERROR(store->ReconcileCapacity());
  return std::unique_ptr<Store>(std::move(store));
}

// True when the store on disk was never initialised: no format version and
// no event (its creation stopped early, or another process is creating it
// now), so nothing was ever stored in it. False when it cannot tell (a
// damaged store: the open reports what is wrong).
bool StoreImpl::NeverInitialised() const {
  const RocksSetup local = MakeRocksSetup(options_.memory, /*create_if_missing=*/false);
  std::vector<std::string> families;
  if (!rocksdb::DB::ListColumnFamilies(local.db, path_, &families).ok()) return false;
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (const auto& n : families) descs.emplace_back(n, local.index_cf);
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  if (!rocksdb::DB::OpenForReadOnly(local.db, path_, descs, &handles, &raw).ok()) return false;
  std::unique_ptr<rocksdb::DB> db(raw);
  bool initialised = false;
  for (size_t i = 0; i < families.size(); ++i) {
    if (families[i] == rocksdb::kDefaultColumnFamilyName) {
      std::string format;
      initialised = initialised || !db->Get(rocksdb::ReadOptions(), handles[i], std::string(kFormatKey), &format).IsNotFound();
    } else if (families[i] == "events") {
      std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), handles[i]));
      it->SeekToFirst();
      initialised = initialised || it->Valid() || !it->status().ok();
    }
  }
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  return !initialised;
}

Status StoreImpl::OpenDb() {
  ASSIGN_OR_RETURN(DirScan scan, ScanStoreDir(path_));
  const DirState dir = scan.state;
  // (A writable open has started such a creation over already.)
  if (scan.creation_cut_short) return NotFoundError("replay store '" + path_ + "' was never finished being created");
  // Files without a CURRENT are a damaged store (or someone else's folder).
  // RocksDB would write a new, empty store over them, so never open them.
  if (dir == DirState::kDamaged) {
    return DataLossError("replay store '" + path_ +
                         "' holds files but no CURRENT file: it is damaged, or not a replay store; left untouched "
                         "(hint: `attune feedback repair` rebuilds it and keeps a copy of the damaged one)");
  }
  const bool exists = dir == DirState::kStore;
  // RocksDB would start a new log and lose whatever the deleted one held.
  if (exists && !scan.has_log) {
    return DataLossError("replay store '" + path_ +
                         "' has no write-ahead log (*.log): it was deleted, with any events only it held; left "
                         "untouched (hint: `attune feedback repair` rebuilds the store from what is left)");
  }
  if (!exists && (!options_.create_if_missing || options_.read_only)) {
    return NotFoundError("replay store '" + path_ + "' does not exist");
  }
  if (!exists) RETURN_IF_ERROR(MakeDirs(path_));
  // Only a new store is created: an existing one that lost CURRENT between
  // the probe and here must fail, not be replaced.
  setup_ = MakeRocksSetup(options_.memory, /*create_if_missing=*/!exists);
  // An existing store has every family; one missing means a damaged
  // MANIFEST, and creating it afresh would hide the loss.
  setup_.db.create_missing_column_families = !exists;
  std::vector<std::string> names;
  if (exists) {
    auto s = rocksdb::DB::ListColumnFamilies(setup_.db, path_, &names);
    if (!s.ok()) return OpenError(s, path_);
    bool missing = false;
    for (const auto& n : ColumnFamilyNames()) missing = missing || std::find(names.begin(), names.end(), n) == names.end();
    if (missing && NeverInitialised()) {
      // Killed while creating it (or another process is creating it now):
      // nothing was ever stored, so finishing the creation loses nothing.
      if (options_.read_only) return NotFoundError("replay store '" + path_ + "' was never finished being created");
      setup_.db.create_missing_column_families = true;
    }
  }
  // Open every family on disk (a newer build may have added some) plus ours.
  std::vector<std::string> wanted = {rocksdb::kDefaultColumnFamilyName};
  for (const auto& n : ColumnFamilyNames()) wanted.push_back(n);
  for (const auto& n : names) {
    if (std::find(wanted.begin(), wanted.end(), n) == wanted.end()) wanted.push_back(n);
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (const auto& n : wanted) {
    bool events = n == "events";
    descs.emplace_back(n, events ? setup_.events_cf : setup_.index_cf);
  }
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = options_.read_only ? rocksdb::DB::OpenForReadOnly(setup_.db, path_, descs, &cf_handles_, &db)
                                         : rocksdb::DB::Open(setup_.db, path_, descs, &cf_handles_, &db);
  if (!s.ok()) return OpenError(s, path_);
  db_.reset(db);
  h_.db = db;
  h_.meta = cf_handles_[0];
  h_.events = cf_handles_[1];
  h_.by_seq = cf_handles_[2];
  h_.by_time = cf_handles_[3];
  h_.by_user = cf_handles_[4];
  h_.sampler = cf_handles_[5];
  h_.lineage = cf_handles_[6];
  return Status::Ok();
}

Status StoreImpl::LoadOrInitialize() {
  std::string format;
  auto s = db_->Get(rocksdb::ReadOptions(), h_.meta, std::string(kFormatKey), &format);
  if (s.ok()) {
    uint64_t v = 0;
    try {
      v = std::stoull(format);
    } catch (...) {
      return DataLossError("replay store '" + path_ + "': format_version '" + format + "' is not a number");
    }
    if (v > kStoreFormatVersion) {
      return FailedPreconditionError("replay store '" + path_ + "' has format version " + std::to_string(v) +
                                     ", newer than this build (" + std::to_string(kStoreFormatVersion) +
                                     "); upgrade attune");
    }
    ASSIGN_OR_RETURN(state_, ReadState(nullptr));
    return Status::Ok();
  }
  if (!s.IsNotFound()) return FromRocks(s, "replay store '" + path_ + "'");
  // No format version: a store we just created, or not ours.
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), h_.events));
  it->SeekToFirst();
  if (it->Valid()) {
    return DataLossError("replay store '" + path_ +
                         "' has events but no format_version: not an attune replay store, or "
                         "damaged");
  }
  if (options_.read_only) return NotFoundError("replay store '" + path_ + "' is empty");
  State st;
  st.rng = options_.retention.reservoir_seed;
  if (st.rng == 0) st.rng = (uint64_t{std::random_device{}()} << 32) | std::random_device{}();
  st.capacity = Capacity(options_.retention);
  rocksdb::WriteBatch batch;
  (void)batch.Put(h_.meta, std::string(kFormatKey), std::to_string(kStoreFormatVersion));
  (void)batch.Put(h_.sampler, std::string(kStateKey), EncodeState(st));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  RETURN_IF_ERROR(FromRocks(db_->Write(wo, &batch), "initialise replay store '" + path_ + "'"));
  state_ = st;
  return Status::Ok();
}

// A smaller reservoir than last time: evict the members in the slots that
// no longer exist. Algorithm R places items in slots independently of their
// position in the stream, so the rest stays a uniform sample.
Status StoreImpl::ReconcileCapacity() {
  uint64_t k = Capacity(options_.retention);
  // Unbounded now: keep the reservoir as it is (nothing graduates any more).
  if (k == state_.capacity || options_.retention.max_events == 0) return Status::Ok();
  return WriteAlone([this, k](Txn& txn) -> Status {
    if (k < txn.state.capacity) {
      std::vector<uint64_t> seqs;
      auto it = txn.NewIterator(h_.sampler);
      for (it->Seek(SlotKey(static_cast<uint32_t>(k))); it->Valid(); it->Next()) {
        if (it->key().size() != 5 || it->key()[0] != kSlotPrefix[0]) break;
        seqs.push_back(DecodeFixed64BE(it->value().data()));
      }
      RETURN_IF_ERROR(FromRocks(it->status(), "scan reservoir"));
      it.reset();
      for (uint64_t seq : seqs) RETURN_IF_ERROR(EvictSeq(txn, seq, EvictReason::kCount));
    }
    txn.state.capacity = k;
    return Status::Ok();
  });
}

rocksdb::WriteOptions StoreImpl::WriteOpts() const {
  rocksdb::WriteOptions wo;
  wo.sync = options_.durability == Durability::kSync;
  return wo;
}

int64_t StoreImpl::NowSeconds() const { return (options_.now ? options_.now() : feedback::Now()).seconds; }

Status StoreImpl::WritableOrError() const {
  if (options_.read_only) {
    return FailedPreconditionError("replay store '" + path_ + "' is open read-only");
  }
  return Status::Ok();
}

// LevelDB-style group commit: the writer at the head of the queue commits
// its own work and that of the appends queued behind it in one batch.
Status StoreImpl::Write(Writer* w) {
  std::unique_lock<std::mutex> lock(mu_);
  writers_.push_back(w);
  while (!w->done && w != writers_.front()) w->cv.wait(lock);
  if (w->done) return w->status;
  if (!write_failed_.ok()) {
    writers_.pop_front();
    if (!writers_.empty()) writers_.front()->cv.notify_one();
    return write_failed_;
  }

  std::vector<Writer*> group = {w};
  if (!w->exclusive) {
    size_t bytes = w->bytes;
    for (auto it = writers_.begin() + 1; it != writers_.end(); ++it) {
      if ((*it)->exclusive || bytes + (*it)->bytes > options_.max_group_bytes) break;
      bytes += (*it)->bytes;
      group.push_back(*it);
    }
  }
  Txn txn(h_, state_);
  lock.unlock();
  size_t group_bytes = 0;
  for (Writer* g : group) group_bytes += g->bytes;
  Status s = CheckFreeSpace(group_bytes);
  const bool attempted = s.ok();
  if (s.ok()) s = RunGroup(group, txn);
  if (s.ok()) s = txn.Commit(WriteOpts());
  lock.lock();
  if (s.ok()) state_ = txn.state;
  if (attempted && s.code() == StatusCode::kIoError && write_failed_.ok()) {
    write_failed_ = IoError("replay store '" + path_ + "' refused a write (" + s.message() +
                            "); no more writes are attempted until it is reopened");
  }
  for (Writer* g : group) {
    writers_.pop_front();
    if (g != w) {
      g->status = s;
      g->done = true;
      g->cv.notify_one();
    }
  }
  if (!writers_.empty()) writers_.front()->cv.notify_one();
  return s;
}

Status StoreImpl::CheckFreeSpace(size_t write_bytes) const {
  struct statvfs fs;
  if (::statvfs(path_.c_str(), &fs) != 0) return Status::Ok();  // unknown: let the write tell
  const uint64_t free_bytes = uint64_t(fs.f_bavail) * uint64_t(fs.f_frsize);
  const uint64_t need =
      options_.min_free_disk_bytes + options_.memory.write_buffer_manager_bytes + 4 * uint64_t(write_bytes);
  if (free_bytes >= need) return Status::Ok();
  return IoError("replay store '" + path_ + "': the disk is nearly full (" + std::to_string(free_bytes >> 20) +
                 " MiB free, a write needs " + std::to_string(need >> 20) +
                 " MiB to stay safe); nothing was written (free some space and retry)");
}

Status StoreImpl::RunGroup(const std::vector<Writer*>& group, Txn& txn) {
  if (group[0]->exclusive) return group[0]->exclusive(txn);
  int64_t now = NowSeconds();
  for (Writer* g : group) {
    for (PendingAppend& item : *g->appends) {
      if (item.status.ok()) RETURN_IF_ERROR(Insert(txn, item, now));
    }
  }
  return EnforceRetention(txn, now);
}

Status StoreImpl::WriteAlone(std::function<Status(Txn&)> fn) {
  RETURN_IF_ERROR(WritableOrError());
  Writer w;
  w.exclusive = std::move(fn);
  return Write(&w);
}

Result<AppendResult> StoreImpl::Append(feedback::Event event) {
  std::vector<feedback::Event> one;
  one.push_back(std::move(event));
  auto results = AppendMany(std::move(one));
  return std::move(results[0]);
}

std::vector<Result<AppendResult>> StoreImpl::AppendMany(std::vector<feedback::Event> events) {
  std::vector<PendingAppend> items(events.size());
  Writer w;
  w.appends = &items;
  feedback::ValidateOptions vo;
  vo.limits = options_.limits;
  vo.now = options_.now;
  bool any = false;
  Status writable = WritableOrError();
  for (size_t i = 0; i < events.size(); ++i) {
    items[i].event = std::move(events[i]);
    items[i].status = writable.ok() ? feedback::ValidateAndNormalize(items[i].event, vo) : writable;
    if (!items[i].status.ok()) continue;
    any = true;
    w.bytes += 256 + items[i].event.response.size();
    for (const auto& m : items[i].event.context) w.bytes += m.content.size();
  }
  Status s = any ? Write(&w) : Status::Ok();
  std::vector<Result<AppendResult>> out;
  out.reserve(items.size());
  for (PendingAppend& item : items) {
    if (!item.status.ok()) {
      out.emplace_back(item.status);
    } else if (!s.ok()) {
      out.emplace_back(s);
    } else {
      out.emplace_back(item.result);
    }
  }
  return out;
}

Result<State> StoreImpl::ReadState(const rocksdb::Snapshot* snap) const {
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  std::string v;
  auto s = db_->Get(ro, h_.sampler, std::string(kStateKey), &v);
  if (s.IsNotFound()) return DataLossError("replay store '" + path_ + "' has no sampler state");
  RETURN_IF_ERROR(FromRocks(s, "read sampler state"));
  return DecodeState(v);
}

Result<StoredEvent> StoreImpl::ReadEvent(const rocksdb::ReadOptions& ro, const std::string& id) const {
  std::string v;
  auto s = db_->Get(ro, h_.events, id, &v);
  if (s.IsNotFound()) return NotFoundError("no event with id '" + id + "'");
  RETURN_IF_ERROR(FromRocks(s, "read event '" + id + "'"));
  auto rec = DecodeRecord(v);
  if (!rec.ok()) return rec.status().WithContext("event '" + id + "'");
  auto ev = feedback::ParseEvent(rec->payload);
  if (!ev.ok()) return ev.status().WithContext("event '" + id + "'");
  return StoredEvent{rec->seq, std::move(ev).value()};
}

Result<std::vector<StoredEvent>> StoreImpl::ReadEvents(const rocksdb::ReadOptions& ro,
                                                       const std::vector<uint64_t>& seqs) const {
  std::vector<StoredEvent> out;
  out.reserve(seqs.size());
  for (uint64_t seq : seqs) {
    std::string id;
    auto s = db_->Get(ro, h_.by_seq, SeqKey(seq), &id);
    RETURN_IF_ERROR(FromRocks(s, "read seq " + std::to_string(seq)));
    ASSIGN_OR_RETURN(auto ev, ReadEvent(ro, id));
    out.push_back(std::move(ev));
  }
  return out;
}

Result<StoredEvent> StoreImpl::Get(std::string_view id) const {
  return ReadEvent(rocksdb::ReadOptions(), std::string(id));
}

Status StoreImpl::Scan(const ScanOptions& options, const std::function<bool(const StoredEvent&)>& visit) const {
  rocksdb::ReadOptions ro;
  const rocksdb::Snapshot* snap = db_->GetSnapshot();
  ro.snapshot = snap;
  std::string lower, upper;
  rocksdb::Slice lower_s, upper_s;
  if (!options.user_id.empty()) {
    lower = UserPrefix(options.user_id);
    upper = PrefixEnd(lower);
    lower_s = lower, upper_s = upper;
    ro.iterate_lower_bound = &lower_s;
    ro.iterate_upper_bound = &upper_s;
  }
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, options.user_id.empty() ? h_.by_seq : h_.by_user));
  Status status;
  size_t n = 0;
  for (options.newest_first ? it->SeekToLast() : it->SeekToFirst(); it->Valid();
       options.newest_first ? it->Prev() : it->Next()) {
    auto ev = ReadEvent(ro, it->value().ToString());
    if (!ev.ok()) {
      status = ev.status();
      break;
    }
    if (!visit(*ev) || (options.limit != 0 && ++n >= options.limit)) break;
  }
  if (status.ok()) status = FromRocks(it->status(), "scan");
  it.reset();
  db_->ReleaseSnapshot(snap);
  return status;
}

Result<Stats> StoreImpl::GetStats() const {
  rocksdb::ReadOptions ro;
  const rocksdb::Snapshot* snap = db_->GetSnapshot();
  ro.snapshot = snap;
  auto st = ReadState(snap);
  uint64_t fresh = 0;
  if (st.ok()) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, h_.by_seq));
    for (it->Seek(SeqKey(st->cursor + 1)); it->Valid(); it->Next()) ++fresh;
  }
  db_->ReleaseSnapshot(snap);
  if (!st.ok()) return st.status();
  Stats s;
  s.events = st->events;
  s.bytes = st->bytes;
  s.recent = st->recent;
  s.reservoir = st->reservoir;
  s.reservoir_capacity = st->capacity;
  s.last_seq = st->next_seq - 1;
  s.cursor = st->cursor;
  s.new_since_cursor = fresh;
  s.adapter_versions = st->versions;
  s.appended = st->appended;
  s.duplicates = st->duplicates;
  s.evicted_count = st->evicted_count;
  s.evicted_bytes = st->evicted_bytes;
  s.evicted_age = st->evicted_age;
  s.forgotten = st->forgotten;
  return s;
}

}  // namespace internal
}  // namespace attune::replay
