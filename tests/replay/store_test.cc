#include "attune/replay/store.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <fstream>

#include "tests/replay/test_util.h"

namespace attune::replay {
namespace {

using testing::MakeEvent;
using testing::ScratchDir;
using testing::TestOptions;

using testing::OpenOrDie;

TEST(StoreTest, AppendedEventReadsBackIntact) {
  ScratchDir dir("store");
  auto store = OpenOrDie(TestOptions(), dir.path());
  feedback::Event e = MakeEvent("e-1");
  e.attachments = {{"image/png", std::string("\0\x01\x02", 3)}};
  auto r = store->Append(e);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->outcome, AppendOutcome::kStored);
  EXPECT_EQ(r->seq, 1u);
  auto got = store->Get("e-1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->seq, 1u);
  EXPECT_EQ(got->event, e);
  EXPECT_TRUE(store->Verify().ok());
}

// A full disk met inside RocksDB ended the process (an assertion in its log
// writer after a failed append, in Debian's build): a write that could fill
// the disk is refused before RocksDB sees it, and nothing is written.
TEST(StoreTest, AWriteThatCouldFillTheDiskIsRefusedBeforeRocksDbSeesIt) {
  ScratchDir dir("store");
  Options o = TestOptions();
  o.min_free_disk_bytes = uint64_t{1} << 60;  // no disk has an exbibyte free
  {
    auto store = OpenOrDie(o, dir.path());
    for (int i = 0; i < 2; ++i) {  // and again: the refusal is not sticky
      auto r = store->Append(MakeEvent("e-1"));
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.status().code(), StatusCode::kIoError);
      EXPECT_NE(r.status().message().find("the disk is nearly full"), std::string::npos) << r.status().message();
    }
    EXPECT_EQ(store->GetStats()->events, 0u);
  }
  auto store = OpenOrDie(TestOptions(), dir.path());
  EXPECT_EQ(store->GetStats()->events, 0u);
  EXPECT_TRUE(store->Append(MakeEvent("e-2")).ok());
}

TEST(StoreTest, SameIdTwiceStoresOneEvent) {
  ScratchDir dir("store");
  auto store = OpenOrDie(TestOptions(), dir.path());
  ASSERT_TRUE(store->Append(MakeEvent("e-1")).ok());
  feedback::Event changed = MakeEvent("e-1");
  changed.response = "different";
  auto r = store->Append(changed);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome, AppendOutcome::kDuplicate);
  EXPECT_EQ(store->Get("e-1")->event.response, MakeEvent("e-1").response);
  auto st = store->GetStats();
  EXPECT_EQ(st->events, 1u);
  EXPECT_EQ(st->duplicates, 1u);
}

TEST(StoreTest, DuplicatesInsideOneBatchStoreOneEvent) {
  ScratchDir dir("store");
  auto store = OpenOrDie(TestOptions(), dir.path());
  auto results = store->AppendMany({MakeEvent("a"), MakeEvent("a"), MakeEvent("b")});
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0]->outcome, AppendOutcome::kStored);
  EXPECT_EQ(results[1]->outcome, AppendOutcome::kDuplicate);
  EXPECT_EQ(results[2]->outcome, AppendOutcome::kStored);
  EXPECT_EQ(store->GetStats()->events, 2u);
}

TEST(StoreTest, InvalidEventIsRejectedNamingTheFieldAndStoresNothing) {
  ScratchDir dir("store");
  auto store = OpenOrDie(TestOptions(), dir.path());
  feedback::Event e = MakeEvent("e-1");
  e.context.clear();
  auto r = store->Append(e);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message().rfind("context:", 0), 0u) << r.status().message();
  EXPECT_EQ(store->GetStats()->events, 0u);
}

