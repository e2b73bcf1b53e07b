#include "attune/adapters/payload.h"

#include <google/protobuf/stubs/logging.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "attune/core/file.h"
#include "attune/core/sha256.h"
#include "attune/v1/adapter.pb.h"
#include "tests/adapters/test_util.h"

namespace attune::adapters {
namespace {

using testing::MakeAdapter;
using testing::ScratchDir;

TEST(Payload, RoundTripsEveryField) {
  Adapter a = MakeAdapter(7);
  a.rslora = true;
  a.parent_version = std::string(64, 'c');
  auto bytes = EncodePayload(a);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  auto back = DecodePayload(*bytes, "mem");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, a);
}

TEST(Payload, RoundTripsTheScope) {
  Adapter a = MakeAdapter(7);
  a.scope.layer = 1;
  a.scope.mean = {0.5f, -1.0f, 2.0f};
  a.scope.scale = {1.0f, 0.25f, 3.0f};
  a.scope.weight = {0.1f, -0.2f, 0.3f};
  a.scope.bias = -0.75;
  a.scope.fitted_in = 12;
  a.scope.fitted_out = 80;
  a.scope.misplaced = 1;
  auto bytes = EncodePayload(a);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  auto back = DecodePayload(*bytes, "mem");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->scope, a.scope);
  // A reader that predates scopes refuses the payload instead of serving
  // the adapter on every request; an unscoped one keeps format 1.
  v1::AdapterPayload p;
  ASSERT_TRUE(p.ParseFromString(*bytes));
  EXPECT_EQ(p.format_version(), 2u);
  // A scoped adapter is another version than the same tensors unscoped.
  auto plain = EncodePayload(MakeAdapter(7));
  ASSERT_TRUE(plain.ok());
  EXPECT_NE(PayloadVersionId(*bytes), PayloadVersionId(*plain));
  ASSERT_TRUE(p.ParseFromString(*plain));
  EXPECT_EQ(p.format_version(), 1u);
  auto unscoped = DecodePayload(*plain, "mem");
  ASSERT_TRUE(unscoped.ok());
  EXPECT_TRUE(unscoped->scope.empty());
}

TEST(Payload, EncodingIsDeterministicSoTheIdIsContentAddressed) {
  auto x = EncodePayload(MakeAdapter(3));
  auto y = EncodePayload(MakeAdapter(3));
  auto z = EncodePayload(MakeAdapter(4));
  ASSERT_TRUE(x.ok() && y.ok() && z.ok());
  EXPECT_EQ(PayloadVersionId(*x), PayloadVersionId(*y));
  EXPECT_NE(PayloadVersionId(*x), PayloadVersionId(*z));
  EXPECT_EQ(PayloadVersionId(*x).size(), 64u);
  EXPECT_EQ(ShortVersion(PayloadVersionId(*x)).size(), 12u);
}

TEST(Payload, RefusesToEncodeInvalidAdapter) {
  Adapter a = MakeAdapter(1);
  a.rank = 3;  // shapes say 2
  EXPECT_EQ(EncodePayload(a).status().code(), StatusCode::kInvalidArgument);
}

TEST(Payload, TruncatedPayloadIsDataLossNamingTheFile) {
  auto bytes = EncodePayload(MakeAdapter(1));
  ASSERT_TRUE(bytes.ok());
  for (size_t cut : {size_t{1}, size_t{10}, bytes->size() / 2, bytes->size() - 1}) {
    auto r = DecodePayload(std::string_view(*bytes).substr(0, cut), "x.adapter");
    ASSERT_FALSE(r.ok()) << "cut at " << cut;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
    EXPECT_NE(r.status().message().find("x.adapter"), std::string::npos);
  }
}

TEST(Payload, PayloadCutAtATensorBoundaryIsDataLoss) {
  auto bytes = EncodePayload(MakeAdapter(1));
  ASSERT_TRUE(bytes.ok());
  v1::AdapterPayload p;
  ASSERT_TRUE(p.ParseFromString(*bytes));
  p.mutable_tensors()->RemoveLast();
  p.mutable_tensors()->RemoveLast();  // a whole pair: the rest is a valid adapter
  auto r = DecodePayload(p.SerializeAsString(), "cut.adapter");
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status().message();
}

