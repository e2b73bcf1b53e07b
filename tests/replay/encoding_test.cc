// The store's internal encodings: key order and defensive decoding.
#include "replay/src/encoding.h"

#include <gtest/gtest.h>

namespace attune::replay::internal {
namespace {

TEST(EncodingTest, TimeKeysSortByTimeThenSeqIncludingNegativeTimes) {
  EXPECT_LT(TimeKey({-5, 0}, 9), TimeKey({0, 0}, 1));
  EXPECT_LT(TimeKey({10, 1}, 9), TimeKey({10, 2}, 1));
  EXPECT_LT(TimeKey({10, 1}, 1), TimeKey({10, 1}, 2));
  EXPECT_EQ(TimeFromKey(TimeKey({-5, 7}, 3)), (feedback::Timestamp{-5, 7}));
}

TEST(EncodingTest, SeqAndUserKeysSortNumerically) {
  EXPECT_LT(SeqKey(255), SeqKey(256));
  EXPECT_LT(UserKey("ab", 300), UserKey("ab", 301));
  EXPECT_LT(UserKey("a", ~0ull), UserKey("ab", 0));  // the '\0' separator
  EXPECT_EQ(PrefixEnd(UserPrefix("ab")), std::string("ab\x01", 3));
}

TEST(EncodingTest, RecordRoundTripsAndTruncationIsDataLoss) {
  Record r{42, {1790000000, 5}, "u-1", "payload"};
  std::string v = EncodeRecord(r);
  auto back = DecodeRecord(v);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->seq, 42u);
  EXPECT_EQ(back->time, r.time);
  EXPECT_EQ(back->user_id, "u-1");
  EXPECT_EQ(back->payload, "payload");
  for (size_t n : {size_t{0}, size_t{1}, size_t{10}, size_t{24}}) {
    EXPECT_EQ(DecodeRecord(v.substr(0, n)).status().code(), StatusCode::kDataLoss) << n;
  }
  v[0] = 9;
  EXPECT_EQ(DecodeRecord(v).status().code(), StatusCode::kDataLoss);
}

TEST(EncodingTest, StateRoundTripsAndTruncationIsDataLoss) {
  State s;
  s.next_seq = 7, s.cursor = 3, s.rng = 99, s.age_floor = -12, s.versions = 2;
  std::string v = EncodeState(s);
  auto back = DecodeState(v);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->next_seq, 7u);
  EXPECT_EQ(back->age_floor, -12);
  EXPECT_EQ(back->versions, 2u);
  EXPECT_EQ(DecodeState(v.substr(0, v.size() - 1)).status().code(), StatusCode::kDataLoss);
}

TEST(EncodingTest, UniformBelowStaysInRangeAndIsDeterministic) {
  uint64_t a = 1, b = 1;
  for (int i = 0; i < 1000; ++i) {
    uint64_t x = UniformBelow(a, 7);
    EXPECT_LT(x, 7u);
    EXPECT_EQ(x, UniformBelow(b, 7));
  }
}

}  // namespace
}  // namespace attune::replay::internal
