// StoreImpl: the RocksDB-backed Store. Its methods are split by concern:
//   store_impl.cc  open, the write queue, reads, stats
//   retention.cc   insert, recent window, reservoir, eviction
//   training.cc    Sample and RecordTraining
//   forget.cc      erasure
//   verify.cc      consistency check
#pragma once

#include <rocksdb/cache.h>
#include <rocksdb/db.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "attune/replay/store.h"
#include "encoding.h"
#include "txn.h"

namespace attune::replay::internal {

enum class EvictReason { kCount, kBytes, kAge, kForget };

// RocksDB options for `mem` (rocks_options.cc).
struct RocksSetup {
  rocksdb::DBOptions db;
  rocksdb::ColumnFamilyOptions events_cf;
  rocksdb::ColumnFamilyOptions index_cf;
  std::shared_ptr<rocksdb::Cache> cache;
};
RocksSetup MakeRocksSetup(const MemoryOptions& mem, bool create_if_missing);
// The store's column family names, in Handles order after "default".
const std::vector<std::string>& ColumnFamilyNames();

class StoreImpl final : public Store {
 public:
  static Result<std::unique_ptr<Store>> Open(const Options& options, const std::string& path);
  ~StoreImpl() override;

  Result<AppendResult> Append(feedback::Event event) override;
  std::vector<Result<AppendResult>> AppendMany(std::vector<feedback::Event> events) override;
  Result<StoredEvent> Get(std::string_view id) const override;
  Status Scan(const ScanOptions& options, const std::function<bool(const StoredEvent&)>& visit) const override;
  Result<SampleBatch> Sample(const SampleOptions& options) const override;
  Result<TrainingRecordResult> RecordTraining(const TrainingRecord& record) override;
  Result<ForgetResult> ForgetUser(std::string_view user_id) override;
  Result<ForgetResult> ForgetEvent(std::string_view id) override;
  Result<Stats> GetStats() const override;
  Status Quarantine(const std::vector<std::string>& event_ids) override { return SetQuarantine(event_ids, true); }
  Status Release(const std::vector<std::string>& event_ids) override { return SetQuarantine(event_ids, false); }
  Result<std::vector<std::string>> Quarantined() const override;
  Status Verify() const override;

 private:
  struct PendingAppend {
    feedback::Event event;
    Status status;  // validation or age refusal; the group's status otherwise
    AppendResult result;
  };
  // One caller waiting in the write queue: either appends (which may share
  // a group with other appends) or an exclusive operation that runs alone.
  struct Writer {
    std::vector<PendingAppend>* appends = nullptr;
    size_t bytes = 0;
    std::function<Status(Txn&)> exclusive;
    Status status;
    bool done = false;
    std::condition_variable cv;
  };

  StoreImpl(const Options& options, std::string path);
  Status OpenDb();
  bool NeverInitialised() const;
  Status SetQuarantine(const std::vector<std::string>& ids, bool on);
  // IoError when committing `write_bytes` could fill the disk (see
  // Options::min_free_disk_bytes).
  Status CheckFreeSpace(size_t write_bytes) const;
  Status LoadOrInitialize();
  Status ReconcileCapacity();

  // Queues `w` and returns once its group is committed (or failed).
  Status Write(Writer* w);
  Status RunGroup(const std::vector<Writer*>& group, Txn& txn);
  Status WriteAlone(std::function<Status(Txn&)> fn);

  // retention.cc
  Status Insert(Txn& txn, PendingAppend& item, int64_t now_seconds);
  Status EnforceRetention(Txn& txn, int64_t now_seconds);
  Status EvictExpired(Txn& txn, int64_t cutoff_seconds);
  Status Graduate(Txn& txn);
  Result<uint64_t> OldestRecentSeq(Txn& txn);
  Status EvictRandomMember(Txn& txn);
  Status EvictSeq(Txn& txn, uint64_t seq, EvictReason reason);
  Status RemoveEvent(Txn& txn, const std::string& id, const Record& record, size_t value_size, bool keep_user_index);
  Status Place(Txn& txn, uint64_t seq, uint32_t slot);

  // forget.cc
  Status ForgetEventIn(Txn& txn, const std::string& id, bool keep_user_index, std::vector<std::string>* versions);

  // Reads at a snapshot (nullptr: latest).
  Result<State> ReadState(const rocksdb::Snapshot* snap) const;
  Result<StoredEvent> ReadEvent(const rocksdb::ReadOptions& ro, const std::string& id) const;
  Result<std::vector<StoredEvent>> ReadEvents(const rocksdb::ReadOptions& ro, const std::vector<uint64_t>& seqs) const;
  Status WritableOrError() const;
  Status AfterForget();
  rocksdb::WriteOptions WriteOpts() const;
  int64_t NowSeconds() const;

  const Options options_;
  const std::string path_;
  RocksSetup setup_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> cf_handles_;
  Handles h_;

  std::mutex mu_;
  std::deque<Writer*> writers_;  // guarded by mu_
  // The first write the file system refused (disk full, I/O error): after
  // it, no write is attempted again in this process (RocksDB's log writer
  // must not be used after a failed append) and the store is not flushed on
  // close; what was committed before stays. Guarded by mu_.
  Status write_failed_;
  State state_;                  // guarded by mu_; as of the last commit
};

}  // namespace attune::replay::internal
