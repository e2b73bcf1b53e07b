// RocksDB tuning for a small device: one shared block cache, memtables
// capped by a WriteBufferManager, few files and threads, LZ4 for events.
#include <rocksdb/convenience.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/write_buffer_manager.h>

#include <algorithm>

#include "store_impl.h"

namespace attune::replay::internal {
namespace {

rocksdb::CompressionType BestCompression() {
  auto supported = rocksdb::GetSupportedCompressions();
  if (std::find(supported.begin(), supported.end(), rocksdb::kLZ4Compression) != supported.end()) {
    return rocksdb::kLZ4Compression;
  }
  return rocksdb::kNoCompression;
}

rocksdb::ColumnFamilyOptions CfOptions(const std::shared_ptr<rocksdb::Cache>& cache, size_t write_buffer, bool bloom) {
  rocksdb::ColumnFamilyOptions cf;
  rocksdb::BlockBasedTableOptions t;
  t.block_cache = cache;
  // Index and filter blocks live in the (small) cache. Partitioned, so that
  // a lookup loads one 4 KiB partition instead of a whole file's index or
  // filter, which would thrash the cache once the store outgrows it.
  t.cache_index_and_filter_blocks = true;
  t.cache_index_and_filter_blocks_with_high_priority = true;
  t.pin_l0_filter_and_index_blocks_in_cache = true;
  t.pin_top_level_index_and_filter = true;
  t.index_type = rocksdb::BlockBasedTableOptions::kTwoLevelIndexSearch;
  t.metadata_block_size = 4096;
  if (bloom) {
    t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    t.partition_filters = true;
  }
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  cf.write_buffer_size = std::max<size_t>(write_buffer, 64 << 10);
  cf.max_write_buffer_number = 2;
  cf.compression = BestCompression();
  cf.level_compaction_dynamic_level_bytes = true;
  return cf;
}

}  // namespace

const std::vector<std::string>& ColumnFamilyNames() {
  static const std::vector<std::string> kNames = {"events", "by_seq", "by_time", "by_user", "sampler", "lineage"};
  return kNames;
}

RocksSetup MakeRocksSetup(const MemoryOptions& mem, bool create_if_missing) {
  RocksSetup s;
  s.cache = rocksdb::NewLRUCache(mem.block_cache_bytes);
  s.db.create_if_missing = create_if_missing;
  s.db.create_missing_column_families = true;
  s.db.max_background_jobs = mem.max_background_jobs;
  s.db.max_open_files = mem.max_open_files;
  s.db.write_buffer_manager = std::make_shared<rocksdb::WriteBufferManager>(mem.write_buffer_manager_bytes, s.cache);
  // Bounded WAL so that a quiet index CF does not pin old logs forever.
  s.db.max_total_wal_size = 4 * mem.write_buffer_manager_bytes;
  s.db.keep_log_file_num = 2;
  s.db.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  s.db.enable_pipelined_write = false;
  // Damage is reported, never skipped: paranoid checks fail the open on a
  // corrupt file, and a write-ahead log whose records do not check out
  // stops the open (kAbsoluteConsistency would also refuse the torn last
  // record of a crash in mid-write, which was never acknowledged;
  // kPointInTimeRecovery would silently drop everything after the damage).
  s.db.paranoid_checks = true;
  s.db.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  // The MANIFEST records the sizes of closed logs, so a missing or
  // truncated older log fails the open instead of losing its events.
  s.db.track_and_verify_wals_in_manifest = true;
  // All families flush in one MANIFEST edit: they stay consistent with
  // each other whatever the log holds.
  s.db.atomic_flush = true;
  s.events_cf = CfOptions(s.cache, mem.write_buffer_bytes, /*bloom=*/true);
  s.index_cf = CfOptions(s.cache, mem.write_buffer_bytes / 4, /*bloom=*/false);
  return s;
}

}  // namespace attune::replay::internal