TEST(StoreTest, OneInvalidEventDoesNotStopTheOthers) {
  ScratchDir dir("store");
  auto store = OpenOrDie(TestOptions(), dir.path());
  feedback::Event bad = MakeEvent("bad");
  bad.user_id = "";
  auto results = store->AppendMany({MakeEvent("a"), bad, MakeEvent("b")});
  EXPECT_TRUE(results[0].ok());
  EXPECT_FALSE(results[1].ok());
  EXPECT_TRUE(results[2].ok());
  EXPECT_EQ(store->GetStats()->events, 2u);
}

TEST(StoreTest, UnsetTimeBecomesTheStoreClock) {
  ScratchDir dir("store");
  testing::TestClock clock;
  auto store = OpenOrDie(TestOptions(clock), dir.path());
  feedback::Event e = MakeEvent("e");
  e.time = {};
  ASSERT_TRUE(store->Append(e).ok());
  EXPECT_EQ(store->Get("e")->event.time.seconds, clock.seconds->load());
}

TEST(StoreTest, ReopenKeepsEventsAndCounters) {
  ScratchDir dir("store");
  {
    auto store = OpenOrDie(TestOptions(), dir.path());
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(store->Append(MakeEvent(std::to_string(i))).ok());
  }
  auto store = OpenOrDie(TestOptions(), dir.path());
  EXPECT_EQ(store->GetStats()->events, 10u);
  EXPECT_EQ(store->GetStats()->last_seq, 10u);
  auto r = store->Append(MakeEvent("next"));
  EXPECT_EQ(r->seq, 11u);
  EXPECT_TRUE(store->Verify().ok());
}

TEST(StoreTest, ScanVisitsInArrivalOrderPerUserAndNewestFirst) {
  ScratchDir dir("store");
  auto store = OpenOrDie(TestOptions(), dir.path());
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(store->Append(MakeEvent("e" + std::to_string(i), i % 2 ? "odd" : "even")).ok());
  }
  std::vector<std::string> ids;
  auto collect = [&](const StoredEvent& e) {
    ids.push_back(e.event.id);
    return true;
  };
  ASSERT_TRUE(store->Scan({}, collect).ok());
  EXPECT_EQ(ids, (std::vector<std::string>{"e0", "e1", "e2", "e3", "e4", "e5"}));
  ids.clear();
  ASSERT_TRUE(store->Scan({.user_id = "odd"}, collect).ok());
  EXPECT_EQ(ids, (std::vector<std::string>{"e1", "e3", "e5"}));
  ids.clear();
  ASSERT_TRUE(store->Scan({.user_id = "even", .limit = 2, .newest_first = true}, collect).ok());
  EXPECT_EQ(ids, (std::vector<std::string>{"e4", "e2"}));
}

TEST(StoreTest, MissingEventIsNotFound) {
  ScratchDir dir("store");
  auto store = OpenOrDie(TestOptions(), dir.path());
  EXPECT_EQ(store->Get("nope").status().code(), StatusCode::kNotFound);
}

TEST(StoreTest, StoreHeldByAnotherOpenIsUnavailable) {
  ScratchDir dir("store");
  auto first = OpenOrDie(TestOptions(), dir.path());
  auto second = Store::Open(TestOptions(), dir.path());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find("in use"), std::string::npos);
}

TEST(StoreTest, ReadOnlyOpenWorksBesideAWriterAndRefusesWrites) {
  ScratchDir dir("store");
  auto writer = OpenOrDie(TestOptions(), dir.path());
  ASSERT_TRUE(writer->Append(MakeEvent("e")).ok());
  Options ro = TestOptions();
  ro.read_only = true;
  auto reader = OpenOrDie(ro, dir.path());
  EXPECT_TRUE(reader->Get("e").ok());
  auto r = reader->Append(MakeEvent("f"));
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
}

TEST(StoreTest, MissingStoreWithoutCreateIsNotFound) {
  ScratchDir dir("store");
  Options o = TestOptions();
  o.create_if_missing = false;
  EXPECT_EQ(Store::Open(o, dir.path()).status().code(), StatusCode::kNotFound);
}

