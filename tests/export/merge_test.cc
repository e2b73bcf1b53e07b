// Merging against dense ΔW references computed with plain loops.
#include "attune/export/merge.h"
#include "attune/export/peft.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/export/test_util.h"

namespace attune::export_ {
namespace {

using adapters::Adapter;
using adapters::LoraTarget;

const std::string kIdA(64, 'a'), kIdB(64, 'b');

// Dense scale·B·A of one pair, in double, with plain loops.
std::vector<double> DenseDelta(const Adapter& a, int64_t layer, LoraTarget t) {
  const auto& p = a.layers[size_t(layer)][size_t(t)];
  const int64_t out = p.b.shape[0], in = p.a.shape[1], r = a.rank;
  const double s = a.rslora ? a.alpha / std::sqrt(double(r)) : a.alpha / double(r);
  std::vector<double> d(size_t(out * in), 0.0);
  for (int64_t i = 0; i < out; ++i)
    for (int64_t k = 0; k < r; ++k)
      for (int64_t j = 0; j < in; ++j) d[size_t(i * in + j)] += s * p.b.data[size_t(i * r + k)] * p.a.data[size_t(k * in + j)];
  return d;
}

double FrobeniusNorm(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

double RelativeError(const std::vector<double>& got, const std::vector<double>& want) {
  std::vector<double> diff(got.size());
  for (size_t i = 0; i < got.size(); ++i) diff[i] = got[i] - want[i];
  return FrobeniusNorm(diff) / FrobeniusNorm(want);
}

std::vector<double> Weighted(const std::vector<std::pair<double, std::vector<double>>>& terms) {
  std::vector<double> out(terms[0].second.size(), 0.0);
  for (const auto& [w, d] : terms)
    for (size_t i = 0; i < d.size(); ++i) out[i] += w * d[i];
  return out;
}

class MergeTest : public ::testing::Test {
 protected:
  BaseModel base_ = testing::TinyBase();
  Adapter a_ = testing::RandomAdapter(base_, 4, 21);
  Adapter b_ = [this] {
    Adapter b = testing::RandomAdapter(base_, 8, 22, {LoraTarget::kQ, LoraTarget::kV, LoraTarget::kDown});
    b.rslora = true;
    b.alpha = 5;
    return b;
  }();
};

TEST_F(MergeTest, CatEqualsTheWeightedSumOfDeltasToFloatPrecision) {
  MergeOptions o;
  o.weights = {0.7, -1.5};
  auto m = Merge({{&a_, kIdA}, {&b_, kIdB}}, o);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->rank, 12);
  for (int64_t l = 0; l < 2; ++l) {
    for (auto t : {LoraTarget::kQ, LoraTarget::kDown}) {
      auto want = Weighted({{0.7, DenseDelta(a_, l, t)}, {-1.5, DenseDelta(b_, l, t)}});
      EXPECT_LT(RelativeError(DenseDelta(*m, l, t), want), 1e-6) << "layer " << l;
    }
    // A target only the first adapter has: its term alone.
    auto want = Weighted({{0.7, DenseDelta(a_, l, LoraTarget::kUp)}});
    EXPECT_LT(RelativeError(DenseDelta(*m, l, LoraTarget::kUp), want), 1e-6);
  }
  EXPECT_EQ(m->parent_version, kIdA);
  EXPECT_EQ(m->training_config.at("merge.sources"), kIdA + "," + kIdB);
}

TEST_F(MergeTest, SvdErrorIsTheDroppedSingularValuesAndShrinksWithRank) {
  MergeOptions o;
  o.method = MergeMethod::kSvd;
  o.weights = {1.0, 1.0};
  double prev = 2;
  for (int64_t r : {2, 6, 12}) {
    o.rank = r;
    MergeReport report;
    auto m = Merge({{&a_, kIdA}, {&b_, kIdB}}, o, &report);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(m->rank, r);
    auto want = Weighted({{1.0, DenseDelta(a_, 1, LoraTarget::kQ)}, {1.0, DenseDelta(b_, 1, LoraTarget::kQ)}});
    double err = RelativeError(DenseDelta(*m, 1, LoraTarget::kQ), want);
    // The reported error is the measured one (float rounding apart).
    EXPECT_NEAR(report.relative_error.at("layer 1 target q"), err, 1e-5);
    EXPECT_LT(err, prev);
    prev = err;
    if (r == 12) {
      EXPECT_LT(err, 1e-5) << "rank 12 holds the sum of a rank-4 and a rank-8 delta exactly";
    }
    if (r == 2) {
      EXPECT_GT(err, 0.3) << "random deltas cannot fit in rank 2";
    }
  }
}

TEST_F(MergeTest, SvdOfARankRSumIsExact) {
  MergeOptions o;
  o.method = MergeMethod::kSvd;
  o.rank = 4;
  MergeReport report;
  auto m = Merge({{&a_, kIdA}, {&a_, kIdA}}, o, &report);
  ASSERT_TRUE(m.ok());
  // Two equal rank-4 inputs averaged: the result is rank 4, so exact.
  EXPECT_LT(report.max_relative_error, 1e-5);
  EXPECT_LT(RelativeError(DenseDelta(*m, 0, LoraTarget::kGate), DenseDelta(a_, 0, LoraTarget::kGate)), 1e-5);
}

TEST_F(MergeTest, LinearFollowsPeftsDefinition) {
  Adapter c = testing::RandomAdapter(base_, 4, 23);
  c.alpha = 2;
  MergeOptions o;
  o.method = MergeMethod::kLinear;
  o.weights = {0.25, -0.75};
  auto m = Merge({{&a_, kIdA}, {&c, kIdB}}, o);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->rank, 4);
  // PEFT 0.21: c = w·s; A = Σ sign(c)·√|c|·A, B = Σ √|c|·B, scale 1.
  const auto& pa = a_.layers[0][2];
  const auto& pc = c.layers[0][2];
  const double ca = 0.25 * a_.alpha / 4, cc = -0.75 * c.alpha / 4;
  for (size_t i : {size_t(0), size_t(17), pa.a.data.size() - 1}) {
    EXPECT_NEAR(m->layers[0][2].a.data[i], std::sqrt(ca) * pa.a.data[i] - std::sqrt(-cc) * pc.a.data[i], 1e-5);
  }
  for (size_t i : {size_t(0), size_t(9), pa.b.data.size() - 1}) {
    EXPECT_NEAR(m->layers[0][2].b.data[i], std::sqrt(ca) * pa.b.data[i] + std::sqrt(-cc) * pc.b.data[i], 1e-5);
  }
  EXPECT_DOUBLE_EQ(m->alpha, 4.0);
}

TEST_F(MergeTest, LinearRefusesDifferentRanks) {
  MergeOptions o;
  o.method = MergeMethod::kLinear;
  auto m = Merge({{&a_, kIdA}, {&b_, kIdB}}, o);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("equal ranks"), std::string::npos);
}

