// Damaged stores: damage is reported as DataLoss naming the file, never
// read as "fewer events", and a failing open changes nothing. Repair is
// explicit and says what it recovered.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "attune/replay/repair.h"
#include "attune/replay/store.h"
#include "tests/replay/damage_util.h"
#include "tests/replay/test_util.h"

namespace attune::replay {
namespace {

namespace fs = std::filesystem;
using testing::MakeEvent;
using testing::ScratchDir;
using testing::TestOptions;

std::string NewestLog(const std::string& dir) {
  std::string best;
  for (const auto& name : testing::DataFiles(dir)) {
    if (name.size() > 4 && name.substr(name.size() - 4) == ".log" && fs::file_size(dir + "/" + name) > 0) {
      best = std::max(best, name);
    }
  }
  return best;
}

// Overwrites a few bytes in the middle of `path`.
void Scribble(const std::string& path) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(fs::file_size(path) / 2));
  f.write("XXXX", 4);
}

TEST(DamageTest, DamagedWalIsReportedNotDropped) {
  ScratchDir dir("damage");
  testing::WriteStore(dir.path(), 6, /*crash_image=*/true);
  const std::string log = NewestLog(dir.path());
  ASSERT_FALSE(log.empty());
  Scribble(dir.path() + "/" + log);
  const auto before = testing::Snapshot(dir.path());
  auto events = testing::ReadAll(dir.path());
  ASSERT_FALSE(events.ok()) << "read " << events->size() << " of 6 events without an error";
  EXPECT_EQ(events.status().code(), StatusCode::kDataLoss) << events.status().ToString();
  EXPECT_NE(events.status().message().find(log), std::string::npos) << events.status().message();
  auto writer = Store::Open(TestOptions(), dir.path());
  ASSERT_FALSE(writer.ok());
  EXPECT_EQ(writer.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(testing::Snapshot(dir.path()), before);
}

TEST(DamageTest, StoreWithoutCurrentIsDamagedAndLeftUntouched) {
  ScratchDir dir("damage");
  testing::WriteStore(dir.path(), 3, /*crash_image=*/false);
  fs::remove(dir.path() + "/CURRENT");
  const auto before = testing::Snapshot(dir.path());
  auto reader = testing::ReadAll(dir.path());
  ASSERT_FALSE(reader.ok()) << "an empty store was reported";
  EXPECT_EQ(reader.status().code(), StatusCode::kDataLoss) << reader.status().ToString();
  EXPECT_NE(reader.status().message().find("CURRENT"), std::string::npos);
  auto writer = Store::Open(TestOptions(), dir.path());
  ASSERT_FALSE(writer.ok());
  EXPECT_EQ(writer.status().code(), StatusCode::kDataLoss) << writer.status().ToString();
  EXPECT_EQ(testing::Snapshot(dir.path()), before) << "the failed open wrote files";
}

TEST(DamageTest, StoreUnderARegularFileIsAnErrorNotAnEmptyStore) {
  ScratchDir dir("damage");
  fs::create_directories(dir.path());
  std::ofstream(dir.path() + "/file") << "x";
  Options o = TestOptions();
  o.read_only = true;
  for (const std::string& path : {dir.path() + "/file", dir.path() + "/file/replay"}) {
    auto store = Store::Open(o, path);
    ASSERT_FALSE(store.ok()) << path;
    EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition) << store.status().ToString();
    EXPECT_NE(store.status().message().find("not a directory"), std::string::npos) << store.status().message();
  }
}

TEST(DamageTest, MissingTableIsNamedAsTheSstItIs) {
  ScratchDir dir("damage");
  testing::WriteStore(dir.path(), 3, /*crash_image=*/false);
  std::string sst;
  for (const auto& name : testing::DataFiles(dir.path())) {
    if (name.size() > 4 && name.substr(name.size() - 4) == ".sst") sst = name;
  }
  ASSERT_FALSE(sst.empty()) << "closing the store leaves its events in tables";
  fs::remove(dir.path() + "/" + sst);
  auto events = testing::ReadAll(dir.path());
  ASSERT_FALSE(events.ok());
  EXPECT_EQ(events.status().code(), StatusCode::kDataLoss) << events.status().ToString();
  EXPECT_NE(events.status().message().find(sst), std::string::npos) << events.status().message();
  EXPECT_EQ(events.status().message().find(".ldb"), std::string::npos) << events.status().message();
}

TEST(DamageTest, ClosedStoreKeepsNoEventOnlyInItsLog) {
  ScratchDir dir("damage");
  testing::WriteStore(dir.path(), 4, /*crash_image=*/false);
  EXPECT_EQ(NewestLog(dir.path()), "") << "a clean close leaves events only in the write-ahead log";
}

