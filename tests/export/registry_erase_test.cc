// Registry::Erase, the registry operation that erasure (tombstones) uses.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

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

}  // namespace
}  // namespace attune::adapters