TEST_F(MergeTest, RefusesAdaptersOfDifferentBaseModels) {
  Adapter other = testing::RandomAdapter(testing::TinyBase(std::string(64, 'b')), 4, 24);
  auto m = Merge({{&a_, kIdA}, {&other, kIdB}}, {});
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(MergeTest, RefusesWrongWeightCount) {
  MergeOptions o;
  o.weights = {1.0};
  EXPECT_EQ(Merge({{&a_, kIdA}, {&b_, kIdB}}, o).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace attune::export_

namespace attune::export_ {
namespace {

// Against PEFT's own add_weighted_adapter (tools/make_export_fixtures.py):
// merging the imported fixtures gives PEFT's merged adapter.
class PeftMergeTest : public ::testing::Test {
 protected:
  static std::string Fixture(const std::string& rel) { return std::string(ATTUNE_FIXTURES_DIR) + "/export/" + rel; }
  void SetUp() override {
    a_ = *ReadPeft(Fixture("peft_trained"), base_);
    b_ = *ReadPeft(Fixture("attune_peft"), base_);
  }
  Result<Adapter> MergeAs(MergeMethod method) {
    MergeOptions o;
    o.method = method;
    o.weights = {0.7, -0.4};
    return Merge({{&a_, kIdA}, {&b_, kIdB}}, o);
  }
  BaseModel base_ = testing::TinyBase();
  Adapter a_, b_;
};

TEST_F(PeftMergeTest, LinearEqualsPeftsLinearTensorForTensor) {
  auto ours = MergeAs(MergeMethod::kLinear);
  ASSERT_TRUE(ours.ok()) << ours.status().ToString();
  auto peft = ReadPeft(Fixture("peft_linear_merge"), base_);
  ASSERT_TRUE(peft.ok()) << peft.status().ToString();
  EXPECT_EQ(ours->rank, peft->rank);
  EXPECT_DOUBLE_EQ(ours->alpha, peft->alpha);
  for (int64_t l = 0; l < 2; ++l) {
    for (auto t : ours->targets) {
      for (bool is_b : {false, true}) {
        const auto& x = is_b ? ours->layers[size_t(l)][size_t(t)].b : ours->layers[size_t(l)][size_t(t)].a;
        const auto& y = is_b ? peft->layers[size_t(l)][size_t(t)].b : peft->layers[size_t(l)][size_t(t)].a;
        ASSERT_EQ(x.shape, y.shape) << adapters::TensorName(l, t, is_b);
        for (size_t i = 0; i < x.data.size(); ++i) {
          ASSERT_NEAR(x.data[i], y.data[i], 1e-5) << adapters::TensorName(l, t, is_b) << " [" << i << "]";
        }
      }
    }
  }
}

TEST_F(PeftMergeTest, CatHasPeftsDeltaWeights) {
  auto ours = MergeAs(MergeMethod::kCat);
  ASSERT_TRUE(ours.ok()) << ours.status().ToString();
  auto peft = ReadPeft(Fixture("peft_cat_merge"), base_);
  ASSERT_TRUE(peft.ok()) << peft.status().ToString();
  EXPECT_EQ(ours->rank, peft->rank);
  for (int64_t l = 0; l < 2; ++l) {
    for (auto t : ours->targets) {
      EXPECT_LT(RelativeError(DenseDelta(*ours, l, t), DenseDelta(*peft, l, t)), 1e-5) << "layer " << l;
    }
  }
}

}  // namespace
}  // namespace attune::export_
