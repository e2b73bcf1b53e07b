#include "attune/core/status.h"

#include <gtest/gtest.h>

#include "attune/core/result.h"

namespace attune {
namespace {

Result<int> Half(int x) {
  if (x % 2) return InvalidArgumentError("odd: " + std::to_string(x));
  return x / 2;
}

Result<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int h, Half(x));
  ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckEven(int x) {
  RETURN_IF_ERROR(Half(x).status());
  return Status::Ok();
}

TEST(StatusTest, OkHoldsNoMessage) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "OK");
  EXPECT_EQ(s.code(), StatusCode::kOk);
}

TEST(StatusTest, ErrorKeepsCodeAndMessageThroughCopies) {
  Status s = DataLossError("bad block");
  Status t = s;
  EXPECT_EQ(t.code(), StatusCode::kDataLoss);
  EXPECT_EQ(t.ToString(), "DataLoss: bad block");
  EXPECT_EQ(t.WithContext("file.gguf").message(), "file.gguf: bad block");
}

TEST(ResultTest, AssignOrReturnPropagatesTheFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  auto r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "odd: 3");
  EXPECT_FALSE(CheckEven(5).ok());
  EXPECT_TRUE(CheckEven(4).ok());
}

}  // namespace
}  // namespace attune
