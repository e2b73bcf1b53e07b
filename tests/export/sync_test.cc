// Sync between two data directories through one folder, with real registries,
// keys and files (no model: random adapters for the tiny model's shapes).
#include "attune/export/sync.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "attune/adapters/payload.h"
#include "attune/core/file.h"
#include "attune/export/bundle.h"
#include "tests/export/test_util.h"

namespace attune::export_ {
namespace {

namespace fs = std::filesystem;
using adapters::Registry;
using adapters::VersionState;

struct Device {
  std::string data;
  std::unique_ptr<Registry> reg;
  std::unique_ptr<KeyStore> keys;

  static Device Open(const std::string& data) {
    Device d;
    d.data = data;
    d.reg = std::move(Registry::Open({}, data + "/adapters")).value();
    d.keys = std::move(KeyStore::Open(data + "/keys")).value();
    return d;
  }
  Result<SyncReport> SyncWith(const std::string& dir) { return Sync(*reg, *keys, dir, data + "/sync", {}); }
  // Adds and force-promotes an adapter trained from `parent`.
  std::string Learn(uint32_t seed, const std::string& parent = "") {
    auto a = testing::RandomAdapter(testing::TinyBase(), 2, seed, {adapters::LoraTarget::kV});
    a.parent_version = parent;
    a.lineage = {"e-" + std::to_string(seed)};
    auto id = reg->Add(a);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    if (!id.ok()) return "";
    EXPECT_TRUE(reg->Promote(*id, std::nullopt, true).ok());
    return *id;
  }
};

class SyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("attune_sync_test_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "shared");
    phone_ = Device::Open((root_ / "phone").string());
    laptop_ = Device::Open((root_ / "laptop").string());
    ASSERT_TRUE(phone_.keys->Trust(laptop_.keys->device().line(), "laptop.pub").ok());
    ASSERT_TRUE(laptop_.keys->Trust(phone_.keys->device().line(), "phone.pub").ok());
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string Shared() const { return (root_ / "shared").string(); }

  fs::path root_;
  Device phone_, laptop_;
};

TEST_F(SyncTest, PromotedVersionsReachThePeerAsCandidatesWithLineage) {
  std::string v1 = phone_.Learn(1);
  auto r1 = phone_.SyncWith(Shared());
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  EXPECT_EQ(r1->exported, std::vector<std::string>{v1});
  auto r2 = laptop_.SyncWith(Shared());
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  ASSERT_EQ(r2->imported.size(), 1u);
  EXPECT_EQ(r2->imported[0].origin_id, v1);
  EXPECT_EQ(r2->imported[0].device_id, phone_.keys->device().device_id);
  auto info = laptop_.reg->Get(r2->imported[0].local_id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, VersionState::kCandidate);
  auto a = laptop_.reg->Load(info->id);
  EXPECT_EQ(a->lineage, std::vector<std::string>{"e-1"});
  EXPECT_EQ(info->id, v1) << "the same bytes, so the same version id on both devices";
}

TEST_F(SyncTest, SecondSyncChangesNothing) {
  phone_.Learn(1);
  laptop_.Learn(2);
  for (int round = 0; round < 2; ++round) {
    auto a = phone_.SyncWith(Shared());
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    auto b = laptop_.SyncWith(Shared());
    ASSERT_TRUE(b.ok()) << b.status().ToString();
  }
  auto files = [&] {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(Shared())) out.push_back(e.path().string());
    std::sort(out.begin(), out.end());
    return out;
  };
  auto before = files();
  size_t versions = laptop_.reg->List().size();
  auto r = laptop_.SyncWith(Shared());
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->exported.empty() && r->imported.empty() && r->merged.empty());
  EXPECT_EQ(files(), before);
  EXPECT_EQ(laptop_.reg->List().size(), versions);
}

TEST_F(SyncTest, HalfWrittenBundleIsSkippedThenPickedUp) {
  std::string v1 = phone_.Learn(1);
  ASSERT_TRUE(phone_.SyncWith(Shared()).ok());
  const std::string path = Shared() + "/" + phone_.keys->device().device_id + "/" + v1 + ".bundle";
  std::string full = *ReadFile(path);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << full.substr(0, full.size() / 2);
  auto r = laptop_.SyncWith(Shared());
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->imported.empty());
  ASSERT_EQ(r->refused.size(), 1u);
  EXPECT_EQ(laptop_.reg->List().size(), 0u) << "the registry is unchanged";
  std::ofstream(path, std::ios::binary | std::ios::trunc) << full;  // the copy completes
  r = laptop_.SyncWith(Shared());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->imported.size(), 1u);
}

TEST_F(SyncTest, TamperedBundleIsRefused) {
  std::string v1 = phone_.Learn(1);
  ASSERT_TRUE(phone_.SyncWith(Shared()).ok());
  const std::string path = Shared() + "/" + phone_.keys->device().device_id + "/" + v1 + ".bundle";
  std::string bytes = *ReadFile(path);
  bytes[bytes.size() - 100] ^= 1;  // one bit of a tensor
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  auto r = laptop_.SyncWith(Shared());
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->refused.size(), 1u);
  EXPECT_NE(r->refused[0].reason.find("signature does not verify"), std::string::npos) << r->refused[0].reason;
  EXPECT_EQ(laptop_.reg->List().size(), 0u);
}