TEST(Payload, FlippedTensorByteFailsItsChecksum) {
  auto bytes = EncodePayload(MakeAdapter(1));
  ASSERT_TRUE(bytes.ok());
  v1::AdapterPayload p;
  ASSERT_TRUE(p.ParseFromString(*bytes));
  (*p.mutable_tensors(2)->mutable_data())[5] ^= 0x40;
  auto r = DecodePayload(p.SerializeAsString(), "flip.adapter");
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("checksum mismatch"), std::string::npos) << r.status().message();
}

TEST(Payload, NewerFormatVersionIsUnsupported) {
  auto bytes = EncodePayload(MakeAdapter(1));
  ASSERT_TRUE(bytes.ok());
  v1::AdapterPayload p;
  ASSERT_TRUE(p.ParseFromString(*bytes));
  p.set_format_version(kPayloadFormatVersion + 1);
  auto r = DecodePayload(p.SerializeAsString(), "new.adapter");
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("new.adapter"), std::string::npos);
}

TEST(Payload, GarbageIsDataLoss) {
  EXPECT_EQ(DecodePayload("definitely not a protobuf \xff\xff\xff", "g").status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(DecodePayload("", "empty").status().code(), StatusCode::kDataLoss);
}

TEST(Payload, RandomDamageNeverCrashesAndNeverPassesTheIdCheck) {
  auto bytes = EncodePayload(MakeAdapter(5));
  ASSERT_TRUE(bytes.ok());
  const std::string id = PayloadVersionId(*bytes);
  // protobuf logs every invalid UTF-8 string it meets; that is noise here.
  google::protobuf::LogHandler* previous = google::protobuf::SetLogHandler(nullptr);
  std::mt19937 rng(99);
  for (int trial = 0; trial < 300; ++trial) {
    std::string damaged = *bytes;
    if (trial % 3 == 0) {
      damaged.resize(rng() % damaged.size());
    } else {
      for (int flips = 1 + static_cast<int>(rng() % 4); flips > 0; --flips) {
        damaged[rng() % damaged.size()] ^= static_cast<char>(1 + rng() % 255);
      }
    }
    // Decoding alone may accept damage confined to, say, a metric's value;
    // it must never crash. The content address catches everything.
    (void)DecodePayload(damaged, "fuzz");
    EXPECT_NE(PayloadVersionId(damaged), id);
  }
  google::protobuf::SetLogHandler(previous);
}

TEST(Payload, FileReadChecksTheExpectedId) {
  ScratchDir dir;
  const std::string path = dir.path() + "/a.adapter";
  auto id = WritePayloadFile(path, MakeAdapter(2));
  ASSERT_TRUE(id.ok());
  std::string read_id;
  EXPECT_TRUE(ReadPayloadFile(path, *id, &read_id).ok());
  EXPECT_EQ(read_id, *id);
  auto wrong = ReadPayloadFile(path, std::string(64, '0'));
  EXPECT_EQ(wrong.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(ReadPayloadFile(dir.path() + "/missing.adapter").status().code(), StatusCode::kNotFound);
}

}  // namespace
TEST(Payload, OversizedFileIsRefusedBeforeItIsRead) {
  testing::ScratchDir dir;
  const std::string path = dir.path() + "/big.adapter";
  // Sparse: one byte past the limit costs no disk and, refused by its size,
  // no memory. (A file at the limit would be read: 1 GiB, too much for a
  // unit test on a shared machine.)
  { std::ofstream(path) << ""; }
  std::filesystem::resize_file(path, kMaxPayloadBytes + 1);
  auto r = ReadPayloadFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kOutOfRange) << r.status().ToString();
  EXPECT_NE(r.status().message().find(path), std::string::npos);
}

}  // namespace attune::adapters