// Writes key -> value into column family `family` ("default" for the meta
// family) of the closed store at `dir`, behind the store's back.
void PutRaw(const std::string& dir, const std::string& family, const std::string& key, const std::string& value) {
  rocksdb::DB* db;
  std::vector<std::string> names;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies({}, dir, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  ASSERT_TRUE(rocksdb::DB::Open({}, dir, cfs, &handles, &db).ok());
  bool written = false;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] != family) continue;
    EXPECT_TRUE(db->Put({}, handles[i], key, value).ok());
    written = true;
  }
  EXPECT_TRUE(written) << "no column family " << family;
  for (auto* h : handles) EXPECT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
  delete db;
}

TEST(StoreTest, NewerFormatVersionIsFailedPrecondition) {
  ScratchDir dir("store");
  { OpenOrDie(TestOptions(), dir.path()); }
  PutRaw(dir.path(), "default", "format_version", "2");
  auto r = Store::Open(TestOptions(), dir.path());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("newer"), std::string::npos);
}

TEST(StoreTest, CorruptStoreIsDataLossNotAReset) {
  ScratchDir dir("store");
  {
    auto store = OpenOrDie(TestOptions(), dir.path());
    ASSERT_TRUE(store->Append(MakeEvent("e")).ok());
  }
  std::ofstream(dir.path() + "/CURRENT", std::ios::trunc) << "MANIFEST-000001";  // no newline
  auto r = Store::Open(TestOptions(), dir.path());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
}

TEST(StoreTest, CorruptRecordIsDataLossForReadersAndVerify) {
  ScratchDir dir("store");
  { ASSERT_TRUE(OpenOrDie(TestOptions(), dir.path())->Append(MakeEvent("e")).ok()); }
  PutRaw(dir.path(), "events", "e", "\x01garbage");
  auto store = OpenOrDie(TestOptions(), dir.path());
  EXPECT_EQ(store->Get("e").status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(store->Verify().code(), StatusCode::kDataLoss);
}

// The replay draw reads the lineage's version records to replay the least
// recently trained first; one that does not decode counts as never trained
// instead of failing every later Sample (the training loop would stop).
TEST(StoreTest, ADamagedVersionRecordDoesNotStopTheReplayDraw) {
  ScratchDir dir("store");
  {
    auto store = OpenOrDie(TestOptions(), dir.path());
    std::vector<feedback::Event> batch;
    for (int i = 0; i < 30; ++i) batch.push_back(MakeEvent("e" + std::to_string(i)));
    for (auto& r : store->AppendMany(std::move(batch))) ASSERT_TRUE(r.ok());
    auto b = store->Sample({.max_new = 20});
    ASSERT_TRUE(b.ok());
    std::vector<std::string> ids;
    for (const auto& e : b->new_events) ids.push_back(e.event.id);
    ASSERT_TRUE(store->RecordTraining({"v1", b->cursor_before, b->cursor_after, ids}).ok());
  }
  PutRaw(dir.path(), "lineage", "av1", "\x7fgarbage");  // VersionRecordKey("v1")
  auto store = OpenOrDie(TestOptions(), dir.path());
  auto b = store->Sample({.max_new = 5});  // 5 new, 10 of the 20 old replayed
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->new_events.size(), 5u);
  EXPECT_EQ(b->replay_events.size(), 10u);
}

TEST(StoreTest, RecentWindowMustBeBelowMaxEvents) {
  ScratchDir dir("store");
  Options o = TestOptions();
  o.retention.max_events = 10;
  o.retention.recent_window = 10;
  auto r = Store::Open(o, dir.path());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("recent_window"), std::string::npos);
}

TEST(StoreTest, SyncModeAcknowledgesDurableWrites) {
  ScratchDir dir("store");
  Options o = TestOptions();
  o.durability = Durability::kSync;
  auto store = OpenOrDie(o, dir.path());
  ASSERT_TRUE(store->Append(MakeEvent("e")).ok());
  EXPECT_TRUE(store->Get("e").ok());
}

}  // namespace
}  // namespace attune::replay
