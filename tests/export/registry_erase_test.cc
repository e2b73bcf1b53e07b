// Registry::Erase, the registry operation that erasure (tombstones, forget)
// uses, and RetireVersionsBuiltFrom (adapters/erasure.h) on top of it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "attune/adapters/erasure.h"
#include "attune/adapters/registry.h"
#include "attune/core/file.h"
#include "tests/export/test_util.h"

namespace attune::adapters {
namespace {

namespace fs = std::filesystem;

class RegistryEraseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("attune_erase_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    reg_ = std::move(Registry::Open({}, dir_.string())).value();
    base_ = export_::testing::TinyBase();
    v1_ = *reg_->Add(export_::testing::RandomAdapter(base_, 2, 1, {LoraTarget::kV}));
    v2_ = *reg_->Add(export_::testing::RandomAdapter(base_, 2, 2, {LoraTarget::kV}));
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
  std::unique_ptr<Registry> reg_;
  export_::BaseModel base_;
  std::string v1_, v2_;
};

TEST_F(RegistryEraseTest, RemovesRecordAndPayloadEvenWhenPinned) {
  ASSERT_TRUE(reg_->Pin(v1_).ok());
  ASSERT_TRUE(reg_->Erase(v1_).ok());
  EXPECT_FALSE(reg_->Get(v1_).ok());
  EXPECT_FALSE(PathExists(reg_->PayloadPath(v1_)));
  EXPECT_EQ(reg_->Label(v1_), "v1") << "the label stays resolvable for the history";
  EXPECT_TRUE(reg_->Get(v2_).ok());
  // Durable: a fresh Open sees the same.
  auto again = Registry::Open({}, dir_.string());
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE((*again)->Get(v1_).ok());
  EXPECT_TRUE((*again)->report().ok());
}

TEST_F(RegistryEraseTest, RefusesTheActiveVersion) {
  ASSERT_TRUE(reg_->Promote(v2_, std::nullopt, true).ok());
  Status s = reg_->Erase(v2_);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(reg_->Get(v2_).ok());
  EXPECT_TRUE(PathExists(reg_->PayloadPath(v2_)));
}

TEST_F(RegistryEraseTest, UnknownVersionIsNotFound) { EXPECT_EQ(reg_->Erase("v9").code(), StatusCode::kNotFound); }

// v1 (clean) -> v2 (trained on erased data) -> v3 (child of v2), v4 merges
// v2 with v1, v5 is clean; v3 is active. Retiring what was built from v2
// erases v2, v3 and v4, and serves v1, the newest clean version that was
// active.
TEST_F(RegistryEraseTest, RetireErasesDescendantsAndMergesAndRollsBackToTheNewestCleanVersion) {
  ASSERT_TRUE(reg_->Promote(v1_, std::nullopt, true).ok());
  ASSERT_TRUE(reg_->Promote(v2_, std::nullopt, true).ok());
  Adapter child = export_::testing::RandomAdapter(base_, 2, 3, {LoraTarget::kV});
  child.parent_version = v2_;
  const std::string v3 = *reg_->Add(child);
  Adapter merged = export_::testing::RandomAdapter(base_, 2, 4, {LoraTarget::kV});
  merged.training_config["merge.sources"] = v2_ + "," + v1_;
  const std::string v4 = *reg_->Add(merged);
  const std::string v5 = *reg_->Add(export_::testing::RandomAdapter(base_, 2, 5, {LoraTarget::kV}));
  ASSERT_TRUE(reg_->Promote(v3, std::nullopt, true).ok());

  EXPECT_EQ(VersionsBuiltFrom(*reg_, {v2_}), (std::set<std::string>{v2_, v3, v4}));
  auto r = RetireVersionsBuiltFrom(*reg_, {v2_}, "forget: test");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->rolled_back);
  EXPECT_EQ(r->active_before, v3);
  EXPECT_EQ(r->active_after, v1_);
  EXPECT_EQ(reg_->Active(), v1_);
  EXPECT_EQ(std::set<std::string>(r->erased.begin(), r->erased.end()), (std::set<std::string>{v2_, v3, v4}));
  for (const auto& id : {v2_, v3, v4}) {
    EXPECT_FALSE(reg_->Get(id).ok());
    EXPECT_FALSE(PathExists(reg_->PayloadPath(id)));
  }
  EXPECT_TRUE(reg_->Get(v1_).ok());
  EXPECT_TRUE(reg_->Get(v5).ok());
  // The history says why, durably.
  auto again = Registry::Open({}, dir_.string());
  ASSERT_TRUE(again.ok());
  const auto history = (*again)->History();
  ASSERT_FALSE(history.empty());
  EXPECT_EQ(history.back().cause, ActivationCause::kRollbackErasure);
  EXPECT_EQ(history.back().note, "forget: test");
  const auto erased = (*again)->Erased();
  ASSERT_EQ(erased.size(), 3u);
  for (const auto& e : erased) EXPECT_EQ(e.reason, "forget: test");
}

TEST_F(RegistryEraseTest, RetireRollsBackToTheBaseWhenEveryEarlierVersionIsTainted) {
  ASSERT_TRUE(reg_->Promote(v1_, std::nullopt, true).ok());
  ASSERT_TRUE(reg_->Promote(v2_, std::nullopt, true).ok());
  auto r = RetireVersionsBuiltFrom(*reg_, {v1_, v2_}, "forget");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->active_after, "");
  EXPECT_EQ(reg_->Active(), "");
  EXPECT_TRUE(reg_->List().empty());
  // Nothing built from it: nothing changes.
  auto none = RetireVersionsBuiltFrom(*reg_, {std::string(64, 'f')}, "forget");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->erased.empty());
  EXPECT_FALSE(none->rolled_back);
}

}  // namespace
}  // namespace attune::adapters