// A store opened a second time starts a new MANIFEST whose first records
// list the families, and whose later ones add the tables written since.
// Cut in half, RocksDB read it up to its last whole record and opened a
// store without those tables: every event gone, no error.
TEST(DamageTest, TruncatedManifestOfAReopenedStoreIsDamageNotAnEmptyStore) {
  ScratchDir dir("damage");
  auto written = testing::WriteStore(dir.path(), 6, /*crash_image=*/false);
  {
    auto store = testing::OpenOrDie(TestOptions(), dir.path());
    ASSERT_TRUE(store);
    for (int i = 0; i < 6; ++i) ASSERT_TRUE(store->Append(MakeEvent("again-" + std::to_string(i))).ok());
  }
  ASSERT_EQ(testing::ReadAll(dir.path())->size(), 12u);
  std::string manifest;
  for (const auto& name : testing::DataFiles(dir.path())) {
    if (name.rfind("MANIFEST-", 0) == 0) manifest = std::max(manifest, name);
  }
  ASSERT_FALSE(manifest.empty());
  testing::Apply(testing::Damage::kTruncate, dir.path() + "/" + manifest);
  const auto damaged = testing::Snapshot(dir.path());
  for (bool read_only : {true, false}) {
    Options o = TestOptions();
    o.read_only = read_only;
    auto store = Store::Open(o, dir.path());
    ASSERT_FALSE(store.ok()) << (read_only ? "read-only" : "writable") << " open of a cut MANIFEST succeeded";
    EXPECT_EQ(store.status().code(), StatusCode::kDataLoss) << store.status().ToString();
    EXPECT_NE(store.status().message().find(manifest), std::string::npos) << store.status().message();
  }
  EXPECT_TRUE(testing::Snapshot(dir.path()) == damaged) << "a failed open changed files";
  auto r = RepairStore(TestOptions(), dir.path());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->needed);
  EXPECT_EQ(testing::ReadAll(dir.path())->size(), 12u) << "repair rebuilds the store from its tables";
}

TEST(RepairTest, RepairOfAHealthyStoreChangesNothing) {
  ScratchDir dir("repair");
  testing::WriteStore(dir.path(), 3, /*crash_image=*/false);
  const auto before = testing::Snapshot(dir.path());
  auto r = RepairStore(TestOptions(), dir.path());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->needed);
  EXPECT_TRUE(r->backup_dir.empty());
  EXPECT_EQ(testing::ReadAll(dir.path())->size(), 3u);
}

TEST(RepairTest, RepairOfNoStoreIsNotFoundAndCreatesNothing) {
  ScratchDir dir("repair");
  auto r = RepairStore(TestOptions(), dir.path());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(fs::exists(dir.path()));
}

TEST(RepairTest, RepairRebuildsAStoreWithoutCurrentWithEveryEvent) {
  ScratchDir dir("repair");
  auto written = testing::WriteStore(dir.path(), 5, /*crash_image=*/false);
  fs::remove(dir.path() + "/CURRENT");
  auto r = RepairStore(TestOptions(), dir.path());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->needed);
  EXPECT_EQ(r->events_recovered, 5u);
  EXPECT_TRUE(r->lost_event_ids.empty());
  EXPECT_TRUE(fs::exists(r->backup_dir + "/MANIFEST-000001") || !testing::DataFiles(r->backup_dir).empty());
  auto events = testing::ReadAll(dir.path());
  ASSERT_TRUE(events.ok()) << events.status().ToString();
  EXPECT_EQ(*events, written);
  fs::remove_all(r->backup_dir);
}

TEST(RepairTest, RepairAfterWalDamageReportsTheLossAndNeverReusesASeq) {
  ScratchDir dir("repair");
  auto written = testing::WriteStore(dir.path(), 6, /*crash_image=*/true);
  Scribble(dir.path() + "/" + NewestLog(dir.path()));
  const auto damaged = testing::Snapshot(dir.path());
  auto r = RepairStore(TestOptions(), dir.path());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->needed);
  EXPECT_NE(r->damage.find(".log"), std::string::npos) << r->damage;
  EXPECT_LT(r->events_recovered, 6u);
  EXPECT_TRUE(!r->events_known || r->events_before > r->events_recovered) << "the report hides the loss";
  EXPECT_EQ(testing::Snapshot(r->backup_dir), damaged) << "the backup is the store as it was";
  auto store = Store::Open(TestOptions(), dir.path());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_TRUE((*store)->Verify().ok());
  auto stats = (*store)->GetStats();
  EXPECT_EQ(stats->events, r->events_recovered);
  // Each recovered event is intact.
  ASSERT_TRUE((*store)
                  ->Scan({},
                         [&](const StoredEvent& e) {
                           bool known = false;
                           for (const auto& w : written) known = known || w == e.event;
                           EXPECT_TRUE(known) << e.event.id;
                           return true;
                         })
                  .ok());
  auto next = (*store)->Append(MakeEvent("e-new"));
  ASSERT_TRUE(next.ok());
  EXPECT_GT(next->seq, r->last_seq);
  store->reset();
  fs::remove_all(r->backup_dir);
}

}  // namespace
}  // namespace attune::replay
