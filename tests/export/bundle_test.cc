// Signed bundles, tombstones and device keys.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "attune/adapters/payload.h"
#include "attune/core/file.h"
#include "attune/export/bundle.h"
#include "attune/export/keys.h"
#include "tests/export/test_util.h"

namespace attune::export_ {
namespace {

namespace fs = std::filesystem;

class BundleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("attune_bundle_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    phone_ = std::move(KeyStore::Open((dir_ / "phone").string())).value();
    laptop_ = std::move(KeyStore::Open((dir_ / "laptop").string())).value();
    auto a = testing::RandomAdapter(testing::TinyBase(), 2, 3, {adapters::LoraTarget::kV, adapters::LoraTarget::kDown});
    a.metrics["eval.new_loss"] = 1.25;
    a.lineage = {"e-1..e-9"};
    payload_ = *adapters::EncodePayload(a);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A bundle sealed by the phone, with the laptop trusting the phone.
  std::string PhoneBundle() {
    EXPECT_TRUE(laptop_->Trust(phone_->device().line(), "phone.pub").ok());
    return *SealBundle(payload_, "v3", phone_->device().device_id, *phone_);
  }

  fs::path dir_;
  std::unique_ptr<KeyStore> phone_, laptop_;
  std::string payload_;
};

TEST_F(BundleTest, TrustedPeerBundleOpensWithItsManifest) {
  auto b = OpenBundle(PhoneBundle(), "x.bundle", *laptop_);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->payload, payload_);
  EXPECT_EQ(b->info.version_id, adapters::PayloadVersionId(payload_));
  EXPECT_EQ(b->info.label, "v3");
  EXPECT_EQ(b->info.signer_device_id, phone_->device().device_id);
  EXPECT_EQ(b->info.event_lineage, std::vector<std::string>{"e-1..e-9"});
  EXPECT_EQ(b->info.report.at("eval.new_loss"), 1.25);
  EXPECT_EQ(b->info.targets, (std::vector<std::string>{"v", "down"}));
}

TEST_F(BundleTest, AnyFlippedByteIsRefused) {
  std::string good = PhoneBundle();
  for (size_t i = 0; i < good.size(); i += 1 + good.size() / 400) {
    std::string bad = good;
    bad[i] = char(bad[i] ^ 0x20);
    auto b = OpenBundle(bad, "x.bundle", *laptop_);
    ASSERT_FALSE(b.ok()) << "byte " << i << " flipped was accepted";
    EXPECT_EQ(b.status().message().rfind("x.bundle", 0), 0u) << b.status().message();
  }
}

TEST_F(BundleTest, EveryTruncationIsRefused) {
  std::string good = PhoneBundle();
  for (size_t cut = 0; cut < good.size(); cut += 1 + good.size() / 300) {
    EXPECT_FALSE(OpenBundle(good.substr(0, cut), "x.bundle", *laptop_).ok()) << "cut at " << cut;
  }
}

// Two bundles joined (or bytes appended) parsed as the last one and imported
// with exit 0: protocol buffers merge concatenated messages.
TEST_F(BundleTest, BytesAfterTheBundleAreRefused) {
  std::string good = PhoneBundle();
  std::string other = *SealBundle(payload_, "v4", phone_->device().device_id, *phone_);
  // The second: a field (format_version = 1) appended after a whole bundle.
  for (const std::string& bad : {good + other, good + std::string("\x08\x01")}) {
    auto b = OpenBundle(bad, "x.bundle", *laptop_);
    ASSERT_FALSE(b.ok());
    EXPECT_EQ(b.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(b.status().message().find("after the bundle"), std::string::npos) << b.status().message();
  }
}

TEST_F(BundleTest, UntrustedSignerIsRefused) {
  std::string b = *SealBundle(payload_, "v3", phone_->device().device_id, *phone_);
  auto r = OpenBundle(b, "x.bundle", *laptop_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("not trusted"), std::string::npos) << r.status().message();
}

TEST_F(BundleTest, RevokedSignerIsRefused) {
  std::string b = PhoneBundle();
  ASSERT_TRUE(laptop_->Revoke(phone_->device().device_id).ok());
  auto r = OpenBundle(b, "x.bundle", *laptop_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("revoked"), std::string::npos) << r.status().message();
  // A revoked key cannot be trusted again by accident.
  EXPECT_FALSE(laptop_->Trust(phone_->device().line(), "phone.pub").ok());
}

TEST_F(BundleTest, WrongSignerIsRefused) {
  // Signed by a third device that claims to be the phone.
  auto mallory = std::move(KeyStore::Open((dir_ / "mallory").string())).value();
  std::string forged = *SealBundle(payload_, "v3", phone_->device().device_id, *mallory);
  std::string from = mallory->device().device_id, to = phone_->device().device_id;
  forged.replace(forged.find(from), from.size(), to);
  ASSERT_TRUE(laptop_->Trust(phone_->device().line(), "phone.pub").ok());
  auto r = OpenBundle(forged, "x.bundle", *laptop_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("signature does not verify"), std::string::npos) << r.status().message();
}

TEST_F(BundleTest, NewerFormatVersionIsRefused) {
  std::string b = PhoneBundle();
  ASSERT_EQ(b[0], 0x08);
  b[1] = 2;  // format_version 2, as a newer build would write it
  auto r = OpenBundle(b, "x.bundle", *laptop_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("format_version"), std::string::npos);
}

TEST_F(BundleTest, TombstoneRoundTripsAndNamesItsSigner) {
  ASSERT_TRUE(laptop_->Trust(phone_->device().line(), "phone.pub").ok());
  Tombstone t{{std::string(64, 'c')}, "forget --user u-1", 5, ""};
  auto opened = OpenTombstone(*SealTombstone(t, *phone_), "t", *laptop_);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->erased_versions, t.erased_versions);
  EXPECT_EQ(opened->device_id, phone_->device().device_id);
  // A bundle is not a tombstone.
  EXPECT_FALSE(OpenTombstone(*SealBundle(payload_, "v1", "", *phone_), "b", *laptop_).ok());
}

TEST_F(BundleTest, DeviceKeyIsPrivateAndStable) {
  struct stat st{};
  ASSERT_EQ(::stat((dir_ / "phone/device.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  auto again = KeyStore::Open((dir_ / "phone").string());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->device().line(), phone_->device().line());
  EXPECT_NE(phone_->device().device_id, laptop_->device().device_id);
}

TEST_F(BundleTest, KeyLineWithWrongIdIsRefused) {
  std::string line = phone_->device().line();
  line[22] = line[22] == '0' ? '1' : '0';  // inside the device id
  auto r = laptop_->Trust(line, "edited.pub");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("edited.pub"), std::string::npos);
}

}  // namespace
}  // namespace attune::export_