TEST_F(SyncTest, UntrustedDeviceIsRefused) {
  Device stranger = Device::Open((root_ / "stranger").string());
  stranger.Learn(9);
  ASSERT_TRUE(stranger.SyncWith(Shared()).ok());
  auto r = laptop_.SyncWith(Shared());
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->refused.size(), 1u);
  EXPECT_NE(r->refused[0].reason.find("not trusted"), std::string::npos);
}

TEST_F(SyncTest, AdapterForAnotherBaseModelIsRefused) {
  laptop_.Learn(2);
  auto other = testing::RandomAdapter(testing::TinyBase(std::string(64, 'f')), 2, 9, {adapters::LoraTarget::kV});
  std::string id = *phone_.reg->Add(other);
  ASSERT_TRUE(phone_.reg->Promote(id, std::nullopt, true).ok());
  ASSERT_TRUE(phone_.SyncWith(Shared()).ok());
  auto r = laptop_.SyncWith(Shared());
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->refused.size(), 1u);
  EXPECT_NE(r->refused[0].reason.find("base model"), std::string::npos) << r->refused[0].reason;
  EXPECT_FALSE(laptop_.reg->Get(id).ok());
}

TEST_F(SyncTest, DivergedVersionsAreMergedIntoOneCandidate) {
  std::string p = phone_.Learn(1);
  ASSERT_TRUE(phone_.SyncWith(Shared()).ok());
  auto r = laptop_.SyncWith(Shared());
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(laptop_.reg->Promote(r->imported[0].local_id, std::nullopt, true).ok());
  // Both learn something new on top of the common parent p.
  std::string on_phone = phone_.Learn(2, p);
  std::string on_laptop = laptop_.Learn(3, p);
  ASSERT_TRUE(phone_.SyncWith(Shared()).ok());
  r = laptop_.SyncWith(Shared());
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->merged.size(), 1u);
  auto merged = laptop_.reg->Load(r->merged[0]);
  ASSERT_TRUE(merged.ok());
  EXPECT_EQ(merged->rank, 6);  // cat of three rank-2 adapters: mine + peer's − parent
  EXPECT_NE(merged->training_config.at("merge.sources").find(on_laptop), std::string::npos);
  EXPECT_NE(merged->training_config.at("merge.sources").find(on_phone), std::string::npos);
}

TEST_F(SyncTest, TombstoneRetiresTheErasedVersionOnThePeer) {
  std::string v1 = phone_.Learn(1);
  ASSERT_TRUE(phone_.SyncWith(Shared()).ok());
  auto r = laptop_.SyncWith(Shared());
  ASSERT_TRUE(r.ok());
  std::string local = r->imported[0].local_id;
  ASSERT_TRUE(laptop_.reg->Promote(local, std::nullopt, true).ok());
  std::string child = laptop_.Learn(5, local);  // built on the erased data
  // The phone forgets the events v1 was trained on.
  ASSERT_TRUE(RecordErasure(*phone_.keys, phone_.data + "/sync", {v1}, "forget --user u-1").ok());
  auto pr = phone_.SyncWith(Shared());
  ASSERT_TRUE(pr.ok());
  EXPECT_FALSE(phone_.reg->Get(v1).ok()) << "erased on the phone too";
  EXPECT_FALSE(PathExists(Shared() + "/" + phone_.keys->device().device_id + "/" + v1 + ".bundle"));
  r = laptop_.SyncWith(Shared());
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(laptop_.reg->Get(local).ok());
  EXPECT_FALSE(laptop_.reg->Get(child).ok()) << "a descendant carries the erased data";
  EXPECT_EQ(laptop_.reg->Active(), "");
  ASSERT_FALSE(r->notes.empty());
  EXPECT_NE(r->notes.back().find("rolled back"), std::string::npos) << r->notes.back();
  // Not imported again on later syncs.
  r = laptop_.SyncWith(Shared());
  EXPECT_TRUE(r->imported.empty());
}

TEST_F(SyncTest, UnknownParentIsKeptInTheConfigAndTombstonesStillFindTheCopy) {
  std::string v1 = phone_.Learn(1);
  std::string v2 = phone_.Learn(2, v1);
  ASSERT_TRUE(phone_.SyncWith(Shared()).ok());
  fs::remove(Shared() + "/" + phone_.keys->device().device_id + "/" + v1 + ".bundle");  // never arrived
  auto r = laptop_.SyncWith(Shared());
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->imported.size(), 1u);
  EXPECT_EQ(r->imported[0].origin_id, v2);
  const std::string local = r->imported[0].local_id;
  EXPECT_NE(local, v2);
  auto a = laptop_.reg->Load(local);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->parent_version, "");
  EXPECT_EQ(a->training_config.at("sync.parent_version"), v1);
  ASSERT_TRUE(RecordErasure(*phone_.keys, phone_.data + "/sync", {v2}, "forget").ok());
  ASSERT_TRUE(phone_.SyncWith(Shared()).ok());
  r = laptop_.SyncWith(Shared());
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(laptop_.reg->Get(local).ok()) << "the re-parented copy of an erased version survived";
}

}  // namespace
}  // namespace attune::export_
